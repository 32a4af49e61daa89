# shellcheck shell=bash
# Prometheus (Debian's package), an optional service: `stack up prometheus` (not part of the
# default `up`, which every test session runs). Listens on 127.0.0.1:$PROMETHEUS_PORT only and
# scrapes every few seconds: both SeaweedFS processes' metrics ports and the pipeline exporter
# (`tickhouse metrics`, on 127.0.0.1:$PIPELINE_METRICS_PORT, started by the user or a test).
# Config: infra/prometheus/prometheus.local.yml rendered into the stack dir.

PROM_BIN=${TICKHOUSE_PROMETHEUS_BIN:-/usr/bin/prometheus}
PROM_DIR=$TICKHOUSE_STACK_DIR/prometheus
PROM_CONFIG=$PROM_DIR/prometheus.yml
PROM_LOG=$LOG_DIR/prometheus.log
PROM_URL=http://$BIND_IP:$PROMETHEUS_PORT
PROMETHEUS_SCRAPE_INTERVAL=${TICKHOUSE_PROMETHEUS_SCRAPE_INTERVAL:-2s}

prometheus_installed() { [[ -x $PROM_BIN ]]; }

# Debian's postinst starts its own prometheus service on 0.0.0.0:9090 unless policy-rc.d
# forbids it: provide one that does (only for the install, when the machine has none).
prometheus_install() {
    prometheus_installed && return 0
    (
        policy=/usr/sbin/policy-rc.d
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\n# tickhouse stack: no service starts during apt-get install\nexit 101\n' >"$policy"
            chmod 755 "$policy"
            trap 'rm -f -- "$policy"' EXIT
        fi
        apt_install prometheus
    )
    prometheus_installed || die "prometheus: $PROM_BIN still missing after apt-get install prometheus"
    # Where systemd runs, the unit is enabled by the package: keep it off (it would listen on
    # every interface).
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        systemctl disable --now prometheus >/dev/null 2>&1 || warn "prometheus: could not stop Debian's prometheus service"
    fi
}

prometheus_healthy() { curl -fsS -m 3 -o /dev/null "$PROM_URL/-/ready"; }

prometheus_start() {
    if is_running prometheus; then
        log "prometheus: already running (pid $(pid_of prometheus))"
        return 0
    fi
    assert_ports_free prometheus "$PROMETHEUS_PORT"
    mkdir -p "$PROM_DIR/data"
    export SEAWEED_METRICS_PORT SEAWEED_SERVER_METRICS_PORT PIPELINE_METRICS_PORT PROMETHEUS_PORT PROMETHEUS_SCRAPE_INTERVAL
    render_template "$INFRA_DIR/prometheus/prometheus.local.yml" "$PROM_CONFIG"
    "$PROM_BIN" --version >/dev/null 2>&1 || die "prometheus: $PROM_BIN does not run"
    log "prometheus: starting ($PROM_URL, scrape interval $PROMETHEUS_SCRAPE_INTERVAL)"
    start_bg prometheus "$PROM_LOG" "$PROM_BIN" \
        --config.file="$PROM_CONFIG" \
        --storage.tsdb.path="$PROM_DIR/data" \
        --storage.tsdb.retention.time=7d \
        --web.listen-address="$BIND_IP:$PROMETHEUS_PORT"
}

prometheus_wait() { wait_until prometheus "$PROM_LOG" prometheus_healthy; }

prometheus_stop() { stop_pid prometheus TERM; }

prometheus_status() {
    local p
    if ! p=$(pid_of prometheus); then
        printf '%-10s stopped  (optional: stack up prometheus)\n' prometheus
        return 3
    fi
    if prometheus_healthy; then
        printf '%-10s running  pid %-8s healthy  %s (scrapes SeaweedFS :%s, :%s and tickhouse metrics :%s)\n' \
            prometheus "$p" "$PROM_URL" "$SEAWEED_METRICS_PORT" "$SEAWEED_SERVER_METRICS_PORT" "$PIPELINE_METRICS_PORT"
    else
        printf '%-10s UNHEALTHY pid %s (see %s)\n' prometheus "$p" "$PROM_LOG"
        return 1
    fi
}
