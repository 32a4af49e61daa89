"""Sensors with Dagster's test contexts against a real (ephemeral) instance."""

from __future__ import annotations

import time

from dagster import SensorResult, SkipReason, build_sensor_context

from tickhouse_dagster.defs.resources import FeedResource, LandingResource
from tickhouse_dagster.defs.sensors import build_landing_sensor, touched_days_sensor
from tickhouse_dagster.settings import current
from tickhouse_dagster_tests.defs.helpers import definitions_with, ingest, requested_keys
from tickhouse_dagster_tests.defs.test_ingest_assets import trades
from tickhouse_dagster_tests.defs.test_ingest_batch import run_batch


def evaluate(
    instance, landing: LandingResource, cursor: str | None, feed: FeedResource | None = None
) -> SensorResult:
    # The feed the definitions bind: profiles and venues from the (test) environment.
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"landing": landing, "feed": feed or FeedResource()},
    )
    result = build_landing_sensor(current())(context)
    assert isinstance(result, SensorResult)
    for request in result.dynamic_partitions_requests:  # what the daemon would apply
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_new_unchanged_and_changed_files(resources, instance):
    landing = resources["landing"]
    store = landing.store()
    first_version = store.write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5)))
    store.write("KRX/b.xml", trades(("2", "09:00:00", "71000", 5)))

    first = evaluate(instance, landing, None)
    # Both waiting files in one batch run, keyed by their versions (a re-tick is a no-op).
    assert requested_keys(first) == ["KRX/a.xml", "KRX/b.xml"]
    assert first.run_requests[0].tags["tickhouse/batch_files"] == "2"
    assert first_version.key == "KRX/a.xml"
    assert list(first.dynamic_partitions_requests[0].partition_keys) == ["KRX/a.xml", "KRX/b.xml"]

    unchanged = evaluate(instance, landing, first.cursor)
    assert unchanged.run_requests == [] and unchanged.dynamic_partitions_requests == []

    time.sleep(0.01)
    changed = store.write("KRX/a.xml", trades(("1", "09:00:00", "71000", 6)))
    again = evaluate(instance, landing, unchanged.cursor)
    assert requested_keys(again) == [changed.key]
    assert again.run_requests[0].run_key != first.run_requests[0].run_key
    assert again.dynamic_partitions_requests == []  # the partition already exists


def test_file_ingested_outside_the_sensor_is_not_requested_again(resources, instance):
    landing = resources["landing"]
    landing.store().write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5)))
    assert ingest(definitions_with(resources), instance, "KRX/a.xml").success  # e.g. by the CLI
    assert evaluate(instance, landing, None).run_requests == []


def test_ten_thousand_files_are_paged(resources, instance):
    landing = resources["landing"]
    root = landing.store().root
    for day in range(100):
        folder = root / "KRX" / f"d{day:03d}"
        folder.mkdir(parents=True)
        for n in range(100):
            (folder / f"t{n:03d}.xml").write_bytes(b"<tickhouse/>")
    started = time.monotonic()
    first = evaluate(instance, landing, None)
    elapsed = time.monotonic() - started
    print(f"first tick over 10,000 files: {elapsed:.2f}s")
    assert len(requested_keys(first)) == 500
    keys = set(requested_keys(first))
    cursor = first.cursor
    for _ in range(19):
        step = evaluate(instance, landing, cursor)
        keys |= set(requested_keys(step))
        cursor = step.cursor
    assert len(keys) == 10_000
    assert evaluate(instance, landing, cursor).run_requests == []


def touched_days(instance, resources, cursor: str | None = None) -> SensorResult | SkipReason:
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"lakehouse": resources["lakehouse"]}
    )
    return touched_days_sensor(context)


def test_touched_days_sensor_requests_bars_of_each_ingested_day(resources, instance):
    landing = resources["landing"]
    landing.store().write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5)))
    # The per-file assets commit ticks without building bars: the sensor asks for them.
    assert ingest(definitions_with(resources), instance, "KRX/a.xml").success
    result = touched_days(instance, resources)
    assert [r.partition_key for r in result.run_requests] == ["2024-01-02"]
    assert result.run_requests[0].tags["tickhouse/bars_day"] == "2024-01-02"
    quiet = touched_days(instance, resources, result.cursor)
    assert isinstance(quiet, SkipReason)


def test_touched_days_sensor_leaves_days_whose_bars_the_ingest_run_built(resources, instance):
    landing = resources["landing"]
    definitions = definitions_with(resources)
    landing.store().write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5)))
    landing.store().write("KRX/b.xml", trades(("2", "09:01:00", "71000", 5)))
    assert run_batch(definitions, instance, ["KRX/a.xml"]).success
    built = touched_days(instance, resources)
    assert isinstance(built, SensorResult) and built.run_requests == []
    # Ticks committed after the last build (per-file assets, no bars): requested again.
    assert ingest(definitions, instance, "KRX/b.xml").success
    behind = touched_days(instance, resources, built.cursor)
    assert [r.partition_key for r in behind.run_requests] == ["2024-01-02"]


def test_touched_days_sensor_waits_while_an_ingest_run_is_in_flight(resources, instance):
    from dagster import DagsterRun, DagsterRunStatus

    landing = resources["landing"]
    landing.store().write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5)))
    assert ingest(definitions_with(resources), instance, "KRX/a.xml").success  # no bars built
    running = DagsterRun(
        job_name="ingest_landing_batch",
        run_id="abcdef0123456789abcdef0123456789",
        status=DagsterRunStatus.STARTED,
    )
    instance.add_run(running)
    # That run builds the bars of its days: none requested beside it, the cursor left as it was.
    waiting = touched_days(instance, resources)
    assert isinstance(waiting, SkipReason)
    assert "ingest run abcdef01 in flight" in waiting.skip_message
    instance.report_run_failed(running)  # ended (here without bars): the day is behind
    after = touched_days(instance, resources)
    assert [r.partition_key for r in after.run_requests] == ["2024-01-02"]


def test_a_broken_profile_skips_the_tick_naming_file_field_and_reason(
    resources, instance, tmp_path
):
    landing = resources["landing"]
    landing.store().write("KRX/a.xml", trades(("1", "09:00:00", "71000", 5)))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "vendor.yaml").write_text(
        "name: vendor\nrecord: T\nfields:\n  venue: '@v'\n  symbol: 'concat(@a, @b)'\n"
        "  ts: '@t'\n  trade_id: '@i'\n  price: '@p'\n  quantity: '@q'\n"
    )
    broken = FeedResource(profiles_dir=str(profiles))
    context = build_sensor_context(
        instance=instance, resources={"landing": landing, "feed": broken}
    )
    result = build_landing_sensor(current())(context)
    assert isinstance(result, SkipReason)  # no run requested, no partition added, no cursor
    message = result.skip_message
    assert message.startswith("no run requested: the feed configuration is refused: ")
    assert (
        f"{profiles / 'vendor.yaml'}, profile 'vendor', field 'symbol': path 'concat(@a, @b)'"
        in (message)
    )
    assert instance.get_dynamic_partitions("landing_files") == []
    # Fixed, the next tick requests the waiting file.
    (profiles / "vendor.yaml").write_text(
        (profiles / "vendor.yaml").read_text().replace("concat(@a, @b)", "@s")
    )
    assert requested_keys(evaluate(instance, landing, None, broken)) == ["KRX/a.xml"]
