# shellcheck shell=bash
# SeaweedFS as two processes (one "seaweedfs" service):
#   seaweedfs-master  `weed server`: master + volume server
#   seaweedfs-filer   `weed filer -s3`: filer + S3 gateway (SigV4 auth from a rendered
#                     identities file) + the built-in Iceberg REST catalog
# Why not one `weed server -filer -s3`: on SIGTERM it stops its volume server before
# its filer, so the filer then spends ~15 s failing to flush its metadata log and
# drops it; two processes let `down` stop the filer first (clean, ~1 s each).

WEED_BIN=$TICKHOUSE_CACHE/bin/weed-$SEAWEEDFS_VERSION
WEED_BUILD_LOG=$TICKHOUSE_CACHE/logs/weed-build.log
SEAWEED_DIR=$TICKHOUSE_STACK_DIR/seaweedfs
SEAWEED_MASTER_LOG=$LOG_DIR/seaweedfs-master.log
SEAWEED_FILER_LOG=$LOG_DIR/seaweedfs-filer.log
SEAWEED_S3_CONFIG=$SEAWEED_DIR/s3-identities.json
S3_ENDPOINT=http://$BIND_IP:$SEAWEED_S3_PORT
S3REQ=$LOCAL_DIR/lib/s3req.py

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
    "$WEED_BIN" version 2>/dev/null | grep -q " $SEAWEEDFS_EXPECTED_RELEASE " ||
        die "seaweedfs: built binary reports '$("$WEED_BIN" version 2>/dev/null | head -n1)', expected $SEAWEEDFS_EXPECTED_RELEASE"
    log "seaweedfs: built in $((SECONDS - start))s -> $WEED_BIN"
    # The Go module + build caches (~4 GB) are only needed to rebuild; the binary is
    # versioned and kept. TICKHOUSE_KEEP_GO_CACHE=1 keeps them (faster version bumps).
    if [[ ${TICKHOUSE_KEEP_GO_CACHE:-0} != 1 ]]; then
        if GOMODCACHE=$gomod GOCACHE=$gocache go clean -modcache -cache >>"$WEED_BUILD_LOG" 2>&1 &&
            rm -rf -- "$TICKHOUSE_CACHE/go"; then
            log "seaweedfs: pruned the Go module/build caches (set TICKHOUSE_KEEP_GO_CACHE=1 to keep them)"
        else
            warn "seaweedfs: could not prune the Go caches under $TICKHOUSE_CACHE/go"
        fi
    fi
}

# s3req [s3req.py args...]: signed (or --anonymous) request; credentials via env only.
s3req() { python3 "$S3REQ" "$@"; }

seaweedfs_alive() { is_running seaweedfs-master && is_running seaweedfs-filer; }

seaweedfs_master_ready() {
    curl -fsS -m 3 "http://$BIND_IP:$SEAWEED_MASTER_PORT/cluster/status" 2>/dev/null | grep -q '"IsLeader":true' &&
        curl -fsS -m 3 -o /dev/null "http://$BIND_IP:$SEAWEED_VOLUME_PORT/healthz"
}

seaweedfs_healthy() {
    curl -fsS -m 3 "http://$BIND_IP:$SEAWEED_MASTER_PORT/cluster/status" 2>/dev/null | grep -q '"IsLeader":true' &&
        curl -fsS -m 3 -o /dev/null "http://$BIND_IP:$SEAWEED_VOLUME_PORT/healthz" &&
        curl -fsS -m 3 -o /dev/null "http://$BIND_IP:$SEAWEED_FILER_PORT/healthz" &&
        curl -fsS -m 3 -o /dev/null "$S3_ENDPOINT/healthz" &&
        curl -fsS -m 3 -o /dev/null "http://$BIND_IP:$SEAWEED_ICEBERG_PORT/v1/config"
}

# A real write through S3 (filer -> volume). After a restart with existing volumes the
# master refuses volume lookups for a ~15 s warm-up window; this waits that out.
seaweedfs_write_probe() {
    local url=$S3_ENDPOINT/${S3_BUCKETS[0]}/.tickhouse-stack-probe
    s3req --timeout 5 --data "probe $(date -Is)" PUT "$url" >/dev/null &&
        s3req --timeout 5 --expect 204 DELETE "$url" >/dev/null
}

