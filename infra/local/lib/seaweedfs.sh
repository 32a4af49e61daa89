# shellcheck shell=bash
# SeaweedFS: one `weed server` process running master, volume, filer, S3 gateway
# (SigV4 auth from a rendered identities file) and the built-in Iceberg REST catalog.

SEAWEED_ICEBERG_PORT=18181 # Iceberg REST catalog (weed default 8181; moved next to the other project ports)
SEAWEED_REST_TABLE_BUCKET=tickhouse-rest

WEED_BIN=$TICKHOUSE_CACHE/bin/weed-$SEAWEEDFS_VERSION
WEED_BUILD_LOG=$TICKHOUSE_CACHE/logs/weed-build.log
SEAWEED_DIR=$TICKHOUSE_STACK_DIR/seaweedfs
SEAWEED_LOG=$LOG_DIR/seaweedfs.log
SEAWEED_S3_CONFIG=$SEAWEED_DIR/s3-identities.json
S3_ENDPOINT=http://$BIND_IP:$SEAWEED_S3_PORT

seaweedfs_installed() { [[ -x $WEED_BIN ]]; }

# Builds weed from the pinned module version. `go install …/weed@version` refuses
# module versions whose go.mod has `replace` directives (the pinned one has one), so
# download the module and build inside its directory, where the replace applies.
seaweedfs_install() {
    seaweedfs_installed && return 0
    need_cmd go
    mkdir -p "$TICKHOUSE_CACHE/bin" "$TICKHOUSE_CACHE/logs"
    local gomod=$TICKHOUSE_CACHE/go/mod gocache=$TICKHOUSE_CACHE/go/build dir start=$SECONDS
    log "seaweedfs: building weed $SEAWEEDFS_EXPECTED_RELEASE ($SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION); takes several minutes, log: $WEED_BUILD_LOG"
    {
        export GOMODCACHE=$gomod GOCACHE=$gocache GOFLAGS=-buildvcs=false
        dir=$(cd / && go mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION" |
            sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
        [[ -n $dir && -d $dir ]] || { echo "go mod download did not report a module directory"; exit 1; }
        cd "$dir"
        # -s -w: drop symbol tables (about 30% smaller binary).
        go build -trimpath -ldflags='-s -w' -o "$WEED_BIN.tmp" ./weed
        mv -f "$WEED_BIN.tmp" "$WEED_BIN"
    } >"$WEED_BUILD_LOG" 2>&1 || {
        show_log_tail "$WEED_BUILD_LOG"
        die "seaweedfs: build failed"
    }
    "$WEED_BIN" version | grep -q " $SEAWEEDFS_EXPECTED_RELEASE " ||
        die "seaweedfs: built binary reports '$("$WEED_BIN" version | head -n1)', expected $SEAWEEDFS_EXPECTED_RELEASE"
    log "seaweedfs: built in $((SECONDS - start))s -> $WEED_BIN"
}

seaweedfs_healthy() {
    curl -fsS -m 3 -o /dev/null "http://$BIND_IP:$SEAWEED_MASTER_PORT/healthz" &&
        curl -fsS -m 3 -o /dev/null "http://$BIND_IP:$SEAWEED_VOLUME_PORT/healthz" &&
        curl -fsS -m 3 -o /dev/null "http://$BIND_IP:$SEAWEED_FILER_PORT/healthz" &&
        curl -fsS -m 3 -o /dev/null "$S3_ENDPOINT/healthz" &&
        curl -fsS -m 3 -o /dev/null "http://$BIND_IP:$SEAWEED_ICEBERG_PORT/v1/config"
}

seaweedfs_start() {
    if is_running seaweedfs; then
        log "seaweedfs: already running (pid $(pid_of seaweedfs))"
        return 0
    fi
    assert_ports_free seaweedfs "$SEAWEED_MASTER_PORT" "$SEAWEED_VOLUME_PORT" "$SEAWEED_FILER_PORT" \
        "$SEAWEED_S3_PORT" "$SEAWEED_METRICS_PORT" "$SEAWEED_ICEBERG_PORT"
    mkdir -p "$SEAWEED_DIR/data"
    # The rendered identities file holds the secret key: owner-only.
    (umask 077 && TICKHOUSE_S3_ACCESS_KEY=$TICKHOUSE_S3_ACCESS_KEY TICKHOUSE_S3_SECRET_KEY=$TICKHOUSE_S3_SECRET_KEY \
        render_template "$INFRA_DIR/seaweedfs/s3-identities.template.json" "$SEAWEED_S3_CONFIG" 600)
    log "seaweedfs: starting (S3 $S3_ENDPOINT, Iceberg REST http://$BIND_IP:$SEAWEED_ICEBERG_PORT)"
    start_bg seaweedfs "$SEAWEED_LOG" "$WEED_BIN" server \
        -ip="$BIND_IP" -ip.bind="$BIND_IP" \
        -dir="$SEAWEED_DIR/data" \
        -metricsPort="$SEAWEED_METRICS_PORT" \
        -master.port="$SEAWEED_MASTER_PORT" \
        -master.telemetry=false \
        -master.volumeSizeLimitMB=1024 \
        -volume.max=100 \
        -volume.port="$SEAWEED_VOLUME_PORT" \
        -filer -filer.port="$SEAWEED_FILER_PORT" \
        -filer.localSocket="$RUN_DIR/seaweedfs-filer.sock" \
        -s3 -s3.port="$SEAWEED_S3_PORT" \
        -s3.config="$SEAWEED_S3_CONFIG" \
        -s3.localSocket="$RUN_DIR/seaweedfs-s3.sock" \
        -s3.port.iceberg="$SEAWEED_ICEBERG_PORT" \
        -s3.port.lance=0
}

# s3_curl EXPECTED_STATUS METHOD PATH [SECRET] [SERVICE] [curl args...]: SigV4-signed
# request (credentials passed to curl on stdin, never on the command line). SECRET
# "-" means unsigned. Succeeds when the HTTP status is one of EXPECTED (a|b|c).
s3_curl() {
    local expect=$1 method=$2 path=$3 secret=${4:-$TICKHOUSE_S3_SECRET_KEY} service=${5:-s3} code
    shift 5 || shift $#
    if [[ $secret == - ]]; then
        code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X "$method" "$@" "$S3_ENDPOINT$path")
    else
        code=$(printf 'user = "%s:%s"\n' "$TICKHOUSE_S3_ACCESS_KEY" "$secret" |
            curl -sS -m 10 -o /dev/null -w '%{http_code}' -K - \
                --aws-sigv4 "aws:amz:$TICKHOUSE_S3_REGION:$service" -X "$method" "$@" "$S3_ENDPOINT$path")
    fi
    [[ $code =~ ^($expect)$ ]] || {
        printf '%s %s -> HTTP %s (expected %s)\n' "$method" "$path" "$code" "$expect" >&2
        return 1
    }
}

