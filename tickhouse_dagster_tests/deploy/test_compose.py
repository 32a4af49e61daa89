"""infra/compose/docker-compose.yaml, validated without a Docker engine.

The compose file is loaded by compose-go (github.com/compose-spec/compose-go/v2, the library
`docker compose` itself uses: schema validation, interpolation, normalisation, consistency
checks) through the small Go program in infra/compose/validate, which prints the resolved model
like `docker compose config`. The tests then check that model: ports, one-source-of-truth
mounts, the image build, the Dagster instance, and that credentials come only from the env file.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tickhouse_dagster import settings
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.conftest import STACK
from tickhouse_dagster_tests.deploy.conftest import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    Validator,
    build_validator,
)
from tickhouse_dagster_tests.deploy.test_dockerfile import image_command

pytestmark = pytest.mark.timeout(960)  # a cold validator build compiles compose-go

INFRA = PROJECT_ROOT / "infra"
DAGSTER_HOME = "/opt/dagster/home"
SERVICES = {
    "seaweedfs-master",
    "seaweedfs-volume",
    "seaweedfs-filer",
    "seaweedfs-config",
    "seaweedfs-s3",
    "seaweedfs-buckets",
    "postgres",
    "postgres-init",
    "trino",
    "tickhouse-code",
    "landing-listener",
    "dagster-webserver",
    "dagster-daemon",
    # monitoring (tickhouse_dagster_tests/deploy/test_compose_monitoring.py)
    "tickhouse-metrics",
    "prometheus",
    "grafana",
}
ONE_SHOT = {"seaweedfs-config", "seaweedfs-buckets", "postgres-init"}
DAGSTER_PROCESSES = ("tickhouse-code", "dagster-webserver", "dagster-daemon")
SECRET_VARIABLES = (
    "TICKHOUSE_S3_SECRET_KEY",
    "TICKHOUSE_PG_PASSWORD",
    "TICKHOUSE_PG_ADMIN_PASSWORD",
)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|CREDENTIAL|TOKEN")
# A bare or required reference; a default (${X:-…}) would put a value into the file.
REFERENCE = r"\$\{[A-Z_][A-Z0-9_]*(?::?\?[^}]*)?\}"


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def versions() -> dict[str, str]:
    return read_env_file(INFRA / "local" / "versions.env")


def binds(service: dict[str, Any]) -> dict[str, tuple[Path, bool]]:
    """target -> (source, read_only) of a service's bind mounts."""
    return {
        v["target"]: (Path(v["source"]), bool(v.get("read_only")))
        for v in service.get("volumes", [])
        if v["type"] == "bind"
    }


def settings_text(path: Path) -> str:
    """A properties/config file without its comment lines."""
    return "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    )


