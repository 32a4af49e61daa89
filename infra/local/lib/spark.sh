# shellcheck shell=bash
# Optional service "spark": a Spark standalone cluster on 127.0.0.1 from the pinned pyspark
# distribution in the project venv (its bin/spark-class; Java from JAVA_HOME or PATH): one
# master and TICKHOUSE_SPARK_WORKERS workers (default 2), each with TICKHOUSE_SPARK_WORKER_CORES
# cores (1) and TICKHOUSE_SPARK_WORKER_MEMORY (1g) for executors. The workers get the stack's S3
# keys in their environment (their executors read landing files and write Iceberg data files;
# nothing secret is put on a command line or in a Spark setting). Started only when named
# (`stack up spark`); a plain `down` stops it too. Submit with --master "$TICKHOUSE_SPARK_STANDALONE_URL".

SPARK_DIR=$TICKHOUSE_STACK_DIR/spark
SPARK_PYTHON=${TICKHOUSE_PYTHON:-$INFRA_DIR/../.venv/bin/python}
SPARK_WORKERS=${TICKHOUSE_SPARK_WORKERS:-2}
SPARK_WORKER_CORES=${TICKHOUSE_SPARK_WORKER_CORES:-1}
SPARK_WORKER_MEMORY=${TICKHOUSE_SPARK_WORKER_MEMORY:-1g}
SPARK_MASTER_URL=spark://$BIND_IP:$SPARK_MASTER_PORT
SPARK_MASTER_UI=http://$BIND_IP:$SPARK_MASTER_UI_PORT

spark_home() { "$SPARK_PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'; }

spark_install() {
    [[ -x $SPARK_PYTHON ]] ||
        die "spark: no Python at $SPARK_PYTHON: run 'make install' first (or set TICKHOUSE_PYTHON)"
    [[ -x $(spark_home)/bin/spark-class ]] || die "spark: no bin/spark-class in the venv's pyspark"
    command -v java >/dev/null 2>&1 || [[ -n ${JAVA_HOME:-} ]] || die "spark: no Java (set JAVA_HOME)"
    [[ $SPARK_WORKERS =~ ^[1-9]$ ]] || die "TICKHOUSE_SPARK_WORKERS must be 1..9"
}

# Workers seen alive by the master (its JSON status page).
spark_alive_workers() {
    curl -fsS -m 3 "$SPARK_MASTER_UI/json/" 2>/dev/null |
        "$SPARK_PYTHON" -c 'import json, sys; print(sum(w["state"] == "ALIVE" for w in json.load(sys.stdin)["workers"]))'
}

spark_healthy() { [[ $(spark_alive_workers) == "$SPARK_WORKERS" ]]; }

spark_alive() { is_running spark-master; }

_spark_env() {
    local home=$1
    # The executors run the project's Python: its venv holds the parser and pyarrow.
    printf '%s\n' env SPARK_HOME="$home" SPARK_LOCAL_IP="$BIND_IP" SPARK_LOG_DIR="$LOG_DIR" \
        SPARK_NO_DAEMONIZE=1 PYSPARK_PYTHON="$SPARK_PYTHON" \
        AWS_ACCESS_KEY_ID="$TICKHOUSE_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$TICKHOUSE_S3_SECRET_KEY" \
        AWS_REGION="$TICKHOUSE_S3_REGION" AWS_ENDPOINT_URL_S3="$S3_ENDPOINT"
}

spark_start() {
    local home i port ui
    spark_install
    home=$(spark_home)
    mkdir -p "$SPARK_DIR"
    local -a envs
    mapfile -t envs < <(_spark_env "$home")
    if is_running spark-master; then
        log "spark: master already running (pid $(pid_of spark-master))"
    else
        assert_ports_free spark-master "$SPARK_MASTER_PORT" "$SPARK_MASTER_UI_PORT"
        log "spark: master $SPARK_MASTER_URL (UI $SPARK_MASTER_UI)"
        start_bg spark-master "$LOG_DIR/spark-master.log" "${envs[@]}" \
            SPARK_DAEMON_MEMORY=512m "$home/bin/spark-class" org.apache.spark.deploy.master.Master \
            --host "$BIND_IP" --port "$SPARK_MASTER_PORT" --webui-port "$SPARK_MASTER_UI_PORT"
    fi
    for ((i = 1; i <= SPARK_WORKERS; i++)); do
        is_running "spark-worker-$i" && continue
        port=$((SPARK_MASTER_PORT + 10 + i))
        ui=$((SPARK_MASTER_UI_PORT + 10 + i))
        assert_ports_free "spark-worker-$i" "$port" "$ui"
        mkdir -p "$SPARK_DIR/worker-$i"
        log "spark: worker $i ($SPARK_WORKER_CORES core, $SPARK_WORKER_MEMORY, port $port, UI $ui)"
        start_bg "spark-worker-$i" "$LOG_DIR/spark-worker-$i.log" "${envs[@]}" \
            SPARK_DAEMON_MEMORY=256m "$home/bin/spark-class" org.apache.spark.deploy.worker.Worker \
            --host "$BIND_IP" --port "$port" --webui-port "$ui" --cores "$SPARK_WORKER_CORES" \
            --memory "$SPARK_WORKER_MEMORY" --work-dir "$SPARK_DIR/worker-$i" "$SPARK_MASTER_URL"
    done
}

spark_wait() { wait_until spark "$LOG_DIR/spark-master.log:$LOG_DIR/spark-worker-1.log" spark_healthy; }

spark_stop() {
    local i
    for ((i = 9; i >= 1; i--)); do
        if [[ -e $(pidfile_of "spark-worker-$i") ]]; then stop_pid "spark-worker-$i" TERM; fi
    done
    stop_pid spark-master TERM
}

spark_status() {
    local p
    if ! p=$(pid_of spark-master); then
        printf '%-10s stopped (optional: stack up spark)\n' spark
        return 3
    fi
    printf '%-10s running  pid %-8s %s workers alive  %s (UI %s)\n' spark "$p" \
        "$(spark_alive_workers || echo '?')" "$SPARK_MASTER_URL" "$SPARK_MASTER_UI"
}
