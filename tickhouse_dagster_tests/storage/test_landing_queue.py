"""The landing listener's queue on SQLite (the local stack's), and the filer event decoding."""

from __future__ import annotations

from pathlib import Path

from tickhouse_dagster.storage import filer_events
from tickhouse_dagster.storage.landing import LandingFile
from tickhouse_dagster.storage.landing_queue import LandingQueue


def version(key: str, modified: int = 1) -> LandingFile:
    return LandingFile(key, 10, modified, "etag")


def test_versions_are_queued_once_and_the_position_moves_with_them(tmp_path: Path) -> None:
    queue = LandingQueue(f"sqlite:///{tmp_path / 'q.sqlite'}")
    rows = [("landing", version("p/a.xml"), 5), ("landing", version("p/b.xml"), 6)]
    assert queue.record("l", since_ns=6, filer_ts_ns=6, files=rows) == 2
    # A replay after a restart adds nothing; a changed file is a new version.
    assert queue.record("l", since_ns=6, filer_ts_ns=7, files=rows) == 0
    changed = [("landing", version("p/a.xml", 2), 8)]
    assert queue.record("l", since_ns=8, filer_ts_ns=8, files=changed) == 1
    state = queue.state("l")
    assert state is not None and (state.since_ns, state.filer_ts_ns) == (8, 8)
    # Reopening (a restarted listener or sensor process) sees the same.
    again = LandingQueue(queue.url)
    assert again.state("l").since_ns == 8 and again.last_seq() == 3


def test_claims_are_stable_and_scoped_to_a_prefix(tmp_path: Path) -> None:
    queue = LandingQueue(f"sqlite:///{tmp_path / 'q.sqlite'}")
    files = [("landing", version(f"{p}/f{n}.xml"), n) for n in range(3) for p in ("p", "q")]
    queue.record("l", since_ns=9, filer_ts_ns=9, files=files)
    assert queue.claim("s3://landing/p/", 0, 4) == (0, 4)
    queue.record("l", since_ns=10, filer_ts_ns=10, files=[("landing", version("p/late.xml"), 10)])
    # The same evaluation again: the same range, not one that grew.
    assert queue.claim("s3://landing/p/", 0, 4) == (0, 4)
    keys = [q.file.key for q in queue.files(0, 4, "landing", "p/")]
    assert keys == ["f0.xml", "f1.xml"]  # relative to the prefix; q/… is another consumer's
    assert queue.backlog(4, "landing", "p/")[0] == 2  # p/f2.xml and p/late.xml
    assert queue.claim("s3://landing/p/", 7, 4) == (7, 7)  # nothing after the end


def test_the_poll_registers_only_what_the_listener_has_not(tmp_path: Path) -> None:
    queue = LandingQueue(f"sqlite:///{tmp_path / 'q.sqlite'}")
    queue.record("l", since_ns=1, filer_ts_ns=1, files=[("landing", version("p/a.xml"), 1)])
    taken = queue.take_for_poll("landing", "p/", [version("a.xml"), version("b.xml")])
    assert taken == {version("b.xml").run_key}
    # The push sensor requests the listener's rows only.
    assert [q.file.key for q in queue.files(0, 10, "landing", "p/")] == ["a.xml"]


def test_filer_responses_decode_with_batched_events_and_heartbeats() -> None:
    response = filer_events.SubscribeMetadataResponse(directory="/buckets/landing/p", ts_ns=5)
    response.event_notification.new_entry.name = "a.xml"
    extra = response.events.add(directory="/buckets/landing/p", ts_ns=6)
    extra.event_notification.old_entry.name = "gone.xml"  # a deletion: no new entry
    moved = response.events.add(directory="/buckets/landing/tmp", ts_ns=7)
    moved.event_notification.new_entry.name = "b.xml"
    moved.event_notification.new_parent_path = "/buckets/landing/p"
    wire = filer_events.SubscribeMetadataResponse.FromString(response.SerializeToString())
    events = list(filer_events._events(wire))
    assert [(e.ts_ns, e.path) for e in events] == [
        (5, "/buckets/landing/p/a.xml"),
        (6, None),
        (7, "/buckets/landing/p/b.xml"),
    ]
    assert events[1].heartbeat


def test_pruning_forgets_only_old_versions_every_active_sensor_has_claimed(tmp_path: Path) -> None:
    import time

    from sqlalchemy import update

    from tickhouse_dagster.storage.landing_queue import claims, events

    queue = LandingQueue(f"sqlite:///{tmp_path / 'q.sqlite'}")
    files = [("landing", version(f"p/f{n}.xml"), n) for n in range(6)]
    queue.record("l", since_ns=6, filer_ts_ns=6, files=files)
    cutoff = time.time_ns()
    assert queue.prune(cutoff) == (0, 0)  # no sensor has claimed anything: keep it all
    assert queue.claim("s3://landing/p/", 0, 4) == (0, 4)  # a sensor took seq 1..4
    queue.record("l", since_ns=7, filer_ts_ns=7, files=[("landing", version("p/new.xml"), 7)])
    with queue.engine.begin() as c:  # seq 1..3 were noticed long ago, the rest just now
        c.execute(update(events).where(events.c.seq <= 3).values(noticed_ns=cutoff - 10))
        c.execute(update(events).where(events.c.seq > 3).values(noticed_ns=cutoff + 10))
    assert queue.prune(cutoff) == (3, 0)
    assert [q.seq for q in queue.files(0, 99, "landing", "p/")] == [4, 5, 6, 7]
    # A version pruned and seen again (a replay) is queued anew, for the ledger to judge.
    assert queue.record("l", since_ns=8, filer_ts_ns=8, files=files[:1]) == 1
    # Claims older than the cutoff go, except each sensor's latest (a retried evaluation
    # looks it up); a sensor with no claim since the cutoff holds no version back... and with
    # no active sensor at all, no version is pruned.
    assert queue.claim("s3://landing/p/", 4, 10) == (4, 8)
    with queue.engine.begin() as c:
        c.execute(update(claims).values(claimed_ns=cutoff - 10))
        c.execute(update(events).values(noticed_ns=cutoff - 10))
    assert queue.prune(cutoff) == (0, 1)
    assert queue.claim("s3://landing/p/", 4, 10) == (4, 8)  # the latest claim kept
    assert queue.last_seq() == 8
