"""bench/exchange_fixml.py: the generator's FIXML in the exchange shape holds the same trades —
the project's reader (the one ingestion runs, compiled path included) gives the same rows, the
side being the first <RptSide>'s — so a timed run on it measures the shape, not other data."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pytest

from bench.exchange_fixml import exchange_text
from tickhouse_dagster.parsing.profiles import load_profiles
from tickhouse_dagster.parsing.readers import consume_tick_file
from tickhouse_dagster.sample import SampleSpec, generate


def rows(data: bytes, venues) -> tuple[pa.Table, str]:
    return consume_tick_file(
        lambda: io.BytesIO(data),
        lambda batches: pa.Table.from_batches(list(batches)),
        source_file="f.xml",
        profile=load_profiles()["fixml"],
        venues=venues,
    )


def test_the_exchange_shape_holds_the_same_trades(tmp_path: Path, venues) -> None:
    spec = SampleSpec(symbols=3, ticks_per_day=3000, files_per_day=1, profile="fixml")
    [path] = generate(spec, tmp_path)
    lean = path.read_text()
    shaped = exchange_text(lean)
    assert shaped.count("<RptSide ") == 2 * lean.count("<TrdCaptRpt ")
    assert "+09:00" in shaped and 'Z"' not in shaped and "<Hdr " in shaped
    assert len(shaped) > 3 * len(lean)
    before, reader = rows(lean.encode(), venues)
    after, shaped_reader = rows(shaped.encode(), venues)
    assert reader == shaped_reader == "xml2arrow"
    assert after.num_rows == before.num_rows == 3000
    for column in before.column_names:
        if column != "side":
            assert after[column].equals(before[column]), column
    sides = zip(before["side"].to_pylist(), after["side"].to_pylist(), strict=True)
    assert all(a == (b if b is not None else "B") for b, a in sides)
    assert None in before["side"].to_pylist()  # the buyer-first rule was exercised


def test_a_report_the_rewrite_does_not_know_stops_it() -> None:
    text = '  <Batch>\n    <TrdCaptRpt RptID="x" TrdID="1">\n    </TrdCaptRpt>\n  </Batch>\n'
    with pytest.raises(ValueError, match="rewrote 0 of 1 reports"):
        exchange_text(text)