seaweedfs_start() {
    local master_up=0 filer_up=0
    is_running seaweedfs-master && master_up=1
    is_running seaweedfs-filer && filer_up=1
    if ((master_up && filer_up)); then
        log "seaweedfs: already running (pids $(pid_of seaweedfs-master) $(pid_of seaweedfs-filer))"
        return 0
    fi
    mkdir -p "$SEAWEED_DIR/data" "$SEAWEED_DIR/filer"
    if ((!master_up)); then
        assert_ports_free seaweedfs-master "$SEAWEED_MASTER_PORT" "$SEAWEED_VOLUME_PORT" "$SEAWEED_SERVER_METRICS_PORT"
        log "seaweedfs: starting master+volume (:$SEAWEED_MASTER_PORT, :$SEAWEED_VOLUME_PORT)"
        # electionTimeout: a lone master otherwise waits 10 s to elect itself on restart.
        start_bg seaweedfs-master "$SEAWEED_MASTER_LOG" "$WEED_BIN" server \
            -ip="$BIND_IP" -ip.bind="$BIND_IP" \
            -dir="$SEAWEED_DIR/data" \
            -master.port="$SEAWEED_MASTER_PORT" \
            -master.telemetry=false \
            -master.electionTimeout=2s \
            -master.volumeSizeLimitMB=1024 \
            -volume.port="$SEAWEED_VOLUME_PORT" \
            -volume.max=100 \
            -volume.preStopSeconds=1 \
            -metricsPort="$SEAWEED_SERVER_METRICS_PORT"
    fi
    # The filer registers with the master much faster (≈1 s instead of ≈10 s) when the
    # master is already leader, and only then gets the lock ring S3 writes need.
    wait_until seaweedfs-master "$SEAWEED_MASTER_LOG" seaweedfs_master_ready || die "seaweedfs: master+volume did not come up"
    if ((!filer_up)); then
        assert_ports_free seaweedfs-filer "$SEAWEED_FILER_PORT" "$SEAWEED_S3_PORT" "$SEAWEED_METRICS_PORT" "$SEAWEED_ICEBERG_PORT"
        # The rendered identities file holds the secret key: owner-only.
        (umask 077 && render_template "$INFRA_DIR/seaweedfs/s3-identities.template.json" "$SEAWEED_S3_CONFIG" 600)
        log "seaweedfs: starting filer+S3 (S3 $S3_ENDPOINT, filer :$SEAWEED_FILER_PORT, Iceberg REST :$SEAWEED_ICEBERG_PORT, metrics :$SEAWEED_METRICS_PORT)"
        start_bg seaweedfs-filer "$SEAWEED_FILER_LOG" "$WEED_BIN" filer \
            -ip="$BIND_IP" -ip.bind="$BIND_IP" \
            -master="$BIND_IP:$SEAWEED_MASTER_PORT" \
            -port="$SEAWEED_FILER_PORT" \
            -defaultStoreDir="$SEAWEED_DIR/filer" \
            -localSocket="$RUN_DIR/seaweedfs-filer.sock" \
            -metricsPort="$SEAWEED_METRICS_PORT" \
            -s3 -s3.port="$SEAWEED_S3_PORT" \
            -s3.config="$SEAWEED_S3_CONFIG" \
            -s3.localSocket="$RUN_DIR/seaweedfs-s3.sock" \
            -s3.port.iceberg="$SEAWEED_ICEBERG_PORT" \
            -s3.port.lance=0
    fi
}

seaweedfs_wait() {
    local logs="$SEAWEED_FILER_LOG:$SEAWEED_MASTER_LOG" b
    wait_until seaweedfs "$logs" seaweedfs_healthy || return 1
    # S3 authentication must be on: anonymous and wrong-key requests are refused.
    s3req --anonymous --expect 403 GET "$S3_ENDPOINT/" >/dev/null ||
        die "seaweedfs: anonymous S3 request was not refused with 403 (is -s3.config applied?)"
    S3REQ_SECRET_KEY="wrong-$TICKHOUSE_S3_SECRET_KEY" s3req --expect 403 GET "$S3_ENDPOINT/" >/dev/null ||
        die "seaweedfs: S3 request signed with a wrong secret was not refused with 403"
    s3req GET "$S3_ENDPOINT/" >/dev/null || die "seaweedfs: signed ListBuckets failed"
    for b in "${S3_BUCKETS[@]}"; do
        s3req --expect 200,409 PUT "$S3_ENDPOINT/$b" >/dev/null || die "seaweedfs: could not create bucket $b"
    done
    # Table bucket for the built-in Iceberg REST catalog (S3 Tables API on the S3 port).
    s3req --service s3tables --expect 200,409 -H 'Content-Type: application/json' \
        --data "{\"name\":\"$SEAWEED_REST_TABLE_BUCKET\"}" PUT "$S3_ENDPOINT/buckets" >/dev/null ||
        die "seaweedfs: could not create table bucket $SEAWEED_REST_TABLE_BUCKET"
    wait_until seaweedfs "$logs" seaweedfs_write_probe || return 1
    log "seaweedfs: S3 auth verified (anonymous 403, wrong key 403, signed 200), writes OK; buckets: ${S3_BUCKETS[*]}; table bucket: $SEAWEED_REST_TABLE_BUCKET"
}

# Filer (and S3) first, while the volume server can still take its final flush.
seaweedfs_stop() {
    stop_pid seaweedfs-filer TERM
    stop_pid seaweedfs-master TERM
}

seaweedfs_status() {
    local m f
    m=$(pid_of seaweedfs-master) || m=
    f=$(pid_of seaweedfs-filer) || f=
    if [[ -z $m && -z $f ]]; then
        printf '%-10s stopped\n' seaweedfs
        return 3
    fi
    if [[ -n $m && -n $f ]] && seaweedfs_healthy; then
        printf '%-10s running  pid %-8s healthy  S3 %s, filer :%s, master :%s, Iceberg REST :%s (master+volume pid %s)\n' \
            seaweedfs "$f" "$S3_ENDPOINT" "$SEAWEED_FILER_PORT" "$SEAWEED_MASTER_PORT" "$SEAWEED_ICEBERG_PORT" "$m"
    else
        printf '%-10s UNHEALTHY master+volume pid %s, filer+s3 pid %s (see %s, %s)\n' seaweedfs \
            "${m:-none}" "${f:-none}" "$SEAWEED_MASTER_LOG" "$SEAWEED_FILER_LOG"
        return 1
    fi
}
