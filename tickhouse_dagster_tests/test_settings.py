"""The settings object: defaults, overrides, bad values named, secrets never printed."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import EnvVar

from tickhouse_dagster.cli.doctor import print_settings
from tickhouse_dagster.settings import PROJECT_ROOT, SETTINGS, SettingError, TickhouseSettings


def test_defaults_need_no_environment():
    settings = TickhouseSettings.from_env({})
    home = PROJECT_ROOT / ".tickhouse"
    assert settings.home == home
    assert settings.landing_uri == f"{home}/landing"
    assert settings.warehouse_uri == f"{home}/warehouse"
    assert settings.staging_uri == f"{home}/staging"
    assert settings.embedded_catalog_db == home / "catalog.db"
    assert settings.dagster_home == home / "dagster"
    assert settings.landing_queue_url == f"sqlite:///{home}/listener/landing-queue.sqlite"
    assert settings.cache == Path.home() / ".cache" / "tickhouse"
    assert (settings.catalog_name, settings.namespace, settings.region) == (
        "tickhouse",
        "market",
        "us-east-1",
    )
    assert settings.sensor_interval_seconds == 30 and settings.retry_max == 4
    assert settings.retry_base_seconds == 2.0 and settings.push_wait_seconds == 4.0
    assert settings.first_trade_date == date(2020, 1, 1)
    assert settings.bars_freshness_threshold == timedelta(minutes=30)
    assert settings.spark_master == "local[2]"
    assert settings.catalog_uri is None and settings.trino_url is None
    assert not settings.push_enabled and settings.given == frozenset()


def test_values_come_typed_from_the_environment(tmp_path):
    settings = TickhouseSettings.from_env(
        {
            "TICKHOUSE_HOME": str(tmp_path),
            "TICKHOUSE_SENSOR_INTERVAL_SECONDS": "5",
            "TICKHOUSE_PUSH_RUN_STALL_SECONDS": "0.5",
            "TICKHOUSE_FIRST_TRADE_DATE": "2024-12-25",
            "TICKHOUSE_PROFILES_DIR": str(tmp_path / "profiles"),
            "TICKHOUSE_SPARK_MASTER": "spark://127.0.0.1:7077",
            "TICKHOUSE_CACHE": str(tmp_path / "cache"),
            "TICKHOUSE_FILER_GRPC": "127.0.0.1:18888",
            "TICKHOUSE_TRINO_CATALOG": "",  # empty is unset: the default
        }
    )
    assert settings.home == tmp_path and settings.landing_uri == f"{tmp_path}/landing"
    assert settings.sensor_interval_seconds == 5
    assert settings.push_run_stall_seconds == 0.5
    assert settings.first_trade_date == date(2024, 12, 25)
    assert settings.profiles_dir == tmp_path / "profiles"
    assert settings.spark_master == "spark://127.0.0.1:7077"
    assert settings.cache == tmp_path / "cache"
    assert settings.push_enabled
    assert settings.trino_catalog == "iceberg"
    assert "TICKHOUSE_SPARK_MASTER" in settings.given
    assert "TICKHOUSE_TRINO_CATALOG" not in settings.given


def test_the_settings_are_frozen():
    settings = TickhouseSettings.from_env({})
    with pytest.raises(FrozenInstanceError):
        settings.retry_max = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("TICKHOUSE_SENSOR_INTERVAL_SECONDS", "30s"),
        ("TICKHOUSE_RETRY_BASE_SECONDS", "two"),
        ("TICKHOUSE_FIRST_TRADE_DATE", "2024-13-01"),
        ("TICKHOUSE_LISTENER_PORT", "http"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(env, value):
    with pytest.raises(SettingError, match=f"^{env}='{value}': not a valid value"):
        TickhouseSettings.from_env({env: value})


def test_every_field_has_one_row():
    names = [s.field for s in SETTINGS]
    assert len(names) == len(set(names))
    assert set(names) == {f.name for f in fields(TickhouseSettings)} - {"given"}
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_doctor_lists_every_setting_and_masks_secrets(capsys):
    secret, password = "AKIA-not-to-be-printed", "pg-pass-not-to-be-printed"
    settings = TickhouseSettings.from_env(
        {
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ACCESS_KEY_ID": secret,
            "TICKHOUSE_CATALOG_URI": f"postgresql+psycopg2://iceberg:{password}@db:5432/iceberg",
            "TICKHOUSE_TRINO_PASSWORD": secret,
            "TICKHOUSE_SPARK_MASTER": "spark://127.0.0.1:7077",
        }
    )
    print_settings(settings)
    out = capsys.readouterr().out
    printed = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(printed) == {s.env for s in SETTINGS}
    assert secret not in out and password not in out
    assert "**** (set)" in printed["AWS_SECRET_ACCESS_KEY"]
    assert "iceberg:****@db:5432" in printed["TICKHOUSE_CATALOG_URI"]
    assert "spark://127.0.0.1:7077" in printed["TICKHOUSE_SPARK_MASTER"]
    assert str(settings.cache) in printed["TICKHOUSE_CACHE"]


def test_resources_take_secrets_as_env_vars():
    """A secret set in the environment reaches a resource as an EnvVar (Dagster stores the
    variable's name, never its value); unset settings take the settings' defaults."""
    from tickhouse_dagster.defs.resources import resources_from_settings

    uri = "postgresql+psycopg2://iceberg:secret@db:5432/iceberg"
    settings = TickhouseSettings.from_env(
        {"TICKHOUSE_CATALOG_URI": uri, "TICKHOUSE_TRINO_URL": "http://127.0.0.1:18080"}
    )
    resources = resources_from_settings(settings)
    lakehouse, trino = resources["lakehouse"], resources["trino"]
    assert lakehouse.catalog_uri == EnvVar("TICKHOUSE_CATALOG_URI")
    assert lakehouse.namespace == "market" and trino.user == "tickhouse"
    assert trino.password is None


def test_resolved_resources_read_the_environment_once_for_every_resource(monkeypatch):
    """Outside a run (the CLI), every resource comes initialised, its EnvVars read from the
    environment, from one Dagster instance: the caller's when it passes one."""
    from dagster import DagsterInstance

    from tickhouse_dagster.defs.resources import resolved_resources

    monkeypatch.setenv("TICKHOUSE_NAMESPACE", "desk_a")
    monkeypatch.setenv("TICKHOUSE_TRINO_URL", "http://127.0.0.1:18080")
    monkeypatch.setenv("TICKHOUSE_TRINO_PASSWORD", "s3cret")
    settings = TickhouseSettings.from_env(
        {
            "TICKHOUSE_NAMESPACE": "desk_a",
            "TICKHOUSE_TRINO_URL": "http://127.0.0.1:18080",
            "TICKHOUSE_TRINO_PASSWORD": "s3cret",
        }
    )
    with DagsterInstance.ephemeral() as instance:
        resources = resolved_resources(settings, instance=instance)
    assert set(resources) == {"landing", "feed", "lakehouse", "staging", "trino"}
    assert resources["lakehouse"].namespace == "desk_a"
    assert resources["trino"].url == "http://127.0.0.1:18080"
    assert resources["trino"].password == "s3cret"  # the value, resolved for the client only
    assert resolved_resources(settings)["lakehouse"].namespace == "desk_a"