seaweedfs_wait() {
    wait_until seaweedfs "$SEAWEED_LOG" seaweedfs_healthy || return 1
    # S3 authentication must be on: anonymous and wrong-key requests are refused.
    s3_curl 403 GET / - ||
        die "seaweedfs: anonymous S3 request was not refused with 403 (is -s3.config applied?)"
    s3_curl 403 GET / "wrong-$TICKHOUSE_S3_SECRET_KEY" ||
        die "seaweedfs: S3 request signed with a wrong secret was not refused with 403"
    # Signed requests work once a writable volume exists; create buckets idempotently.
    local b start=$SECONDS
    until s3_curl 200 GET / 2>/dev/null; do
        ((SECONDS - start < HEALTH_TIMEOUT)) || { show_log_tail "$SEAWEED_LOG"; die "seaweedfs: signed ListBuckets never succeeded"; }
        sleep 1
    done
    for b in "${S3_BUCKETS[@]}"; do
        s3_curl '200|409' PUT "/$b" || die "seaweedfs: could not create bucket $b"
    done
    # Table bucket for the built-in Iceberg REST catalog (S3 Tables API on the S3 port).
    s3_curl '200|409' PUT /buckets "$TICKHOUSE_S3_SECRET_KEY" s3tables \
        -H 'Content-Type: application/json' --data "{\"name\":\"$SEAWEED_REST_TABLE_BUCKET\"}" ||
        die "seaweedfs: could not create table bucket $SEAWEED_REST_TABLE_BUCKET"
    log "seaweedfs: S3 auth verified (anonymous 403, wrong key 403, signed 200); buckets: ${S3_BUCKETS[*]}; table bucket: $SEAWEED_REST_TABLE_BUCKET"
}

seaweedfs_stop() { stop_pid seaweedfs TERM; }

seaweedfs_status() {
    local pid
    if pid=$(pid_of seaweedfs); then
        if seaweedfs_healthy; then
            printf '%-10s running  pid %-8s healthy  S3 %s, filer :%s, master :%s, Iceberg REST :%s\n' \
                seaweedfs "$pid" "$S3_ENDPOINT" "$SEAWEED_FILER_PORT" "$SEAWEED_MASTER_PORT" "$SEAWEED_ICEBERG_PORT"
        else
            printf '%-10s running  pid %-8s UNHEALTHY (see %s)\n' seaweedfs "$pid" "$SEAWEED_LOG"
            return 1
        fi
    else
        printf '%-10s stopped\n' seaweedfs
        return 3
    fi
}
