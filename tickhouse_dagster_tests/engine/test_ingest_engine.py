"""The ingest engine on a real embedded lakehouse: identical copies of a trade count once and are
reported, differing copies are refused and quarantined naming the key and both files, and the
per-file lookups read the file's own data files, not its day's."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date
from pathlib import Path

import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue

from tickhouse_dagster.core.contract import TICKS_TABLE, TRADE_ID_RANGES_TABLE
from tickhouse_dagster.engine.batch import ingest_paths
from tickhouse_dagster.engine.catch_up import POOL_MIN_BYTES, ingest_files, worth_a_pool
from tickhouse_dagster.engine.feed import Feed
from tickhouse_dagster.engine.landing_file import LandingAddress, Staging
from tickhouse_dagster.market.bars import build_all_bars
from tickhouse_dagster.quality.bar_rules import distinct_trade_totals
from tickhouse_dagster.quality.trade_ranges import copy_windows
from tickhouse_dagster.sample import SampleSpec, generate
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.landing import LocalLanding
from tickhouse_dagster.storage.trade_index import TradeIndex

DAY = date(2024, 1, 2)
HEAD = '<tickhouse venue="KRX" trade_date="2024-01-02">\n'
TRADE = '<trade id="{id}" symbol="005930" ts="2024-01-02T09:00:{s:02d}+09:00" price="{px}" qty="{q}"/>\n'


def document(*trades: tuple[str, int, str, int]) -> str:
    body = "".join(TRADE.format(id=i, s=s, px=px, q=q) for i, s, px, q in trades)
    return HEAD + body + "</tickhouse>"


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


def test_the_copy_check_reads_only_where_trade_id_ranges_meet(tmp_path, house):
    """Cost grows with the file, not the day: on a day of 20 collection windows of 5 symbols
    (trade ids restart for every symbol, as exchanges number them), no range of the last file
    meets another file's, so its copy check reads no rows; a second delivery of an earlier
    file meets exactly that file and its copies are found."""
    landing = tmp_path / "landing"
    paths = generate(SampleSpec(ticks_per_day=20_000, symbols=5, files_per_day=20), landing)
    result = ingest_paths(paths, landing, house, tmp_path / "staging", workers=2)
    assert result.ticks == 20_000 and not result.refused
    keys = [p.relative_to(landing).as_posix() for p in paths]

    index = TradeIndex(house)
    every = index.committed_ranges([DAY], excluding=[])
    assert set(every["source_file"].to_pylist()) == set(keys)
    assert pc.sum(every["rows"]).as_py() == house.day_row_counts([DAY])[DAY] == 20_000
    last = every.filter(pc.equal(every["source_file"], keys[-1]))
    others = index.committed_ranges([DAY], excluding=[keys[-1]])
    no_repeats = last.slice(0, 0).drop_columns(["source_file"])
    own, theirs = copy_windows([(keys[-1], last.drop_columns(["source_file"]), no_repeats)], others)
    assert own.num_rows == theirs.num_rows == 0, "nothing to read for the last file"
    assert house.trades_in(theirs).num_rows == 0

    again = landing / "KRX" / "2024-01-02" / "redelivered.xml"
    again.write_bytes(paths[3].read_bytes())
    [outcome] = ingest(landing, house, again.relative_to(landing).as_posix())
    assert outcome.ok and outcome.copies is not None
    assert outcome.copies.duplicates.count == outcome.rows > 0
    assert {
        e.split(" and ")[1].split(" record")[0] for e in outcome.copies.duplicates.examples
    } == {keys[3]}


def test_the_trade_index_is_rebuilt_when_it_disagrees_with_the_ticks(tmp_path, house):
    """Ticks the index does not know (written before it existed, or by another engine) make it
    disagree with the table's row count: the date is rebuilt from the ticks, and copies of those
    ticks are still found."""
    landing = tmp_path / "landing"
    (landing / "KRX").mkdir(parents=True)
    (landing / "KRX/a.xml").write_text(document(("1", 0, "71000", 5), ("2", 1, "71100", 3)))
    (landing / "KRX/b.xml").write_text(document(("2", 1, "71100", 30)))
    [a] = ingest(landing, house, "KRX/a.xml")
    assert a.ok
    house.replace_planned(TRADE_ID_RANGES_TABLE, lambda: (AlwaysTrue(), []))  # forget a
    assert TradeIndex(house)._stored([DAY]).num_rows == 0

    [b] = ingest(landing, house, "KRX/b.xml")

    assert not b.ok and "KRX/a.xml has 3 @ 71100" in b.reason()
    assert set(TradeIndex(house)._stored([DAY])["source_file"].to_pylist()) == {"KRX/a.xml"}


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


def _reports(text: str) -> list[str]:
    return re.findall(r"<TrdCaptRpt .*?</TrdCaptRpt>", text, flags=re.S)


def _fixml_file(reports: list[str]) -> str:
    body = "\n".join(reports)
    return (
        f'<FIXML xmlns="http://www.fixprotocol.org/FIXML-4-4" v="4.4"><Batch>{body}</Batch></FIXML>'
    )


def test_bars_from_the_trade_index_equal_a_full_rebuild_on_a_day_of_copies_and_corrections(
    tmp_path, house
):
    """A day in 12 files plus a second delivery of one, a file repeating part of another and
    one of its own records, and a file of corrections (a cancel, a replace): the stored bars
    (built with the trade index's duplicate windows) equal bars rebuilt from the ticks by
    hashing every key, and so do the reconciliation's distinct-trade totals."""
    landing = tmp_path / "landing"
    paths = generate(
        SampleSpec(ticks_per_day=6_000, symbols=4, files_per_day=12, profile="fixml"), landing
    )
    folder = paths[0].parent
    (folder / "redelivered.fixml.xml").write_bytes(paths[3].read_bytes())
    fifth = _reports(paths[5].read_text())
    (folder / "overlap.fixml.xml").write_text(_fixml_file([*fifth[:40], fifth[7]]))
    second = _reports(paths[2].read_text())
    cancel = second[10].replace('TransTyp="0"', 'TransTyp="1"')
    replace = re.sub(
        r'LastQty="\d+"', 'LastQty="999"', second[20].replace('TransTyp="0"', 'TransTyp="2"')
    )
    (folder / "zz-corrections.fixml.xml").write_text(_fixml_file([cancel, replace]))
    everything = sorted(folder.iterdir())

    result = ingest_paths(everything, landing, house, tmp_path / "staging", workers=2)

    assert not result.refused and result.files == 15
    venues = Feed.load().venues
    ticks = house.ticks_for_days([DAY])
    windows = TradeIndex(house).duplicate_windows(DAY)
    assert windows.num_rows > 0, "the copies are inside the windows"
    rebuilt = build_all_bars(ticks, venues)  # every key hashed: the full rebuild
    for interval in ("1m", "5m", "1h", "1d"):
        stored = house.bars_for_day(interval, DAY)
        assert stored.sort_by([("symbol", "ascending"), ("bar_start", "ascending")]).equals(
            rebuilt[interval].sort_by([("symbol", "ascending"), ("bar_start", "ascending")])
        ), interval
    assert distinct_trade_totals(ticks, windows).equals(distinct_trade_totals(ticks))
    daily = rebuilt["1d"]
    # 6,000 trades: the copies count once, the cancel removes one, the replace changes one.
    assert pc.sum(daily["trade_count"]).as_py() == 6_000 - 1


class CountingStore:
    """The real local landing store, counting how often each file is opened."""

    def __init__(self, store) -> None:
        self._store, self.opened = store, []

    def open(self, key: str):
        self.opened.append(key)
        return self._store.open(key)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def test_a_landing_file_is_read_once_to_fingerprint_choose_its_profile_and_parse(tmp_path):
    import hashlib

    from tickhouse_dagster.engine.landing_file import parse_landing_file
    from tickhouse_dagster.storage.landing import landing_store

    landing = tmp_path / "landing"
    (landing / "KRX").mkdir(parents=True)
    # Longer than the 64 KiB head read to choose the profile, so the parse needs the rest.
    text = document(*((str(n), n % 60, "71000", 1 + n % 7) for n in range(1, 1200)))
    assert len(text) > 64 * 1024
    (landing / "KRX/a.xml").write_text(text)
    store = CountingStore(landing_store(str(landing)))
    parsed = parse_landing_file(
        store, "KRX/a.xml", feed=Feed.load(), staging_uri=str(tmp_path / "staging")
    )
    assert parsed.ok and parsed.staged.rows == 1199
    assert parsed.staged.parser == "xml2arrow"  # the compiled path read the replayed stream
    assert parsed.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert store.opened == ["KRX/a.xml"]


def test_parse_workers_start_only_for_enough_xml(tmp_path):
    store = LocalLanding(tmp_path)
    store.write("KRX/small.xml", b"x" * 1024)
    store.write("KRX/big.xml", b"x" * POOL_MIN_BYTES)
    assert not worth_a_pool(store, ["KRX/small.xml"])
    assert not worth_a_pool(store, ["KRX/small.xml", "KRX/missing.xml"])  # missing counts 0
    assert worth_a_pool(store, ["KRX/small.xml", "KRX/big.xml"])
    # Stat'ing stops once it knows: a later key is never looked at.
    assert worth_a_pool(store, ["KRX/big.xml", "KRX/missing.xml"])
