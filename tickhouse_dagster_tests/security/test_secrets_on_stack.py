"""No secret reaches Dagster: the real pipeline (SeaweedFS S3 with auth on, PostgreSQL catalog)
runs ingest, bars and both maintenance jobs through the code location's own definitions and a
Dagster instance on disk, then two runs fail on a wrong S3 secret and a wrong PostgreSQL password.
Every event (messages, metadata, errors with stack traces), every run record and every byte of
the instance's storage and compute logs is searched for the secrets, right and wrong; so is
`tickhouse doctor`'s output. Maintenance on the stack keeps every row."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import boto3
import pytest
from dagster import DagsterInstance
from dagster._serdes import serialize_value

from tickhouse_dagster.definitions import build_definitions
from tickhouse_dagster.defs.maintenance import MAINTENANCE_TABLES
from tickhouse_dagster.defs.resources import resolved_resources, resources_from_env
from tickhouse_dagster.sample import SampleSpec, generate
from tickhouse_dagster_tests.defs.helpers import ingest, rebuild_bars, step_error
from tickhouse_dagster_tests.tables import data_file_count, rows_of

pytestmark = pytest.mark.slow
TICKHOUSE_CLI = str(Path(sys.executable).with_name("tickhouse"))
DAY = "2024-01-02"
WRONG_S3_SECRET = "wrong-s3-secret-5f1c0e7a"
WRONG_PG_PASSWORD = "wrong-pg-password-9b2d4c"
EXPIRE_ALL = {
    "ops": {"expire_table_snapshots": {"config": {"retention_hours": 0, "retain_last": 1}}}
}


def leaks(instance: DagsterInstance, root: Path, secrets: dict[str, str]) -> list[str]:
    """Where any of the secrets appears: event log entries, run records, files under `root`."""
    found = []
    for run in instance.get_runs():
        texts = {"run record": serialize_value(run)}
        for number, entry in enumerate(instance.all_logs(run.run_id)):
            texts[f"event {number}"] = serialize_value(entry)
        for where, text in texts.items():
            found += [
                f"{name} in {run.job_name} {where}" for name, s in secrets.items() if s in text
            ]
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{name} in {path}" for name, s in secrets.items() if s.encode() in data]
    return found


def failure_text(result) -> str:
    """The failed step's error and every cause, as the UI shows them."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause or error.context
    return "\n".join(texts)


def run_job(definitions, instance, name: str, **kwargs):
    return definitions.resolve_job_def(name).execute_in_process(
        instance=instance, raise_on_error=False, **kwargs
    )


