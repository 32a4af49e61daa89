"""The ingest engine on a real embedded lakehouse: identical copies of a trade count once and are
reported, differing copies are refused and quarantined naming the key and both files, and the
per-file lookups read the file's own data files, not its day's."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThanOrEqual

from tickhouse_dagster.batch import ingest_paths
from tickhouse_dagster.contract import TICKS_TABLE
from tickhouse_dagster.engine.catch_up import ingest_files
from tickhouse_dagster.engine.feed import Feed
from tickhouse_dagster.engine.landing_file import LandingAddress, Staging
from tickhouse_dagster.sample.generator import SampleSpec, generate
from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog
from tickhouse_dagster.storage.lakehouse import Lakehouse

DAY = date(2024, 1, 2)
HEAD = '<tickhouse venue="KRX" trade_date="2024-01-02">\n'
TRADE = '<trade id="{id}" symbol="005930" ts="2024-01-02T09:00:{s:02d}+09:00" price="{px}" qty="{q}"/>\n'


def document(*trades: tuple[str, int, str, int]) -> str:
    body = "".join(TRADE.format(id=i, s=s, px=px, q=q) for i, s, px, q in trades)
    return HEAD + body + "</tickhouse>"


@pytest.fixture
def house(tmp_path: Path) -> Lakehouse:
    settings = CatalogSettings(
        name="tickhouse",
        warehouse=str(tmp_path / "warehouse"),
        embedded_db=str(tmp_path / "catalog.db"),
    )
    lakehouse = Lakehouse(load_lakehouse_catalog(settings))
    lakehouse.ensure_tables()
    return lakehouse


def ingest(landing: Path, house: Lakehouse, *keys: str, workers: int = 1):
    return ingest_files(
        list(keys),
        landing=LandingAddress(str(landing)),
        lakehouse=house.address(),
        feed=Feed.load(),
        staging=Staging(str(landing.parent / "staging"), uuid.uuid4().hex),
        workers=workers,
    )


def test_identical_copies_count_once_and_differing_copies_are_refused(tmp_path, house):
    landing = tmp_path / "landing"
    (landing / "KRX").mkdir(parents=True)
    (landing / "KRX/a.xml").write_text(
        document(("1", 0, "71000", 5), ("2", 1, "71100", 3), ("3", 2, "71200", 1))
    )
    # b repeats trade 1 exactly (a second delivery) and adds trade 4.
    (landing / "KRX/b.xml").write_text(document(("1", 0, "71000", 5), ("4", 3, "71300", 2)))
    # c says trade 2 traded 30 lots, not 3: which copy is right cannot be told.
    (landing / "KRX/c.xml").write_text(document(("2", 1, "71100", 30), ("5", 4, "71400", 1)))

    a, b, c = ingest(landing, house, "KRX/a.xml", "KRX/b.xml", "KRX/c.xml")

    assert a.ok and b.ok and not c.ok
    assert b.copies is not None and b.copies.duplicates.count == 1
    assert b.copies.duplicates.examples == [
        "KRX 005930 2024-01-02 trade 1: KRX/b.xml record 1 and KRX/a.xml record 1"
    ]  # a and b committed together: the copy is named by its record
    assert c.parsed.refusal is not None and c.parsed.refusal.stage == "conflicts"
    reason = c.reason()
    assert "KRX 005930 2024-01-02 trade 2" in reason
    assert "KRX/c.xml record 1 has 30 @ 71100" in reason
    assert "KRX/a.xml record 2 has 3 @ 71100" in reason
    # Nothing of c is in the table; it waits in the quarantine with its reason.
    ticks = house.ticks_for_days([DAY])
    assert sorted(set(ticks["source_file"].to_pylist())) == ["KRX/a.xml", "KRX/b.xml"]
    assert not (landing / "KRX/c.xml").exists()
    note = json.loads((landing / "_quarantine/KRX/c.xml.reason.json").read_text())
    assert note["stage"] == "conflicts" and "trade 2" in note["reason"]


def test_a_copy_inside_one_file_is_caught_too(tmp_path, house):
    landing = tmp_path / "landing"
    (landing / "KRX").mkdir(parents=True)
    (landing / "KRX/a.xml").write_text(document(("1", 0, "71000", 5), ("1", 0, "71000", 6)))
    [outcome] = ingest(landing, house, "KRX/a.xml")
    assert not outcome.ok
    assert "KRX/a.xml record 1 has 5 @ 71000" in outcome.reason()
    assert "KRX/a.xml record 2 has 6 @ 71000" in outcome.reason()


def test_bulk_ingest_reports_refused_files_and_keeps_the_rest(tmp_path, house):
    landing = tmp_path / "landing"
    (landing / "KRX").mkdir(parents=True)
    (landing / "KRX/a.xml").write_text(document(("1", 0, "71000", 5)))
    (landing / "KRX/b.xml").write_text(document(("2", 1, "-1", 5)))  # a negative price
    paths = [landing / "KRX/a.xml", landing / "KRX/b.xml"]
    result = ingest_paths(paths, landing, house, tmp_path / "staging", workers=2)
    assert result.ticks == 1
    assert [o.key for o in result.refused] == ["KRX/b.xml"]
    assert "field price" in result.refused[0].reason()
    assert house.bars_for_day("1d", DAY)["volume"].to_pylist() == [5]


def test_the_copy_lookup_reads_the_files_whose_trade_ids_overlap(tmp_path, house):
    """Cost grows with the file, not the day: on a day of 20 collection windows, the lookup for
    the last file plans only the data files whose trade_id bounds overlap its own."""
    landing = tmp_path / "landing"
    paths = generate(SampleSpec(ticks_per_day=20_000, symbols=1, files_per_day=20), landing)
    result = ingest_paths(paths, landing, house, tmp_path / "staging", workers=2)
    assert result.ticks == 20_000 and not result.refused
    table = house.table(TICKS_TABLE)
    last = paths[-1].relative_to(landing).as_posix()
    own = table.scan(row_filter=EqualTo("source_file", last)).to_arrow()
    low, high = min(own["trade_id"].to_pylist()), max(own["trade_id"].to_pylist())
    lookup = And(
        EqualTo("trade_date", DAY.isoformat()),
        And(GreaterThanOrEqual("trade_id", low), LessThanOrEqual("trade_id", high)),
    )
    planned = {t.file.file_path for t in table.scan(row_filter=lookup).plan_files()}
    everything = {t.file.file_path for t in table.scan().plan_files()}
    assert len(everything) >= 20
    assert len(planned) <= 2, f"{len(planned)} of {len(everything)} data files read"
    assert house.trades_near([(DAY, low, high)], excluding=[last]).num_rows == 0
    snapshot = table.current_snapshot().snapshot_id
    assert house.file_totals([last], [DAY], snapshot)[last][0] == own.num_rows


FIXML_TRADE = (
    '<TrdCaptRpt TrdID="{id}" TransTyp="{tt}" LastPx="71000" LastQty="5" TrdDt="2024-01-02" '
    'TxnTm="2024-01-02T00:00:0{id}Z"><Instrmt Sym="005930" Exch="KRX"/><RptSide Side="1"/>'
    "</TrdCaptRpt>"
)


def fixml(*trades: tuple[int, str]) -> str:
    body = "".join(FIXML_TRADE.format(id=i, tt=tt) for i, tt in trades)
    return f'<FIXML xmlns="http://www.fixprotocol.org/FIXML-4-4"><Batch>{body}</Batch></FIXML>'


def test_fixml_new_trades_are_encoded_by_the_workers_and_corrections_are_not(tmp_path, house):
    landing = tmp_path / "landing"
    (landing / "KRX").mkdir(parents=True)
    (landing / "KRX/new.fixml").write_text(fixml((1, "0"), (2, "0")))
    (landing / "KRX/fix.fixml").write_text(fixml((3, "0"), (1, "1")))  # cancels trade 1

    new, fix = ingest(landing, house, "KRX/new.fixml", "KRX/fix.fixml")

    assert new.ok and fix.ok
    # TransTyp 0 marks a new trade: the file is written in the worker and committed in a group.
    assert new.parsed.data_files, "encoded in the worker (not re-read from staging)"
    assert fix.parsed.data_files is None  # a correction commits from staging
    assert fix.committed is not None and fix.committed.commit.corrections == 1
    ids = sorted(house.table(TICKS_TABLE).scan().to_arrow()["trade_id"].to_pylist())
    assert ids == ["2", "3"]