def raw_compose() -> dict[str, Any]:
    """The compose file as written (YAML anchors and merge keys resolved, no interpolation)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_go_loads_the_file(
    compose_validator: Validator, compose_model: dict[str, Any]
) -> None:
    assert compose_model["name"] == "tickhouse"
    assert set(compose_model["services"]) == SERVICES
    yaml_out = compose_validator.run("-format", "yaml", COMPOSE_FILE)
    assert yaml_out.returncode == 0, yaml_out.stderr
    assert yaml.safe_load(yaml_out.stdout)["services"].keys() == compose_model["services"].keys()
    for name in ONE_SHOT:
        assert compose_model["services"][name]["restart"] == "no", name
    for name in SERVICES - ONE_SHOT:
        assert compose_model["services"][name]["restart"] == "unless-stopped", name
        assert "healthcheck" in compose_model["services"][name], name


def test_validator_rejects_broken_files(compose_validator: Validator, tmp_path: Path) -> None:
    """The validator is not a rubber stamp: schema errors, dangling references and unset
    variables fail, as they do for `docker compose config`."""
    text = COMPOSE_FILE.read_text()
    cases = {
        "schema": text.replace(
            "    shm_size: 128mb\n", "    shm_size: 128mb\n    no_such_key: 1\n"
        ),
        "dependency": text.replace(
            "      postgres-init:\n        condition", "      postgres-inix:\n        condition", 1
        ),
        "volume": text.replace("  tickhouse-data:\n", ""),
        "unset variable": text.replace(
            "${TICKHOUSE_TRINO_HEAP:-2G}", "${TICKHOUSE_TRINO_HEAP_UNSET}"
        ),
    }
    for case, broken in cases.items():
        assert broken != text, case
        path = tmp_path / f"{case.replace(' ', '-')}.yaml"
        path.write_text(broken)
        result = compose_validator.run("-project-directory", COMPOSE_DIR, path)
        assert result.returncode == 1, f"{case}: accepted\n{result.stdout[:500]}"
        assert "compose-validate: invalid" in result.stderr, (case, result.stderr)


def test_missing_credentials_are_an_error(compose_validator: Validator, tmp_path: Path) -> None:
    partial = tmp_path / "partial.env"
    partial.write_text("TICKHOUSE_S3_ACCESS_KEY=tickhouse\n")
    result = compose_validator.run(env_file=partial)
    assert result.returncode == 1
    for name in SECRET_VARIABLES:
        assert f"required variable {name} is missing a value" in result.stderr, name


def test_published_ports_bind_loopback_only(compose_model: dict[str, Any]) -> None:
    published = {}
    for name, service in compose_model["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", (name, port)
            published[(name, port["target"])] = port["published"]
    # The local stack's port numbers, so host tools use the same endpoints.
    assert published == {
        ("dagster-webserver", 3000): "3000",
        ("trino", 8080): "18080",
        ("seaweedfs-s3", 8333): "18333",
        ("seaweedfs-s3", 8181): "18181",
        ("postgres", 5432): "15433",
        ("prometheus", 9090): "19090",
        ("grafana", 3000): "3001",
    }
    common = (STACK.parent / "lib" / "common.sh").read_text()
    for stack_port in ("18080", "18333", "18181", "15433", "19090"):
        # (shifted by TICKHOUSE_STACK_PORT_OFFSET for a second stack; 0 by default)
        assert f"=$(({stack_port} + PORT_OFFSET))" in common, stack_port


def test_trino_mounts_the_local_stack_config(compose_model: dict[str, Any]) -> None:
    trino = compose_model["services"]["trino"]
    mounts = binds(trino)
    assert mounts["/etc/trino/catalog"] == (INFRA / "trino" / "catalog", True)
    templates = next(t for t, (src, _) in mounts.items() if src == INFRA / "trino" / "etc")
    assert mounts[templates][1] is True
    entrypoint = mounts[trino["entrypoint"][1]][0]
    assert entrypoint == COMPOSE_DIR / "trino" / "entrypoint.sh"
    assert f"TRINO_ETC_TEMPLATES:-{templates}" in entrypoint.read_text()
    assert mounts["/opt/tickhouse/render-template.sh"][0] == COMPOSE_DIR / "render-template.sh"
    environment = trino["environment"]
    # Every ${ENV:NAME} of the catalog files, and every ${NAME} of the etc templates except the
    # bind address (the entrypoint derives it from the container's address), is set.
    referenced = 0
    for catalog in (INFRA / "trino" / "catalog").glob("*.properties"):
        for name in re.findall(r"\$\{ENV:([A-Za-z0-9_]+)\}", settings_text(catalog)):
            assert environment.get(name), (catalog.name, name)
            referenced += 1
    for template in (INFRA / "trino" / "etc").iterdir():
        for name in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", settings_text(template)):
            assert name == "TRINO_BIND_IP" or environment.get(name), (template.name, name)
            referenced += 1
    assert referenced >= 15
    assert trino["image"] == f"trinodb/trino:{versions()['TRINO_VERSION']}"


def test_code_location_image_is_built_from_the_repository_dockerfile(
    compose_model: dict[str, Any],
) -> None:
    services = compose_model["services"]
    code = services["tickhouse-code"]
    assert Path(code["build"]["context"]) == PROJECT_ROOT
    assert (
        Path(code["build"]["context"]) / code["build"]["dockerfile"]
    ) == PROJECT_ROOT / "Dockerfile"
    assert code.get("command") is None and code.get("entrypoint") is None  # the image's CMD: gRPC
    # Everything else that runs Dagster or the init scripts uses that very image, never its own
    # build (one build, the same Dagster version on both ends of the gRPC API).
    users = [n for n, s in services.items() if s["image"] == code["image"]]
    assert set(users) == {
        *DAGSTER_PROCESSES,
        "seaweedfs-config",
        "seaweedfs-buckets",
        "tickhouse-metrics",
        "landing-listener",
    }
    assert [n for n, s in services.items() if "build" in s] == ["tickhouse-code"]
    assert services["dagster-webserver"]["command"][:1] == ["dagster-webserver"]
    assert services["dagster-daemon"]["command"][:2] == ["dagster-daemon", "run"]


def test_dagster_processes_use_the_deployment_instance(compose_model: dict[str, Any]) -> None:
    instance = yaml.safe_load((INFRA / "dagster" / "dagster.yaml").read_text())
    instance_vars = set(re.findall(r"env: (\w+)", (INFRA / "dagster" / "dagster.yaml").read_text()))
    assert instance_vars == {
        "TICKHOUSE_PG_HOST",
        "TICKHOUSE_PG_PORT",
        "TICKHOUSE_PG_USER",
        "TICKHOUSE_PG_PASSWORD",
    }
    assert instance["storage"]["postgres"]["postgres_db"]["db_name"] == "dagster"
    for name in DAGSTER_PROCESSES:
        service = compose_model["services"][name]
        mounts = binds(service)
        assert service["environment"]["DAGSTER_HOME"] == DAGSTER_HOME, name
        assert mounts[f"{DAGSTER_HOME}/dagster.yaml"] == (
            INFRA / "dagster" / "dagster.yaml",
            True,
        ), name
        for var in instance_vars:
            assert service["environment"].get(var), (name, var)
        assert service["environment"]["TICKHOUSE_PG_HOST"] == "postgres"
        assert service["init"] is True, name  # signals reach dagster (not PID 1)
        storage = [v for v in service["volumes"] if v["target"] == f"{DAGSTER_HOME}/storage"]
        assert storage and storage[0]["source"] == "dagster-storage", name  # compute logs shared
    for name in ("dagster-webserver", "dagster-daemon"):
        service = compose_model["services"][name]
        workspace = service["command"][service["command"].index("-w") + 1]
        assert binds(service)[workspace] == (COMPOSE_DIR / "workspace.yaml", True)
        assert service["depends_on"]["tickhouse-code"]["condition"] == "service_healthy"


def test_workspace_points_at_the_code_server(compose_model: dict[str, Any]) -> None:
    workspace = yaml.safe_load((COMPOSE_DIR / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    assert server["host"] in compose_model["services"]
    code = compose_model["services"][server["host"]]
    assert code["healthcheck"]["test"][-2:] == ["-p", str(server["port"])]
    command = image_command()  # the image's CMD: the code server the workspace points at
    assert command[command.index("-p") + 1] == str(server["port"])
    assert command[command.index("--location-name") + 1] == server["location_name"]
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["code_location_name"] == server["location_name"]


def test_postgres_and_seaweedfs_reuse_the_infra_files(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    init = services["postgres-init"]
    catalog_sql = init["environment"]["TICKHOUSE_ICEBERG_CATALOG_SQL"]
    assert binds(init)[catalog_sql] == (INFRA / "postgres" / "iceberg_jdbc_catalog_v1.sql", True)
    assert binds(init)[init["entrypoint"][1]][0] == COMPOSE_DIR / "postgres" / "init.sh"
    assert init["environment"]["TICKHOUSE_PG_DATABASES"].split() == ["iceberg", "dagster"]
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"

    config = services["seaweedfs-config"]
    template, rendered = config["command"][:2]
    assert binds(config)[template] == (INFRA / "seaweedfs" / "s3-identities.template.json", True)
    assert config["command"][2:] == ["600", "1000:1000"]  # the seaweed user of the image
    s3 = services["seaweedfs-s3"]
    assert f"-config={rendered}" in s3["command"]
    (volume,) = [v for v in s3["volumes"] if v["type"] == "volume"]
    assert volume["read_only"] and rendered.startswith(volume["target"] + "/")
    assert s3["depends_on"]["seaweedfs-config"]["condition"] == "service_completed_successfully"
    for name in ("trino", "tickhouse-code"):
        for dependency in ("postgres-init", "seaweedfs-buckets"):
            assert (
                services[name]["depends_on"][dependency]["condition"]
                == "service_completed_successfully"
            )

    release = versions()["SEAWEEDFS_EXPECTED_RELEASE"]
    for name in ("seaweedfs-master", "seaweedfs-volume", "seaweedfs-filer", "seaweedfs-s3"):
        assert services[name]["image"] == f"chrislusf/seaweedfs:{release}", name
    assert services["postgres"]["image"] == f"postgres:{versions()['POSTGRES_MAJOR']}"


def test_same_s3_and_catalog_settings_as_the_local_stack(compose_model: dict[str, Any]) -> None:
    code = compose_model["services"]["tickhouse-code"]["environment"]
    stack_names = set(re.findall(r"emit (\w+)", STACK.read_text()))
    known = {s.env for s in settings.SETTINGS} | stack_names | {"DAGSTER_HOME"}
    unknown = sorted(set(code) - known)
    assert not unknown, f"variables neither the code nor the stack knows: {unknown}"
    for catalog in (INFRA / "trino" / "catalog").glob("*.properties"):
        properties = catalog.read_text()
        assert "s3.path-style-access=true" in properties
        assert f"s3.region={code['AWS_REGION']}" in properties
    assert code["TICKHOUSE_LANDING_URI"] == "s3://landing/"
    assert code["TICKHOUSE_WAREHOUSE_URI"] == "s3://warehouse/"
    assert (
        "iceberg.jdbc-catalog.default-warehouse-dir=s3://warehouse/"
        in (INFRA / "trino" / "catalog" / "iceberg.properties").read_text()
    )
    assert code["TICKHOUSE_CATALOG_NAME"] == "tickhouse"
    assert code["TICKHOUSE_CATALOG_URI"].startswith("postgresql+psycopg2://")
    assert code["TICKHOUSE_CATALOG_URI"].endswith("@postgres:5432/iceberg")
    s3 = "http://seaweedfs-s3:8333"
    assert code["TICKHOUSE_S3_ENDPOINT"] == code["AWS_ENDPOINT_URL_S3"] == s3
    trino = compose_model["services"]["trino"]["environment"]
    assert trino["TICKHOUSE_S3_ENDPOINT"] == s3
    assert trino["TICKHOUSE_ICEBERG_JDBC_URL"] == "jdbc:postgresql://postgres:5432/iceberg"
    buckets = compose_model["services"]["seaweedfs-buckets"]["environment"]
    assert buckets["TICKHOUSE_S3_ENDPOINT"] == s3
    assert buckets["TICKHOUSE_S3_BUCKETS"].split() == ["landing", "warehouse"]
    assert (
        f"s3://{buckets['TICKHOUSE_ICEBERG_REST_TABLE_BUCKET']}"
        == trino["TICKHOUSE_ICEBERG_REST_WAREHOUSE"]
    )
    assert code["TICKHOUSE_TRINO_URL"] == "http://trino:8080"


def test_no_secret_is_written_into_the_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    example = read_env_file(ENV_EXAMPLE)
    for name in SECRET_VARIABLES:
        assert example[name] not in text, name
    model = raw_compose()
    checked = 0
    for name, service in model["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(key):
                assert re.fullmatch(REFERENCE, value), (name, key, value)
                checked += 1
            if "://" in value and "@" in value:  # credentials inside a URL
                userinfo = value.split("://", 1)[1].rsplit("@", 1)[0]
                assert re.fullmatch(rf"{REFERENCE}:{REFERENCE}", userinfo) or re.fullmatch(
                    rf"\$\{{[A-Z_]+:-[a-z]+\}}:{REFERENCE}", userinfo
                ), (name, key, value)
                checked += 1
    assert checked >= 15


def test_resolved_credentials_come_only_from_the_env_file(
    compose_validator: Validator, tmp_path: Path
) -> None:
    """Rendered with other credentials, the model holds those and none of .env.example's."""
    example = read_env_file(ENV_EXAMPLE)
    other = {name: f"t{secrets.token_hex(12)}" for name in example}
    other["TICKHOUSE_PG_USER"] = "tickhouse_other"
    env_file = tmp_path / "other.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in other.items()))
    result = compose_validator.run(env_file=env_file)
    assert result.returncode == 0, result.stderr
    for name in SECRET_VARIABLES:
        assert example[name] not in result.stdout, name
    services = json.loads(result.stdout)["services"]
    pg, s3 = other["TICKHOUSE_PG_PASSWORD"], other["TICKHOUSE_S3_SECRET_KEY"]
    assert services["trino"]["environment"]["TICKHOUSE_PG_PASSWORD"] == pg
    assert services["trino"]["environment"]["TICKHOUSE_S3_SECRET_KEY"] == s3
    assert services["tickhouse-code"]["environment"]["AWS_SECRET_ACCESS_KEY"] == s3
    assert services["tickhouse-code"]["environment"]["TICKHOUSE_CATALOG_URI"] == (
        f"postgresql+psycopg2://tickhouse_other:{pg}@postgres:5432/iceberg"
    )
    assert (
        services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        == other["TICKHOUSE_PG_ADMIN_PASSWORD"]
    )
    assert services["seaweedfs-config"]["environment"]["TICKHOUSE_S3_SECRET_KEY"] == s3
    for name in DAGSTER_PROCESSES:
        assert services[name]["environment"]["TICKHOUSE_PG_PASSWORD"] == pg
        assert services[name]["environment"]["TICKHOUSE_PG_USER"] == "tickhouse_other"
    # Secrets reach only the services that use them.
    assert "TICKHOUSE_S3_SECRET_KEY" not in str(services["dagster-webserver"])
    assert s3 not in json.dumps(services["dagster-webserver"]) + json.dumps(
        services["dagster-daemon"]
    )
    assert other["TICKHOUSE_PG_ADMIN_PASSWORD"] not in json.dumps(
        {n: s for n, s in services.items() if n not in ("postgres", "postgres-init")}
    )


