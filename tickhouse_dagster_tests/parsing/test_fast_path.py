"""The compiled fast path gives exactly the lxml reader's rows, and declines whenever it cannot
vouch for a file, which lxml then reads (or rejects with the precise error)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pyarrow as pa
import pytest

from tickhouse_dagster.parsing import TickFileError, read_tick_file
from tickhouse_dagster.parsing.fast_path import FastPathDeclined, read_fast, supports
from tickhouse_dagster.sample import SampleSpec, generate
from tickhouse_dagster.storage.staging import stage_tick_file


def comparable(table: pa.Table) -> pa.Table:
    return table.drop(["line"]).sort_by("record")


def fast(data: bytes, profiles, venues, batch_rows: int = 65_536) -> pa.Table:
    batches = read_fast(
        lambda: io.BytesIO(data),
        source_file="f.xml",
        profile=profiles["tickhouse"],
        venues=venues,
        batch_rows=batch_rows,
    )
    return pa.Table.from_batches(list(batches))


def lxml(data: bytes, profiles, venues) -> pa.Table:
    return read_tick_file(
        io.BytesIO(data), source_file="f.xml", profile=profiles["tickhouse"], venues=venues
    )


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("batch_rows", [1_000, 65_536])
def test_same_rows_as_lxml(tmp_path: Path, profiles, venues, packed: bool, batch_rows: int):
    files = generate(
        SampleSpec(symbols=4, ticks_per_day=6000, files_per_day=2, gzip=packed), tmp_path
    )
    for file in files:
        data = file.read_bytes()
        fast_rows = fast(data, profiles, venues, batch_rows)
        assert fast_rows["line"].null_count == fast_rows.num_rows
        assert comparable(fast_rows).equals(comparable(lxml(data, profiles, venues)))


def test_which_profiles_it_serves(profiles):
    assert supports(profiles["tickhouse"])
    assert supports(profiles["fixml"])  # child elements, <Batch> or not: the layout is sniffed


HEAD = '<tickhouse venue="KRX" trade_date="2024-01-02">\n'
TRADE = '<trade id="{i}" symbol="005930" ts="2024-01-02T09:00:0{i}+09:00" price="71000" qty="1"/>\n'


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ("<!DOCTYPE tickhouse>" + HEAD + TRADE.format(i=1) + "</tickhouse>", "DOCTYPE"),
        (
            HEAD + TRADE.format(i=1) + "<group>" + TRADE.format(i=2) + "</group></tickhouse>",
            "1 rows read but 2",
        ),
        (HEAD + TRADE.format(i=1).replace("<trade", "<x:trade") + "</tickhouse>", "prefix"),
        (
            HEAD + TRADE.format(i=1).replace('price="71000"', 'price="7l000"') + "</tickhouse>",
            "7l000",
        ),
        (HEAD + TRADE.format(i=1).replace('symbol="005930" ', "") + "</tickhouse>", "required"),
        (HEAD + TRADE.format(i=1) + "<trade", ""),
    ],
    ids=["doctype", "nested-record", "prefixed", "bad-price", "missing-symbol", "truncated"],
)
def test_declines_when_in_doubt(document: str, why: str, profiles, venues):
    with pytest.raises(FastPathDeclined, match=why):
        fast(document.encode(), profiles, venues)


def test_declined_file_is_read_by_lxml_with_the_same_rows(tmp_path: Path, profiles, venues):
    # A record nested one level deeper: outside the fast path's layout, still a valid tick.
    document = (
        HEAD + TRADE.format(i=1) + "<group>" + TRADE.format(i=2) + "</group></tickhouse>"
    ).encode()
    staged = stage_tick_file(
        lambda: io.BytesIO(document),
        source_file="f.xml",
        profile=profiles["tickhouse"],
        venues=venues,
        uri=str(tmp_path / "s.arrow"),
    )
    assert staged.parser.startswith("lxml (fast path declined: 1 rows read but 2 record tags")
    assert staged.rows == 2
    assert comparable(staged.read()).equals(comparable(lxml(document, profiles, venues)))


def test_bad_value_still_gets_the_precise_error(tmp_path: Path, profiles, venues):
    document = (
        HEAD + TRADE.format(i=1) + TRADE.format(i=2).replace('qty="1"', 'qty="x"') + "</tickhouse>"
    ).encode()
    with pytest.raises(
        TickFileError, match=r"f.xml, record 2, line 3, field quantity: 'x' is not a whole number"
    ):
        stage_tick_file(
            lambda: io.BytesIO(document),
            source_file="f.xml",
            profile=profiles["tickhouse"],
            venues=venues,
            uri=str(tmp_path / "s.arrow"),
        )
    assert not (tmp_path / "s.arrow").exists()


def test_gzip_through_staging(tmp_path: Path, profiles, venues):
    document = gzip.compress((HEAD + TRADE.format(i=1) + "</tickhouse>").encode())
    staged = stage_tick_file(
        lambda: io.BytesIO(document),
        source_file="f.xml",
        profile=profiles["tickhouse"],
        venues=venues,
        uri=str(tmp_path / "s.arrow"),
    )
    assert (staged.parser, staged.rows) == ("xml2arrow", 1)
