"""The push sensor's place in the code location (its behaviour on the real stack:
tickhouse_dagster_tests/stack/test_push_ingestion.py)."""

from __future__ import annotations

from dagster import DefaultSensorStatus, build_sensor_context

from tickhouse_dagster.defs.push import build_push_sensor
from tickhouse_dagster.defs.resources import FeedResource
from tickhouse_dagster.settings import current
from tickhouse_dagster_tests.defs.helpers import definitions_with


def test_the_push_sensor_exists_only_with_a_filer(resources, monkeypatch):
    names = {s.name for s in definitions_with(resources).sensors}
    assert "landing_push_sensor" not in names and "landing_sensor" in names
    monkeypatch.setenv("TICKHOUSE_FILER_GRPC", "127.0.0.1:18888")
    defs = definitions_with(resources)
    push = defs.resolve_sensor_def("landing_push_sensor")
    assert push.minimum_interval_seconds == 1
    assert push.default_status == DefaultSensorStatus.RUNNING
    assert push.job_name == "ingest_landing_batch"
    assert defs.resolve_sensor_def("landing_sensor")  # the safety net stays


def test_a_local_landing_folder_is_refused_with_a_reason(resources, instance, monkeypatch):
    monkeypatch.setenv("TICKHOUSE_PUSH_WAIT_SECONDS", "0")
    context = build_sensor_context(
        instance=instance, resources={"landing": resources["landing"], "feed": resources["feed"]}
    )
    result = build_push_sensor(current())(context)
    assert result.run_requests == []
    assert "push needs an s3:// landing" in result.skip_reason.skip_message


def test_a_broken_profile_leaves_the_queue_unclaimed(resources, instance, tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "vendor.yaml").write_text("name: vendor\nrecord: T\nfields: {venue: '@v'}\n")
    broken = FeedResource(profiles_dir=str(profiles))
    context = build_sensor_context(
        instance=instance, resources={"landing": resources["landing"], "feed": broken}
    )
    result = build_push_sensor(current())(context)
    assert result.run_requests == [] and result.cursor is None
    assert "the feed configuration is refused" in result.skip_reason.skip_message
    assert str(profiles / "vendor.yaml") in result.skip_reason.skip_message
