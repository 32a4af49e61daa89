"""The benchmark harness end to end on a tiny data set: every row is measured and has positive
numbers. No timing assertions — this checks the harness, not the speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run
from bench.report import ROWS

pytestmark = pytest.mark.slow


def _cells(markdown: str, label: str) -> list[str]:
    [line] = [line for line in markdown.splitlines() if line.startswith(f"| {label} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def _number(text: str) -> float:
    return float(text.split()[0].replace(",", ""))


def test_bench_on_a_tiny_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "benchmarks.md"
    code = run.main(
        [
            "--ticks", "20000",
            "--files", "4",
            "--peer-mb", "1",  # peers on a subset: the first files holding >= 1 MB
            "--timeout", "120",
            "--data-dir", str(tmp_path / "data"),
            "--work-dir", str(tmp_path),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    written = out.read_text()
    assert printed.strip() in written  # the printed section is what the report holds

    for name, label in ROWS.items():
        cells = _cells(printed, label)
        wall, ticks_per_s, mb_per_s, rss, rss_all = cells[2:7]
        assert _number(wall) > 0, (name, cells)
        assert _number(ticks_per_s) > 0, (name, cells)
        assert _number(rss) > 0 and _number(rss_all) > 0, (name, cells)
        if name != "bars":
            assert _number(mb_per_s) > 0, (name, cells)
    assert "measured on" in _cells(printed, ROWS["pandas"])[1]  # the subset is marked

    # The targets are computed, one verdict per target.
    for target in (
        "full ingest ≥",
        "within 1.5×",
        "pandas.read_xml",
        "Spark local",
        "bar rebuild",
        "take ≤ 3.3×",
    ):
        assert any(target in line and "|" in line for line in printed.splitlines()), target

    # A second run reuses the cached data set and replaces its section rather than adding one.
    assert run.main(
        ["--ticks", "20000", "--files", "4", "--only", "expat,lxml",
         "--data-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path), "--out", str(out)]
    ) == 0  # fmt: skip
    text = out.read_text()
    assert text.count("<!-- bench:20000x4 -->") == 1
    assert text.count("<!-- bench:20000x4-expat-lxml -->") == 1
    assert not list(tmp_path.glob("tickhouse-bench-*")), "work folders are removed"
