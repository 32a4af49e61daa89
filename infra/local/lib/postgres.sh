# shellcheck shell=bash
# PostgreSQL: a private cluster under the stack dir (Debian's binaries, not Debian's
# cluster management), listening on 127.0.0.1:$PG_PORT only. Databases: `iceberg`
# (Iceberg JDBC catalog, shared by pyiceberg and Trino) and `dagster` (Dagster
# instance storage), both owned by the password-authenticated role `tickhouse`.

PG_DIR=$TICKHOUSE_STACK_DIR/postgres
PG_DATA=$PG_DIR/data
PG_SOCKET_DIR=$PG_DIR/run
PG_LOG=$LOG_DIR/postgres.log
PG_DATABASES=(iceberg dagster)
PG_CATALOG_SQL=$INFRA_DIR/postgres/iceberg_jdbc_catalog_v1.sql

# initdb/postgres refuse to run as root: as root the cluster is owned by (and runs
# as) this unprivileged system user, created on first use.
# Not root: the cluster simply belongs to the invoking user.
if [[ $EUID -eq 0 ]]; then PG_OS_USER=${TICKHOUSE_PG_OS_USER:-tickhouse}; else PG_OS_USER=$(id -un); fi

_pg_bin_dir() {
    local d
    for d in "/usr/lib/postgresql/$POSTGRES_MAJOR/bin" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres && -x $d/psql && -x $d/pg_isready ]] && {
            printf '%s\n' "$d"
            return 0
        }
    done
    return 1
}

_apt_updated=0
# Another apt-get (a second install, unattended-upgrades) may hold dpkg's lock: wait for it
# rather than fail at once.
APT_LOCK_WAIT=(-o DPkg::Lock::Timeout=300)
apt_install() {
    [[ $EUID -eq 0 ]] || die "need root to apt-get install $*; install them yourself (sudo apt-get install -y $*) and re-run"
    if ((!_apt_updated)); then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get "${APT_LOCK_WAIT[@]}" update -qq >/dev/null || die "apt-get update failed"
        _apt_updated=1
    fi
    log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get "${APT_LOCK_WAIT[@]}" install -y -qq --no-install-recommends "$@" >/dev/null ||
        die "apt-get install $* failed"
}

postgres_installed() { _pg_bin_dir >/dev/null; }

postgres_install() {
    if ! postgres_installed; then
        # Note: Debian's postgresql package also creates (and tries to start) its own
        # "main" cluster on port 5432; this stack does not use it.
        apt_install "$POSTGRES_APT_PACKAGE"
        postgres_installed || die "postgres: initdb/pg_ctl still missing under /usr/lib/postgresql/*/bin after install"
    fi
    PG_BIN=$(_pg_bin_dir)
}

# Run a command as the cluster owner (directly when not root).
_as_pg() {
    if [[ $EUID -eq 0 ]]; then
        setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" --init-groups -- "$@"
    else
        "$@"
    fi
}

# As root: make sure the unprivileged owner exists and can reach $PG_DIR. Ancestors
# it cannot traverse (e.g. /root, mode 700) get a search-only ACL entry for that one
# user: no listing, no access to other files.
_pg_prepare_owner() {
    [[ $EUID -eq 0 ]] || return 0
    if ! getent passwd "$PG_OS_USER" >/dev/null; then
        log "postgres: creating system user '$PG_OS_USER' (initdb/postgres refuse to run as root)"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --comment "tickhouse local stack PostgreSQL" "$PG_OS_USER" ||
            die "postgres: useradd $PG_OS_USER failed"
    fi
    # Walk from / down to $PG_DIR so each directory is tested with its parents reachable.
    local d=$PG_DIR
    local -a chain=()
    while [[ $d != / ]]; do
        chain=("$d" "${chain[@]}")
        d=$(dirname -- "$d")
    done
    for d in "${chain[@]}"; do
        [[ -d $d ]] || break
        if ! _as_pg test -x "$d"; then
            command -v setfacl >/dev/null || apt_install acl
            log "postgres: granting '$PG_OS_USER' search-only (x) ACL on $d so it can reach its data dir"
            setfacl -m "u:$PG_OS_USER:x" "$d" || die "postgres: setfacl on $d failed"
        fi
    done
}

