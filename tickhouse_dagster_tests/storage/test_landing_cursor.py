"""The sensor's plan: new and changed versions once, bursts paged, the cursor kept small."""

from __future__ import annotations

from tickhouse_dagster.storage.landing import LandingFile
from tickhouse_dagster.storage.landing_cursor import LandingCursor, plan_ingestion

SECOND = 1_000_000_000


def plan(files, cursor, now, limit=100):
    return plan_ingestion(files, cursor, now_ns=now * SECOND, margin_ns=60 * SECOND, limit=limit)


def test_new_unchanged_and_changed_files():
    a, b = LandingFile("a.xml", 10, 100 * SECOND), LandingFile("b.xml", 10, 101 * SECOND)
    first = plan([a, b], LandingCursor(), now=110)
    assert [f.key for f in first.to_ingest] == ["a.xml", "b.xml"]
    again = plan([a, b], LandingCursor.from_json(first.cursor.to_json()), now=120)
    assert again.to_ingest == []
    changed = LandingFile("a.xml", 12, 125 * SECOND)
    third = plan([changed, b], again.cursor, now=130)
    assert third.to_ingest == [changed]
    # long after, the watermark has passed every version and the cursor forgets them
    quiet = plan([changed, b], third.cursor, now=1000)
    later = plan([changed, b], quiet.cursor, now=1010)
    assert later.to_ingest == [] and later.cursor.requested == set()


def test_burst_is_paged_and_nothing_is_skipped():
    files = [LandingFile(f"f{i:05d}.xml", 1, (100 + i % 7) * SECOND) for i in range(10_000)]
    cursor, seen, ticks = LandingCursor(), [], 0
    while True:
        step = plan(files, cursor, now=200 + ticks, limit=500)
        ticks += 1
        seen += [f.key for f in step.to_ingest]
        cursor = step.cursor
        if not step.to_ingest:
            break
    assert sorted(seen) == sorted(f.key for f in files) and len(seen) == len(set(seen))
    assert ticks == 21  # 20 pages of 500, then a quiet tick
    assert len(cursor.to_json()) < 1000  # the burst is forgotten once the watermark passes it


def test_file_that_appears_late_within_margin_is_still_seen():
    a = LandingFile("a.xml", 1, 100 * SECOND)
    first = plan([a], LandingCursor(), now=110)
    late = LandingFile("late.xml", 1, 105 * SECOND)  # written at 105, listed only now
    second = plan([a, late], first.cursor, now=120)
    assert second.to_ingest == [late]