def test_superset_is_not_deployed_by_compose(
    compose_validator: Validator, compose_model: dict[str, Any]
) -> None:
    """Superset runs from its own venv (infra/superset, docs/superset.md), not as a service: the
    file renders strictly (an unset variable is an error) from an env file with no Superset
    setting, and no service or variable of it is Superset's."""
    rendered = compose_validator.run()
    assert rendered.returncode == 0, rendered.stderr
    model = json.loads(rendered.stdout)
    assert model["services"].keys() == compose_model["services"].keys()
    assert not any("superset" in name for name in model["services"])
    assert "SUPERSET" not in json.dumps(model)


def test_the_validator_build_is_cached(compose_validator: Validator) -> None:
    again = build_validator()
    assert again.binary == compose_validator.binary
    assert not again.built, "a second build ran although the binary is newer than its sources"
    start = time.monotonic()
    assert compose_validator.run().returncode == 0
    assert again.seconds + (time.monotonic() - start) < 5


def test_landing_listener_feeds_the_push_sensor(compose_model: dict[str, Any]) -> None:
    """The listener and the code location's push sensor share one queue and one filer; the
    filer's gRPC port is its HTTP port + 10000 (fixed by weed)."""
    services = compose_model["services"]
    listener, code = services["landing-listener"], services["tickhouse-code"]["environment"]
    env = listener["environment"]
    assert listener["command"][:2] == ["tickhouse", "listen"]
    assert "ports" not in listener  # reached by the healthcheck only
    for name in ("TICKHOUSE_LANDING_QUEUE_URL", "TICKHOUSE_FILER_GRPC", "TICKHOUSE_LANDING_URI"):
        assert env[name] == code[name], name
    assert env["TICKHOUSE_LANDING_QUEUE_URL"].endswith("@postgres:5432/dagster")
    filer_port = next(
        int(arg.split("=", 1)[1])
        for arg in services["seaweedfs-filer"]["command"]
        if arg.startswith("-port=")
    )
    assert env["TICKHOUSE_FILER_GRPC"] == f"seaweedfs-filer:{filer_port + 10000}"
