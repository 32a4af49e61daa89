# shellcheck shell=bash
# Shared helpers for infra/local/stack: paths, defaults, logging, process control.
# Sourced (never executed) by the stack entry point, after `set -euo pipefail`.

LOCAL_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
INFRA_DIR=$(cd -- "$LOCAL_DIR/.." && pwd)

# shellcheck source=../versions.env
. "$LOCAL_DIR/versions.env"

# --- locations ------------------------------------------------------------------
# Installs (reused across runs) live in the cache, run state (data, pids, logs)
# in the stack dir. Neither is inside the repository.
TICKHOUSE_CACHE=${TICKHOUSE_CACHE:-$HOME/.cache/tickhouse}
TICKHOUSE_STACK_DIR=${TICKHOUSE_STACK_DIR:-$TICKHOUSE_CACHE/stack}
RUN_DIR=$TICKHOUSE_STACK_DIR/run
LOG_DIR=$TICKHOUSE_STACK_DIR/logs

# --- project ports (all bound to 127.0.0.1) --------------------------------------
# TICKHOUSE_STACK_PORT_OFFSET shifts every port, so a second stack (own TICKHOUSE_STACK_DIR)
# can run beside the first: the fault tests stop and restart servers of such a stack only.
# Not 1000 or 10000: the ports below are 1000 apart (S3 18333 + 1000 = the master's 19333) and
# SeaweedFS also listens on each of its ports + 10000 (gRPC). The fault tests use 2000, the
# monitoring tests 2800. Keep every port, the gRPC ones included, below Linux's ephemeral range
# (from 32768): a port in it can be taken by any outgoing connection between the free-port check
# and the server's bind (assert_ports_free warns).
BIND_IP=127.0.0.1
PORT_OFFSET=${TICKHOUSE_STACK_PORT_OFFSET:-0}
[[ $PORT_OFFSET =~ ^[0-9]+$ ]] || { echo "TICKHOUSE_STACK_PORT_OFFSET must be a number" >&2; exit 2; }
SEAWEED_MASTER_PORT=$((19333 + PORT_OFFSET))
SEAWEED_VOLUME_PORT=$((18081 + PORT_OFFSET))
SEAWEED_FILER_PORT=$((18889 + PORT_OFFSET))
SEAWEED_S3_PORT=$((18333 + PORT_OFFSET))
SEAWEED_METRICS_PORT=$((19327 + PORT_OFFSET))
SEAWEED_ICEBERG_PORT=$((18181 + PORT_OFFSET)) # Iceberg REST catalog (weed's default 8181, moved next to the other ports)
PG_PORT=$((15433 + PORT_OFFSET))
TRINO_HTTP_PORT=$((18080 + PORT_OFFSET))
SEAWEED_SERVER_METRICS_PORT=$((19328 + PORT_OFFSET)) # master+volume process (volume disk usage)
PROMETHEUS_PORT=$((19090 + PORT_OFFSET))           # optional service: `stack up prometheus`
PIPELINE_METRICS_PORT=$((19464 + PORT_OFFSET))     # `tickhouse metrics` exporter, scraped by it
LISTENER_PORT=$((19471 + PORT_OFFSET))             # landing listener health (/healthz)
SPARK_MASTER_PORT=$((17077 + PORT_OFFSET))         # optional service: `stack up spark`
SPARK_MASTER_UI_PORT=$((17080 + PORT_OFFSET))      # workers: master/UI port + 10 + n

# --- credentials (local-dev defaults; override via the environment) -------------
TICKHOUSE_S3_ACCESS_KEY=${TICKHOUSE_S3_ACCESS_KEY:-tickhouse}
TICKHOUSE_S3_SECRET_KEY=${TICKHOUSE_S3_SECRET_KEY:-tickhouse-local-secret}
TICKHOUSE_PG_PASSWORD=${TICKHOUSE_PG_PASSWORD:-tickhouse-local-pg}
TICKHOUSE_PG_USER=tickhouse
TICKHOUSE_S3_REGION=us-east-1
TICKHOUSE_ICEBERG_CATALOG_NAME=tickhouse
S3_BUCKETS=(landing warehouse)
SEAWEED_REST_TABLE_BUCKET=tickhouse-rest # S3 table bucket = warehouse of the Iceberg REST catalog

# Bounded waits (seconds).
HEALTH_TIMEOUT=${TICKHOUSE_HEALTH_TIMEOUT:-180}
STOP_TIMEOUT=${TICKHOUSE_STOP_TIMEOUT:-60}

# --- logging -------------------------------------------------------------------------
_ts() { date +%H:%M:%S; }
log() { printf '%s [stack] %s\n' "$(_ts)" "$*" >&2; }
warn() { printf '%s [stack] WARNING: %s\n' "$(_ts)" "$*" >&2; }
die() {
    printf '%s [stack] ERROR: %s\n' "$(_ts)" "$*" >&2
    exit 1
}

# Print the last lines of a log file to stderr, framed, for failure reports.
show_log_tail() {
    local file=$1 lines=${2:-40}
    if [[ -s $file ]]; then
        printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
        tail -n "$lines" -- "$file" >&2 || true
        printf -- '----- end of %s -----\n' "$file" >&2
    else
        printf -- '(log %s is empty or missing)\n' "$file" >&2
    fi
}

# --- misc helpers ----------------------------------------------------------------
ensure_dirs() { mkdir -p "$TICKHOUSE_CACHE" "$TICKHOUSE_STACK_DIR" "$RUN_DIR" "$LOG_DIR"; }

need_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "required command '$c' not found on PATH"
    done
}

