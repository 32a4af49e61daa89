"""What a day's bars were built from, kept in the bar tables' snapshots: where the next build
starts, whether a build is still worth committing, which touched days are behind."""

from __future__ import annotations

from datetime import date

from tickhouse_dagster.core.contract import BAR_INTERVALS, bar_table_name
from tickhouse_dagster.engine.day_bars import build_day_bars, store_day_bars
from tickhouse_dagster.market.reference_data import venues_fingerprint
from tickhouse_dagster.storage.bar_builds import behind, build_of_ticks, built_from, last_build
from tickhouse_dagster_tests.defs.test_bars_span import assert_bars_equal_a_day_rebuild
from tickhouse_dagster_tests.market.test_bars import tick
from tickhouse_dagster_tests.storage.test_lakehouse import lakehouse, parsed

DAY = date(2024, 1, 2)


def commit_file(house, key: str, *rows) -> int:
    table = parsed([tick(*row, source=key) for row in rows])
    return house.replace_file_ticks(key, table.to_batches).snapshot_id


def bar_tables(house):
    return {i: house.table(bar_table_name(i)) for i in BAR_INTERVALS}


def test_a_build_from_older_ticks_never_replaces_bars_built_from_newer(tmp_path, venues):
    house = lakehouse(tmp_path)
    commit_file(house, "a.xml", ("09:00:00", "1", "100", 1))
    older = build_day_bars(house, venues, DAY)  # read the ticks of a.xml only
    commit_file(house, "b.xml", ("09:01:00", "2", "101", 2))
    newer = build_day_bars(house, venues, DAY)
    assert newer.build.ticks_sequence > older.build.ticks_sequence

    # The newer build commits first; the older one, finishing later, must not overwrite it.
    store_day_bars(house, DAY, newer)
    late = store_day_bars(house, DAY, older)
    for interval in BAR_INTERVALS:
        assert late[interval].commit.superseded_by == newer.build.ticks_snapshot_id
        assert late[interval].stored.num_rows == newer.bars[interval].num_rows
        assert house.bars_for_day(interval, DAY).equals(late[interval].stored)
    assert sum(house.bars_for_day("1d", DAY)["trade_count"].to_pylist()) == 2

    # In the other order both commit, the newer last: the same end state.
    commit_file(house, "c.xml", ("09:02:00", "3", "102", 3))
    first = build_day_bars(house, venues, DAY)
    commit_file(house, "d.xml", ("09:03:00", "4", "103", 4))
    second = build_day_bars(house, venues, DAY)
    assert store_day_bars(house, DAY, first)["1m"].commit.superseded_by is None
    assert store_day_bars(house, DAY, second)["1m"].commit.superseded_by is None
    assert_bars_equal_a_day_rebuild(house)


def test_the_next_build_starts_from_what_all_four_tables_record(tmp_path, venues):
    house = lakehouse(tmp_path)
    reference = venues_fingerprint(venues)
    commit_file(house, "a.xml", ("09:00:00", "1", "100", 1))
    assert built_from(bar_tables(house), DAY, reference) is None  # never built
    first = build_day_bars(house, venues, DAY)
    assert first.rebuilt == "the whole day"
    store_day_bars(house, DAY, first)
    assert built_from(bar_tables(house), DAY, reference) == first.build.ticks_snapshot_id
    assert built_from(bar_tables(house), DAY, "other reference data") is None

    commit_file(house, "b.xml", ("09:05:00", "2", "101", 2))
    assert build_day_bars(house, venues, DAY).rebuilt.startswith("the minutes of")
    # Only the 1-minute bars rebuilt from newer ticks: the four no longer agree, so the next
    # build cannot start from any of them.
    only_1m = build_day_bars(house, venues, DAY, ["1m"])
    house.replace_day_bars("1m", DAY, only_1m.bars["1m"], only_1m.build)
    assert built_from(bar_tables(house), DAY, reference) is None
    assert build_day_bars(house, venues, DAY).rebuilt == "the whole day"


def test_touched_days_are_behind_until_bars_are_built_from_that_commit(tmp_path, venues):
    house = lakehouse(tmp_path)
    other = date(2024, 1, 3)
    made = commit_file(house, "a.xml", ("09:00:00", "1", "100", 1))
    touched = {DAY: made}
    assert behind(house.table("ticks"), bar_tables(house), touched) == {DAY}
    store_day_bars(house, DAY, build_day_bars(house, venues, DAY))
    assert behind(house.table("ticks"), bar_tables(house), touched) == set()
    assert last_build(house.table("ohlcv_1h").metadata, DAY) == build_of_ticks(
        house.table("ticks"), DAY, venues_fingerprint(venues)
    )
    # Another day's build says nothing about this one; an unknown snapshot counts as behind.
    assert behind(house.table("ticks"), bar_tables(house), {other: made}) == {other}
    assert behind(house.table("ticks"), bar_tables(house), {DAY: 12345}) == {DAY}
    assert behind(house.table("ticks"), bar_tables(house), {DAY: None}) == {DAY}
