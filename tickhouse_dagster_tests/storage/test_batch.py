"""The bulk path (workers write the data files, one commit per file) holds exactly what the
per-file path holds, replaces a file's rows on a re-run, and defers to the per-file path once
corrections are on record."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest

from tickhouse_dagster.core.contract import TICKS_ARROW
from tickhouse_dagster.engine.batch import ingest_paths, parse_to_staging
from tickhouse_dagster.market.venues import load_venues
from tickhouse_dagster.parsing import load_profiles, parse_tick_file
from tickhouse_dagster.parsing.fast_path import FastPathDeclined
from tickhouse_dagster.sample import SampleSpec, generate
from tickhouse_dagster.storage import ticks_writes
from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog
from tickhouse_dagster.storage.lakehouse import Lakehouse

DAY = date(2024, 1, 2)
COLUMNS = [name for name in TICKS_ARROW.names if name != "ingested_at"]  # differs per path


def lakehouse(root: Path) -> Lakehouse:
    settings = CatalogSettings(
        name="tickhouse", warehouse=str(root / "warehouse"), embedded_db=str(root / "catalog.db")
    )
    house = Lakehouse(load_lakehouse_catalog(settings))
    house.ensure_tables()
    return house


def rows(house: Lakehouse) -> list[tuple]:
    ticks = house.ticks_for_days([DAY], columns=COLUMNS)
    return sorted(tuple(row.values()) for row in ticks.to_pylist())


def test_bulk_path_equals_the_per_file_path_and_replaces_on_rerun(tmp_path: Path):
    landing = tmp_path / "landing"
    paths = generate(SampleSpec(ticks_per_day=3000, symbols=3, files_per_day=4), landing)
    bulk, per_file = lakehouse(tmp_path / "bulk"), lakehouse(tmp_path / "per-file")

    result = ingest_paths(paths, landing, bulk, tmp_path / "staging", workers=2)
    for path in paths:
        key = path.relative_to(landing).as_posix()
        staged = parse_to_staging(str(path), key, str(tmp_path / "staging-2"))
        per_file.replace_file_ticks(key, staged.batches)

    assert result.ticks == 3000 and len(rows(bulk)) == 3000
    assert rows(bulk) == rows(per_file)
    assert bulk.bars_for_day("1d", DAY).num_rows == 3  # one daily bar per symbol
    # One commit per file: its rows replaced, never added twice.
    ingest_paths(paths, landing, bulk, tmp_path / "staging", workers=2)
    assert rows(bulk) == rows(per_file)


def test_bulk_path_defers_to_corrections(tmp_path: Path):
    landing = tmp_path / "landing"
    landing.joinpath("KRX").mkdir(parents=True)
    report = (
        '<TrdCaptRpt TrdID="{id}"{typ} LastPx="100" LastQty="1" TrdDt="2024-01-02" '
        'TxnTm="2024-01-02T00:00:0{id}Z"><Instrmt Sym="A" Exch="KRX"/></TrdCaptRpt>'
    )
    first = landing / "KRX" / "a.fixml"
    first.write_text(
        "<FIXML>" + report.format(id=1, typ="") + report.format(id=2, typ="") + "</FIXML>"
    )
    cancel = landing / "KRX" / "b.fixml"
    cancel.write_text("<FIXML>" + report.format(id=2, typ=' TransTyp="1"') + "</FIXML>")
    house = lakehouse(tmp_path / "house")

    ingest_paths([cancel], landing, house, tmp_path / "staging", workers=1)
    # Corrections are on record now: the original file takes the per-file path and is filtered.
    ingest_paths([first], landing, house, tmp_path / "staging", workers=1)
    assert [r[4] for r in rows(house)] == ["1"]


HEAD = '<tickhouse venue="KRX" trade_date="2024-01-02">\n'
TRADE = '<trade id="{i}" symbol="005930" ts="2024-01-02T09:00:0{i}+09:00" price="71000" qty="1"/>\n'


def test_a_file_the_fast_path_declines_late_is_written_from_lxml_rows(tmp_path: Path):
    landing = tmp_path / "landing"
    landing.joinpath("KRX").mkdir(parents=True)
    # A record nested one level deeper: the fast path reads one row, then declines.
    nested = landing / "KRX" / "nested.xml"
    nested.write_text(HEAD + TRADE.format(i=1) + "<g>" + TRADE.format(i=2) + "</g></tickhouse>")
    house = lakehouse(tmp_path / "house")

    result = ingest_paths([nested], landing, house, tmp_path / "staging", workers=1)
    assert result.ticks == 2
    assert [r[4] for r in rows(house)] == ["1", "2"]


def test_data_files_written_before_an_error_are_deleted(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(ticks_writes, "WRITE_CHUNK_ROWS", 1)  # a data file per batch
    house = lakehouse(tmp_path / "house")
    document = HEAD + TRADE.format(i=1) + TRADE.format(i=2) + "</tickhouse>"
    parsed = parse_tick_file(
        io.BytesIO(document.encode()),
        source_file="KRX/a.xml",
        profile=load_profiles()["tickhouse"],
        venues=load_venues(),
        batch_rows=1,
    )

    def then_fail():
        yield next(parsed)
        raise FastPathDeclined("declined after a data file was written")

    warehouse = tmp_path / "house" / "warehouse"
    with pytest.raises(FastPathDeclined):
        house.write_file_ticks("KRX/a.xml", then_fail())
    assert not list(warehouse.rglob("*.parquet"))
    written = house.write_file_ticks(
        "KRX/a.xml",
        parse_tick_file(
            io.BytesIO(document.encode()),
            source_file="KRX/a.xml",
            profile=load_profiles()["tickhouse"],
            venues=load_venues(),
            batch_rows=1,
        ),
    )
    assert written is not None and len(written) == 2
    assert len(list(warehouse.rglob("*.parquet"))) == 2