def test_no_secret_in_run_logs_metadata_errors_or_storage(on_stack, tmp_path, monkeypatch):
    secrets = {
        "S3 secret key": on_stack["AWS_SECRET_ACCESS_KEY"],
        "PostgreSQL password": on_stack["TICKHOUSE_PG_PASSWORD"],
        "wrong S3 secret": WRONG_S3_SECRET,
        "wrong PostgreSQL password": WRONG_PG_PASSWORD,
    }
    assert all(len(s) >= 8 for s in secrets.values())  # long enough not to match by chance
    store = resolved_resources()["landing"].store()
    sample = generate(SampleSpec(symbols=2, ticks_per_day=400, files_per_day=3), tmp_path / "xml")
    keys = [f"KRX/{p.name}" for p in sample]
    for key, path in zip(keys, sample, strict=True):
        store.write(key, path.read_bytes())

    root = tmp_path / "instance"
    root.mkdir()
    with DagsterInstance.local_temp(tempdir=str(root)) as instance:
        # The code location as deployed: resources from EnvVar, secrets read by the SDKs.
        definitions = build_definitions(resources_from_env())
        for key in keys[:2]:
            result = ingest(definitions, instance, key)
            assert result.success, step_error(result)
        assert rebuild_bars(definitions, instance, DAY).success

        house = resolved_resources()["lakehouse"].lakehouse()
        before = {t: rows_of(house.table(t)) for t in MAINTENANCE_TABLES}
        assert data_file_count(house.table("ticks"), date.fromisoformat(DAY)) == 2
        compaction = run_job(definitions, instance, "compact_trade_date", partition_key=DAY)
        assert compaction.success, step_error(compaction)
        expiry = run_job(definitions, instance, "expire_snapshots", run_config=EXPIRE_ALL)
        assert expiry.success, step_error(expiry)
        assert data_file_count(house.table("ticks"), date.fromisoformat(DAY)) == 1
        assert len(house.table("ticks").snapshots()) == 1
        assert {t: rows_of(house.table(t)) for t in MAINTENANCE_TABLES} == before

        # A wrong S3 secret: SeaweedFS refuses the request; the runs fail and say why. boto3's
        # default session caches the credentials it first resolved, so it is reset: as in a
        # process started with the wrong secret.
        with monkeypatch.context() as wrong:
            for name in (
                "AWS_SECRET_ACCESS_KEY",
                "TICKHOUSE_S3_SECRET_KEY",
                "PYICEBERG_CATALOG__TICKHOUSE__S3__SECRET_ACCESS_KEY",
            ):
                wrong.setenv(name, WRONG_S3_SECRET)
            wrong.setattr(boto3, "DEFAULT_SESSION", None)
            wrong_definitions = build_definitions(resources_from_env())
            landing_refused = ingest(wrong_definitions, instance, keys[2])  # boto3
            warehouse_refused = run_job(  # pyiceberg's S3 file IO (pyarrow)
                wrong_definitions, instance, "compact_trade_date", partition_key=DAY
            )
        boto3.DEFAULT_SESSION = None  # forget the wrong credentials again
        assert not landing_refused.success and not warehouse_refused.success
        # HEAD has no body: botocore reports the 403 without SeaweedFS's error code.
        assert "(403)" in failure_text(landing_refused), failure_text(landing_refused)
        assert "ACCESS_DENIED" in failure_text(warehouse_refused), failure_text(warehouse_refused)

        # A wrong PostgreSQL password in the catalog URL: the catalog refuses the connection.
        with monkeypatch.context() as wrong:
            for name in ("TICKHOUSE_CATALOG_URI", "PYICEBERG_CATALOG__TICKHOUSE__URI"):
                url = os.environ[name]
                assert secrets["PostgreSQL password"] in url
                wrong.setenv(name, url.replace(secrets["PostgreSQL password"], WRONG_PG_PASSWORD))
            denied = run_job(
                build_definitions(resources_from_env()),
                instance,
                "expire_snapshots",
                run_config=EXPIRE_ALL,
            )
        assert not denied.success
        assert "password authentication failed" in failure_text(denied), failure_text(denied)

        assert len(instance.get_runs()) == 8
        assert leaks(instance, root, secrets) == []
        # The scan does see what runs record: a landing key is in events and in the storage.
        control = leaks(instance, root, {"landing key": keys[2]})
        assert any(" event " in hit for hit in control) and any(".db" in hit for hit in control)


def test_doctor_does_not_print_a_wrong_catalog_password(on_stack):
    password = on_stack["TICKHOUSE_PG_PASSWORD"]
    env = dict(os.environ)
    for name in ("TICKHOUSE_CATALOG_URI", "PYICEBERG_CATALOG__TICKHOUSE__URI"):
        env[name] = env[name].replace(password, WRONG_PG_PASSWORD)
    doctor = subprocess.run(
        [TICKHOUSE_CLI, "doctor"], env=env, capture_output=True, text=True, timeout=180
    )
    assert doctor.returncode == 1
    assert "FAIL  iceberg catalog" in doctor.stdout, doctor.stdout
    output = doctor.stdout + doctor.stderr
    assert WRONG_PG_PASSWORD not in output and password not in output
    assert on_stack["AWS_SECRET_ACCESS_KEY"] not in output
