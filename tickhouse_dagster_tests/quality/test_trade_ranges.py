"""Where copies of a trade can be, from trade_id ranges alone (pure)."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from tickhouse_dagster.quality.trade_ranges import (
    RANGES_ARROW,
    copy_windows,
    duplicate_windows,
    file_id_ranges,
)

DAY = date(2024, 1, 2)


def parsed(*rows: tuple[str, str, str | None]) -> pa.Table:
    """(symbol, trade_id, trans_type) rows of one venue and day."""
    return pa.table(
        {
            "venue": ["KRX"] * len(rows),
            "symbol": [r[0] for r in rows],
            "trade_date": pa.array([DAY] * len(rows), pa.date32()),
            "trade_id": [r[1] for r in rows],
            "trans_type": pa.array([r[2] for r in rows], pa.string()),
        }
    )


def ranges(*rows: tuple[str, str, str], repeats: int = 0) -> pa.Table:
    return pa.table(
        {
            "venue": ["KRX"] * len(rows),
            "symbol": [r[0] for r in rows],
            "trade_date": pa.array([DAY] * len(rows), pa.date32()),
            "low_id": [r[1] for r in rows],
            "high_id": [r[2] for r in rows],
            "rows": pa.array([1] * len(rows), pa.int64()),
            "repeats": pa.array([repeats] * len(rows), pa.int64()),
        }
    ).cast(RANGES_ARROW)


def committed(name: str, table: pa.Table) -> pa.Table:
    return table.append_column("source_file", pa.array([name] * table.num_rows))


NONE = RANGES_ARROW.empty_table()


def test_a_file_has_one_range_per_symbol_and_its_repeats_leave_corrections_out():
    found, repeats = file_id_ranges(
        parsed(("A", "003", None), ("A", "001", "N"), ("B", "002", None), ("A", "003", None),
               ("B", "001", "C"))  # the cancel names B 001: not a trade of this file
    )  # fmt: skip
    assert found.to_pylist() == [
        {"venue": "KRX", "symbol": "A", "trade_date": DAY, "low_id": "001", "high_id": "003",
         "rows": 3, "repeats": 1},
        {"venue": "KRX", "symbol": "B", "trade_date": DAY, "low_id": "002", "high_id": "002",
         "rows": 1, "repeats": 0},
    ]  # fmt: skip
    assert [(r["symbol"], r["low_id"], r["rows"]) for r in repeats.to_pylist()] == [("A", "003", 2)]


def test_successive_windows_of_one_symbol_do_not_meet_and_overlaps_give_the_shared_part():
    known = committed("a.xml", ranges(("A", "001", "100"), ("B", "001", "050")))
    # Next window: A continues at 101; B's ids 040-060 overlap a.xml's 001-050 at 040-050.
    own, theirs = copy_windows(
        [("b.xml", ranges(("A", "101", "200"), ("B", "040", "060")), NONE)], known
    )
    assert [
        (w["source_file"], w["symbol"], w["low_id"], w["high_id"]) for w in own.to_pylist()
    ] == [("b.xml", "B", "040", "050")]
    assert [(w["source_file"], w["low_id"], w["high_id"]) for w in theirs.to_pylist()] == [
        ("a.xml", "040", "050")
    ]
    # Same ids under another symbol never meet.
    own, theirs = copy_windows([("c.xml", ranges(("C", "001", "100")), NONE)], known)
    assert own.num_rows == theirs.num_rows == 0


def test_a_group_compares_each_file_with_the_files_before_it_and_its_own_repeats():
    first = ranges(("A", "001", "010"))
    second = ranges(("A", "005", "020"))
    repeat = ranges(("A", "015", "015"))
    own, theirs = copy_windows(
        [("a.xml", first, NONE), ("b.xml", second, repeat)], committed("x", NONE)
    )
    assert theirs.num_rows == 0
    windows = sorted((w["source_file"], w["low_id"], w["high_id"]) for w in own.to_pylist())
    # b's repeat of 015 and the 005-010 shared with a (both files' rows in that window).
    assert windows == [("a.xml", "005", "010"), ("b.xml", "005", "010"), ("b.xml", "015", "015")]


def test_a_days_duplicate_windows_are_where_ranges_meet_and_where_a_file_repeats_itself():
    day = pa.concat_tables(
        [
            committed("a", ranges(("A", "001", "100"), ("B", "001", "050"))),
            committed("b", ranges(("A", "101", "200"), ("B", "040", "060"))),
            committed("c", ranges(("A", "150", "160"))),  # inside b's A range
            committed("d", ranges(("C", "001", "009"), repeats=1)),  # repeats a key itself
        ]
    )
    windows = [(w["symbol"], w["low_id"], w["high_id"]) for w in duplicate_windows(day).to_pylist()]
    assert windows == [("A", "150", "160"), ("B", "040", "050"), ("C", "001", "009")]
    assert duplicate_windows(committed("a", ranges(("A", "001", "100")))).num_rows == 0
