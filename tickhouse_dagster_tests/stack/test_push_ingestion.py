"""Push ingestion on the real stack: the stack's own landing-listener (started by
`infra/local/stack up`) hears SeaweedFS's filer, the push sensor turns its queue into runs."""

from __future__ import annotations

import threading
import time

import pytest
from dagster import DagsterInstance, build_sensor_context

from tickhouse_dagster.defs.resources import FeedResource, resolved_resources
from tickhouse_dagster.defs.sensors import build_landing_sensor
from tickhouse_dagster.listener import Listener, ListenerConfig
from tickhouse_dagster.settings import current
from tickhouse_dagster.storage.landing import LandingFile
from tickhouse_dagster_tests.defs.helpers import definitions_with, step_error
from tickhouse_dagster_tests.defs.test_ingest_assets import trades
from tickhouse_dagster_tests.push import PushDaemon, queue, wait_queued

pytestmark = pytest.mark.slow
QUEUED_WITHIN = 5.0  # seconds from the upload's return to the version in the queue


@pytest.fixture
def pushed(on_stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("TICKHOUSE_FILER_GRPC", on_stack["TICKHOUSE_FILER_GRPC"])
    # Idle evaluations return quickly here; the wait itself has its own test below.
    monkeypatch.setenv("TICKHOUSE_PUSH_WAIT_SECONDS", "0.2")
    return on_stack


def test_a_new_file_is_queued_within_seconds_and_requested_once(pushed, tmp_path):
    resources = resolved_resources()
    landing = resources["landing"]
    store = landing.store()
    with DagsterInstance.ephemeral() as instance:
        daemon = PushDaemon(instance, landing)
        daemon.start_at_queue_end()
        assert daemon.tick().run_requests == []  # nothing new yet

        started = time.monotonic()
        version = store.write("KRX/2024-01-02/a.xml", trades(("1", "09:00:00", "71000", 5)))
        waited = wait_queued([version.key], landing, QUEUED_WITHIN)
        print(f"upload → queued: {(time.monotonic() - started) * 1000:.0f} ms")
        assert waited < QUEUED_WITHIN

        before = daemon.cursor
        first = daemon.tick()
        assert [r.tags["tickhouse/batch_files"] for r in first.run_requests] == ["1"]
        assert daemon.requested_keys() == [version.key]
        assert int(first.run_requests[0].tags["tickhouse/landed_to_requested_ms"]) < 5000
        assert first.asset_events[0].metadata["requested_files"].value == 1
        # A retried evaluation (the daemon died before storing the cursor) asks for the same
        # run key, which Dagster drops; the next tick asks for nothing.
        again = daemon.tick(cursor=before)
        assert [r.run_key for r in again.run_requests] == [first.run_requests[0].run_key]
        assert daemon.tick().run_requests == []
        assert len(daemon.runs) == 1

        # The polling sensor (the safety net) leaves the file to the listener.
        polled = build_landing_sensor(current())(
            build_sensor_context(
                instance=instance, resources={"landing": landing, "feed": FeedResource()}
            )
        )
        assert polled.run_requests == []

        # The requested run ingests the file.
        job = definitions_with(dict(resources)).resolve_job_def("ingest_landing_batch")
        request = first.run_requests[0]
        run = job.execute_in_process(
            instance=instance,
            run_config=request.run_config,
            tags=request.tags,
            raise_on_error=False,
        )
        assert run.success, step_error(run)
        house = resources["lakehouse"].lakehouse()
        assert house.table("ticks").scan().to_arrow().num_rows == 1

        # A changed file is a new version: queued and requested once more.
        changed = store.write("KRX/2024-01-02/a.xml", trades(("1", "09:00:00", "71000", 6)))
        wait_queued([changed.key], landing, QUEUED_WITHIN)
        deadline = time.monotonic() + QUEUED_WITHIN
        while len(daemon.runs) < 2 and time.monotonic() < deadline:
            daemon.tick()
        assert len(daemon.runs) == 2 and daemon.requested_keys() == [version.key] * 2


def test_a_burst_is_one_batch_and_lone_files_get_their_own_runs(pushed):
    landing = resolved_resources()["landing"]
    store = landing.store()
    with DagsterInstance.ephemeral() as instance:
        daemon = PushDaemon(instance, landing)
        daemon.start_at_queue_end()
        burst = [f"KRX/burst/b{n:02d}.xml" for n in range(8)]
        for key in burst:
            store.write(key, trades(("1", "09:00:00", "71000", 5)))
        wait_queued(burst, landing, QUEUED_WITHIN)
        result = daemon.tick()
        assert len(result.run_requests) == 1
        assert sorted(daemon.requested_keys()) == burst

        for n in range(2):
            key = f"KRX/lone/l{n}.xml"
            store.write(key, trades(("1", "09:00:00", "71000", 5)))
            wait_queued([key], landing, QUEUED_WITHIN)
            assert len(daemon.tick().run_requests) == 1
        assert len(daemon.runs) == 3
        assert daemon.requests == 3


def test_an_idle_evaluation_returns_as_soon_as_a_file_is_queued(pushed, monkeypatch):
    """Dagster evaluates sensors every 5 s at best; an evaluation that finds nothing waits for the
    queue, so a file landing meanwhile is requested in well under a second."""
    monkeypatch.setenv("TICKHOUSE_PUSH_WAIT_SECONDS", "4")
    landing = resolved_resources()["landing"]
    with DagsterInstance.ephemeral() as instance:
        daemon = PushDaemon(instance, landing)
        daemon.start_at_queue_end()
        returned: list[float] = []
        tick = threading.Thread(
            target=lambda: (daemon.tick(), returned.append(time.monotonic())), daemon=True
        )
        tick.start()
        time.sleep(1.0)
        landing.store().write("KRX/wait/w.xml", trades(("1", "09:00:00", "71000", 5)))
        uploaded = time.monotonic()
        tick.join(10)
        assert daemon.requested_keys() == ["KRX/wait/w.xml"]
        print(f"upload → run requested: {(returned[0] - uploaded) * 1000:.0f} ms")
        assert returned[0] - uploaded < 1.0


def test_the_polling_safety_net_takes_only_what_the_listener_missed(pushed, monkeypatch):
    """A file the listener never saw (here: a bucket it does not watch) is requested by the
    polling sensor, which registers it in the queue; the listener noticing that version later
    adds nothing, so the push sensor never requests it too."""
    prefix = pushed["TICKHOUSE_LANDING_URI"].removeprefix("s3://landing/")
    monkeypatch.setenv("TICKHOUSE_LANDING_URI", f"s3://warehouse/{prefix}")
    landing = resolved_resources()["landing"]
    store = landing.store()
    with DagsterInstance.ephemeral() as instance:
        daemon = PushDaemon(instance, landing)
        daemon.start_at_queue_end()
        try:
            version = store.write("KRX/missed.xml", trades(("1", "09:00:00", "71000", 5)))
            polled = build_landing_sensor(current())(
                build_sensor_context(
                    instance=instance, resources={"landing": landing, "feed": FeedResource()}
                )
            )
            [request] = polled.run_requests
            assert request.run_config["ops"]["ingest_landing_files"]["config"]["keys"] == [
                version.key
            ]
            # The listener's view of that version: the full object key in the bucket.
            full_key = LandingFile(
                store.prefix + version.key, version.size, version.modified_ns, version.etag
            )
            late = (store.bucket, full_key, 1)
            assert queue().record("late-listener", since_ns=1, filer_ts_ns=1, files=[late]) == 0
            assert daemon.tick().run_requests == []
        finally:
            store.delete("KRX/missed.xml")


def test_files_landing_during_a_push_run_wait_and_go_into_the_next_run(pushed, monkeypatch):
    landing = resolved_resources()["landing"]
    store = landing.store()
    with DagsterInstance.ephemeral() as instance:
        daemon = PushDaemon(instance, landing)
        daemon.start_at_queue_end()
        started_push_run(instance, "0123456789abcdef0123456789abcdef")
        keys = [
            store.write(
                f"KRX/2024-01-02/busy-{n}.xml", trades((str(n), "09:00:00", "71000", 1))
            ).key
            for n in range(3)
        ]
        wait_queued(keys, landing, QUEUED_WITHIN)
        held = daemon.tick()
        assert held.run_requests == []
        assert "push run 01234567 in progress" in held.skip_reason.skip_message
        # A run that has hung past the stall limit holds nothing back.
        monkeypatch.setenv("TICKHOUSE_PUSH_RUN_STALL_SECONDS", "0")
        stalled = daemon.tick()
        assert [r.tags["tickhouse/batch_files"] for r in stalled.run_requests] == ["3"], (
            stalled.skip_reason
        )
        assert sorted(daemon.requested_keys()) == sorted(keys)  # all three in one run


def test_files_waiting_on_a_push_run_are_requested_as_soon_as_it_ends(pushed, monkeypatch):
    """The evaluation that finds a push run in flight waits for it (within its wait) instead of
    leaving the files to the daemon's next loop, 5 s later."""
    monkeypatch.setenv("TICKHOUSE_PUSH_WAIT_SECONDS", "4")
    landing = resolved_resources()["landing"]
    store = landing.store()
    with DagsterInstance.ephemeral() as instance:
        daemon = PushDaemon(instance, landing)
        daemon.start_at_queue_end()
        running = started_push_run(instance, "fedcba9876543210fedcba9876543210")
        key = store.write("KRX/2024-01-02/after-run.xml", trades(("1", "09:00:00", "71000", 1))).key
        wait_queued([key], landing, QUEUED_WITHIN)
        ended: list[float] = []

        def end_run() -> None:
            time.sleep(1.0)
            instance.report_dagster_event(_run_success_event(running), running.run_id)
            ended.append(time.monotonic())

        threading.Thread(target=end_run, daemon=True).start()
        result = daemon.tick()
        returned = time.monotonic()
        assert [r.tags["tickhouse/batch_files"] for r in result.run_requests] == ["1"]
        assert daemon.requested_keys() == [key]
        print(f"run ended → next run requested: {(returned - ended[0]) * 1000:.0f} ms")
        assert returned - ended[0] < 1.0


def started_push_run(instance, run_id: str):
    """A push run the instance holds as started (what the sensor sees while one is running)."""
    from dagster import DagsterRun, DagsterRunStatus

    from tickhouse_dagster.defs.push import PUSH_TAG

    running = DagsterRun(
        job_name="ingest_landing_batch",
        run_id=run_id,
        status=DagsterRunStatus.STARTED,
        tags={PUSH_TAG: "true"},
    )
    instance.add_run(running)
    return running


def _run_success_event(run):
    from dagster import DagsterEvent, DagsterEventType

    return DagsterEvent(
        event_type_value=DagsterEventType.RUN_SUCCESS.value,
        job_name=run.job_name,
        message="the run ended",
    )


def listened(queue_url: str, since_ns: int) -> list[str]:
    """Run a listener of its own (own queue, stored position `since_ns`) on the stack's filer
    until it is connected; returns the keys it queued, full object keys."""
    settings = current()
    config = ListenerConfig(
        filer_grpc=settings.filer_grpc or "",
        bucket="landing",
        queue_url=queue_url,
        s3_endpoint=settings.s3_endpoint,
        region=settings.region,
        name="catch-up-test",
        start_ns=since_ns,
    )
    listener = Listener(config)
    listener.queue.record(config.name, since_ns=since_ns, filer_ts_ns=since_ns)
    worker = threading.Thread(target=listener.run, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not listener.health.connected:
            assert time.monotonic() < deadline, f"not connected: {listener.health.last_error}"
            time.sleep(0.05)
    finally:
        listener.stop()
        worker.join(30)
    queue = listener.queue
    return [q.file.key for q in queue.files(0, queue.last_seq(), "landing", "")]


def test_a_file_whose_event_the_filer_lost_is_queued_when_the_listener_connects(pushed, tmp_path):
    """A filer that crashed lost the newest stretch of its change log; the listener's position
    (moved on by the restarted filer's heartbeats) is past the upload, so the stream never
    replays it. The listing on connect finds it, and only what changed near the position."""
    store = resolved_resources()["landing"].store()
    version = store.write("KRX/lost/event.xml", trades(("1", "09:00:00", "71000", 5)))
    key = f"{store.prefix}{version.key}"
    after_upload = time.time_ns() + 1_000_000_000
    try:
        queue_url = f"sqlite:///{tmp_path / 'q.sqlite'}"
        assert key in listened(queue_url, since_ns=after_upload)
        # Connecting again adds nothing: the version is queued once.
        assert listened(queue_url, since_ns=after_upload).count(key) == 1
        # A file changed long before the position is not listed again (it was queued then).
        far_ahead = after_upload + 10 * 60 * 1_000_000_000
        assert key not in listened(f"sqlite:///{tmp_path / 'q2.sqlite'}", since_ns=far_ahead)
    finally:
        store.delete(version.key)
