# shellcheck shell=bash
# The landing listener (service "landing-listener"): `python -m tickhouse_dagster.listener` from
# the project's venv. Subscribes to the SeaweedFS filer's change stream under /buckets/landing/ and
# queues every new tick file version in a SQLite file under the stack dir, which the push sensor
# (TICKHOUSE_FILER_GRPC + TICKHOUSE_LANDING_QUEUE_URL, printed by `stack env`) reads. Its position
# in the stream is stored with the queue, so a restart (of it or of the filer) resumes where it
# stopped. Health: GET http://127.0.0.1:$LISTENER_PORT/healthz (200 while the filer is heard).
# Needs the venv (`make install`) and a running SeaweedFS; started after it, stopped before it.

LISTENER_DIR=$TICKHOUSE_STACK_DIR/landing-listener
LISTENER_LOG=$LOG_DIR/landing-listener.log
LISTENER_QUEUE_URL=sqlite:///$LISTENER_DIR/queue.sqlite
LISTENER_URL=http://$BIND_IP:$LISTENER_PORT
SEAWEED_FILER_GRPC=$BIND_IP:$((SEAWEED_FILER_PORT + 10000)) # weed's fixed gRPC = HTTP + 10000
LISTENER_PYTHON=${TICKHOUSE_PYTHON:-$INFRA_DIR/../.venv/bin/python}

landing_listener_install() {
    [[ -x $LISTENER_PYTHON ]] ||
        die "landing-listener: no Python at $LISTENER_PYTHON: run 'make install' first (or set TICKHOUSE_PYTHON)"
}

landing_listener_healthy() { curl -fsS -m 3 -o /dev/null "$LISTENER_URL/healthz"; }

landing_listener_start() {
    if is_running landing-listener; then
        log "landing-listener: already running (pid $(pid_of landing-listener))"
        return 0
    fi
    landing_listener_install
    assert_ports_free landing-listener "$LISTENER_PORT"
    mkdir -p "$LISTENER_DIR"
    log "landing-listener: starting (filer gRPC $SEAWEED_FILER_GRPC, queue $LISTENER_DIR/queue.sqlite, health $LISTENER_URL/healthz)"
    # Credentials reach it through the environment only (boto3's standard variables).
    start_bg landing-listener "$LISTENER_LOG" env \
        TICKHOUSE_LANDING_URI=s3://landing/ \
        TICKHOUSE_S3_ENDPOINT="$S3_ENDPOINT" \
        TICKHOUSE_FILER_GRPC="$SEAWEED_FILER_GRPC" \
        TICKHOUSE_LANDING_QUEUE_URL="$LISTENER_QUEUE_URL" \
        AWS_ACCESS_KEY_ID="$TICKHOUSE_S3_ACCESS_KEY" \
        AWS_SECRET_ACCESS_KEY="$TICKHOUSE_S3_SECRET_KEY" \
        AWS_REGION="$TICKHOUSE_S3_REGION" \
        PYTHONUNBUFFERED=1 \
        "$LISTENER_PYTHON" -m tickhouse_dagster.listener --host "$BIND_IP" --port "$LISTENER_PORT"
}

landing_listener_wait() { wait_until landing-listener "$LISTENER_LOG" landing_listener_healthy; }

landing_listener_stop() { stop_pid landing-listener TERM; }

landing_listener_status() {
    local p
    if ! p=$(pid_of landing-listener); then
        printf '%-10s stopped\n' landing-listener
        return 3
    fi
    if landing_listener_healthy; then
        printf '%-10s running  pid %-8s healthy  %s/healthz (filer gRPC %s, queue %s)\n' \
            landing-listener "$p" "$LISTENER_URL" "$SEAWEED_FILER_GRPC" "$LISTENER_DIR/queue.sqlite"
    else
        printf '%-10s UNHEALTHY pid %s (see %s; %s/healthz)\n' landing-listener "$p" "$LISTENER_LOG" "$LISTENER_URL"
        return 1
    fi
}