# Secrets are substituted into JSON/URLs; keep them to a safe character set.
check_secret_charset() {
    local name=$1 value=$2
    [[ $value =~ ^[A-Za-z0-9._~+=/-]+$ ]] ||
        die "$name must match [A-Za-z0-9._~+=/-]+ (it is substituted into JSON, URLs and properties files)"
}

# download URL DEST: curl with retries into DEST.part, then atomic rename.
download() {
    local url=$1 dest=$2
    mkdir -p "$(dirname -- "$dest")"
    log "downloading $url"
    curl -fsSL --retry 5 --retry-delay 3 --retry-all-errors \
        --connect-timeout 20 --max-time 1800 -o "$dest.part" "$url" ||
        die "download failed: $url"
    mv -f -- "$dest.part" "$dest"
}

# render_template SRC DST [MODE]: replace ${NAME} (NAME = [A-Z_][A-Z0-9_]*) with the
# value of the environment variable NAME; fails on unset variables. Trino's own
# ${ENV:NAME} placeholders contain a colon and are left untouched.
render_template() {
    local src=$1 dst=$2 mode=${3:-644} tmp
    tmp=$(mktemp "$dst.XXXXXX")
    chmod "$mode" "$tmp"
    if ! perl -pe 's/\$\{([A-Z_][A-Z0-9_]*)\}/exists $ENV{$1} ? $ENV{$1} : die("template variable $1 is not set\n")/ge' \
        "$src" >"$tmp"; then
        rm -f -- "$tmp"
        die "failed to render $src"
    fi
    mv -f -- "$tmp" "$dst"
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/$BIND_IP/$1") 2>/dev/null; }

# --- process control (pidfiles under $RUN_DIR) ------------------------------------
pidfile_of() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# proc_starttime PID: the process start time (clock ticks since boot), used to tell
# our process from an unrelated one that reused the pid.
proc_starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# pid_of NAME: print the pid from NAME's pidfile when that very process is alive.
pid_of() {
    local f pid start
    f=$(pidfile_of "$1")
    [[ -s $f ]] || return 1
    { read -r pid && read -r start; } <"$f" || true
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -z ${start:-} || $(proc_starttime "$pid") == "$start" ]] || return 1
    printf '%s\n' "$pid"
}

is_running() { pid_of "$1" >/dev/null; }

# start_bg NAME LOGFILE CMD...: start CMD detached (own session) with output appended
# to LOGFILE and record its pid. CMD must exec the server (no forking wrappers) so the
# recorded pid is the server's pid.
start_bg() {
    local name=$1 logfile=$2
    shift 2
    printf '\n===== %s starting %s =====\n' "$(date -Is)" "$name" >>"$logfile"
    setsid "$@" </dev/null >>"$logfile" 2>&1 9>&- &
    local pid=$!
    printf '%s\n%s\n' "$pid" "$(proc_starttime "$pid")" >"$(pidfile_of "$name")"
}

# stop_pid NAME SIGNAL: send SIGNAL to NAME's pid, wait up to STOP_TIMEOUT, then KILL.
# Idempotent: a missing or stale pidfile is simply removed.
stop_pid() {
    local name=$1 sig=${2:-TERM} pid i
    local f
    f=$(pidfile_of "$name")
    if ! pid=$(pid_of "$name"); then
        [[ -e $f ]] && rm -f -- "$f"
        log "$name: not running"
        return 0
    fi
    log "$name: stopping pid $pid (SIG$sig)"
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name: pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -s KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f -- "$f"
    log "$name: stopped"
}

# wait_until NAME LOGFILES CHECK...: poll CHECK (a command) once a second until it
# succeeds, the service's process dies, or HEALTH_TIMEOUT elapses. On failure prints
# the tail of each log in LOGFILES (':'-separated) and returns 1. Liveness is
# NAME_alive when that function exists, else NAME's pidfile.
wait_until() {
    local name=$1 logfiles=$2 f alive=(is_running "$1")
    shift 2
    declare -F "${name}_alive" >/dev/null && alive=("${name}_alive")
    local start=$SECONDS
    while ((SECONDS - start < HEALTH_TIMEOUT)); do
        if "$@" >/dev/null 2>&1; then
            log "$name: healthy after $((SECONDS - start))s ($1)"
            return 0
        fi
        if ! "${alive[@]}"; then
            printf '%s [stack] ERROR: %s exited while starting\n' "$(_ts)" "$name" >&2
            IFS=: read -r -a _logs <<<"$logfiles"
            for f in "${_logs[@]}"; do show_log_tail "$f"; done
            return 1
        fi
        sleep 1
    done
    printf '%s [stack] ERROR: %s not healthy after %ss (check: %s)\n' "$(_ts)" "$name" "$HEALTH_TIMEOUT" "$*" >&2
    IFS=: read -r -a _logs <<<"$logfiles"
    for f in "${_logs[@]}"; do show_log_tail "$f"; done
    return 1
}

# refuse to start a service when its port is taken by a process we did not start.
assert_ports_free() {
    local name=$1 p
    shift
    local ephemeral
    ephemeral=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for p in "$@"; do
        if ((p >= ephemeral)); then
            warn "$name: port $p is in the ephemeral range (from $ephemeral): an outgoing connection may take it before the server binds; choose a smaller TICKHOUSE_STACK_PORT_OFFSET"
        fi
        if port_open "$p"; then
            die "$name: port $BIND_IP:$p is already in use by another process (not started by this stack); free it first"
        fi
    done
}

# urlencode STRING (for passwords in URLs)
urlencode() {
    local LC_ALL=C s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [a-zA-Z0-9.~_-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}