postgres_initdb() {
    [[ -s $PG_DATA/PG_VERSION ]] && return 0
    log "postgres: initdb $PG_DATA (owner: $PG_OS_USER)"
    mkdir -p "$PG_DATA" "$PG_SOCKET_DIR"
    if [[ $EUID -eq 0 ]]; then chown "$PG_OS_USER:$PG_OS_USER" "$PG_DIR" "$PG_DATA" "$PG_SOCKET_DIR"; fi
    chmod 700 "$PG_DATA" "$PG_SOCKET_DIR"
    # Bootstrap superuser `postgres`; only reachable through the owner-only unix
    # socket directory (trust). TCP always needs a SCRAM password.
    _as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 --no-instructions >>"$PG_LOG" 2>&1 || {
        show_log_tail "$PG_LOG"
        die "postgres: initdb failed"
    }
    echo "include_if_exists = 'tickhouse.conf'" | _as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

# Settings rewritten on every start, so a changed port or socket dir applies.
_pg_write_config() {
    _as_pg tee "$PG_DATA/tickhouse.conf" >/dev/null <<EOF
# Written by infra/local/stack on every start; edits are overwritten.
listen_addresses = '$BIND_IP'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
unix_socket_permissions = 0700
password_encryption = scram-sha-256
shared_buffers = 128MB
max_connections = 100
EOF
    _as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<EOF
# Written by infra/local/stack on every start; edits are overwritten.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   $BIND_IP/32   scram-sha-256
EOF
}

postgres_healthy() { "$PG_BIN/pg_isready" -q -h "$BIND_IP" -p "$PG_PORT" -t 2; }

postgres_start() {
    postgres_install
    if is_running postgres; then
        log "postgres: already running (pid $(pid_of postgres))"
        return 0
    fi
    assert_ports_free postgres "$PG_PORT"
    _pg_prepare_owner
    mkdir -p "$PG_DIR"
    postgres_initdb
    mkdir -p "$PG_SOCKET_DIR"
    if [[ $EUID -eq 0 ]]; then chown "$PG_OS_USER:$PG_OS_USER" "$PG_SOCKET_DIR"; fi
    chmod 700 "$PG_SOCKET_DIR"
    _pg_write_config
    log "postgres: starting on $BIND_IP:$PG_PORT"
    if [[ $EUID -eq 0 ]]; then
        start_bg postgres "$PG_LOG" setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" --init-groups -- \
            "$PG_BIN/postgres" -D "$PG_DATA"
    else
        start_bg postgres "$PG_LOG" "$PG_BIN/postgres" -D "$PG_DATA"
    fi
}

# psql as the bootstrap superuser over the private unix socket.
_pg_admin_psql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"
}

postgres_wait() {
    postgres_install
    wait_until postgres "$PG_LOG" postgres_healthy || return 1
    # Role, password (from the environment, via \getenv: never on a command line or
    # in a log), databases, and the Iceberg JDBC catalog tables. All idempotent.
    local sql db
    sql=$(
        cat <<SQL
\\getenv pg_password TICKHOUSE_PG_PASSWORD
SELECT 'CREATE ROLE $TICKHOUSE_PG_USER LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$TICKHOUSE_PG_USER') \\gexec
ALTER ROLE $TICKHOUSE_PG_USER WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pg_password';
SQL
        for db in "${PG_DATABASES[@]}"; do
            printf "SELECT 'CREATE DATABASE %s OWNER %s' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '%s') \\\\gexec\\n" \
                "$db" "$TICKHOUSE_PG_USER" "$db"
        done
    )
    TICKHOUSE_PG_PASSWORD=$TICKHOUSE_PG_PASSWORD _pg_admin_psql -d postgres <<<"$sql" >>"$PG_LOG" 2>&1 || {
        show_log_tail "$PG_LOG"
        die "postgres: role/database setup failed"
    }
    { echo "SET ROLE $TICKHOUSE_PG_USER;" && cat "$PG_CATALOG_SQL"; } | _pg_admin_psql -d iceberg >>"$PG_LOG" 2>&1 || {
        show_log_tail "$PG_LOG"
        die "postgres: creating the Iceberg JDBC catalog tables failed"
    }
    # Prove password auth over TCP works for the application role.
    PGPASSWORD=$TICKHOUSE_PG_PASSWORD "$PG_BIN/psql" -X -q -w -h "$BIND_IP" -p "$PG_PORT" -U "$TICKHOUSE_PG_USER" \
        -d iceberg -tAc 'SELECT 1' >/dev/null 2>>"$PG_LOG" ||
        die "postgres: password login as $TICKHOUSE_PG_USER over TCP failed (see $PG_LOG)"
    log "postgres: role $TICKHOUSE_PG_USER (scram), databases: ${PG_DATABASES[*]}, Iceberg JDBC catalog tables (V1) ready"
}

# SIGINT = PostgreSQL "fast" shutdown (rolls back open transactions, clean checkpoint).
postgres_stop() { stop_pid postgres INT; }

postgres_status() {
    local pid
    PG_BIN=$(_pg_bin_dir 2>/dev/null) || PG_BIN=
    if pid=$(pid_of postgres); then
        if [[ -n $PG_BIN ]] && postgres_healthy; then
            printf '%-10s running  pid %-8s healthy  %s:%s databases: %s\n' postgres "$pid" "$BIND_IP" "$PG_PORT" "${PG_DATABASES[*]}"
        else
            printf '%-10s running  pid %-8s UNHEALTHY (see %s)\n' postgres "$pid" "$PG_LOG"
            return 1
        fi
    else
        printf '%-10s stopped\n' postgres
        return 3
    fi
}
