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


def test_user_paths_at_one_million_ticks_in_few_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user-path section as `make bench-quick` writes it (1M ticks), in 3 files per profile:
    `tickhouse ingest`, the sensor under a real `dagster dev`, the expat floor and the peers,
    for both profiles, plus a one-file `tickhouse ingest`; every figure present and > 0."""
    from bench import user_paths
    from bench.user_report import ROWS as USER_ROWS

    out = tmp_path / "benchmarks.md"
    code = user_paths.main(
        [
            "--ticks", "1000000",
            "--files", "3",
            "--profiles", "tickhouse", "fixml",
            "--peer-mb", "5",
            "--bigfile-ticks", "20000",
            "--timeout", "600",
            "--data-dir", str(tmp_path / "data"),
            "--work-dir", str(tmp_path),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    written = out.read_text()
    assert printed.strip() in written
    assert written.index("## User paths") < written.index("## Components and peers")

    lines = printed.splitlines()
    for profile in ("tickhouse", "fixml"):
        for name, label in USER_ROWS.items():
            [cells] = [  # the main table's row (the breakdown table starts the same way)
                row
                for line in lines
                if line.startswith(f"| {label} | `{profile}` | 3 files |")
                and len(row := [cell.strip() for cell in line.strip("|").split("|")]) == 11
            ]
            wall, ticks_per_s, vs_lxml, vs_pandas, vs_expat, rss, rss_all = cells[4:11]
            assert _number(wall) > 0, (name, cells)
            assert _number(ticks_per_s) > 0, (name, cells)
            assert _number(rss) > 0 and _number(rss_all) > 0, (name, cells)
            if name in ("ingest", "sensor"):  # the ratios against the floor and the peers
                for ratio in (vs_lxml, vs_pandas, vs_expat):
                    assert float(ratio.rstrip("×")) > 0, (name, cells)
            if name in ("lxml", "pandas", "spark"):
                assert "first" in cells[3], cells  # measured on a subset, marked as such

        # Where the time goes, and the per-file cost growth from the batch run's event log.
        [growth] = [line for line in lines if line.startswith(f"| `{profile}` | 3 files | ")]
        first, last, ratio = (cell.strip() for cell in growth.strip("|").split("|")[3:6])
        assert _number(first) > 0 and _number(last) > 0 and float(ratio.rstrip("×")) > 0
        assert any(
            line.startswith(f"| {USER_ROWS['sensor']} | `{profile}` |") and "batch run" in line
            for line in lines
        )

    # The one-file row (the 2 GB target's measurement, here a small file).
    [big] = [
        row
        for line in lines
        if line.startswith(f"| {USER_ROWS['ingest']} | `tickhouse` | 1 file |")
        and len(row := [cell.strip() for cell in line.strip("|").split("|")]) == 11
    ]
    assert _number(big[4]) > 0 and _number(big[9]) > 0 and _number(big[10]) > 0, big

    # Every target of the issue has its line.
    for target in (
        "≥ 1,000,000 ticks/s",
        "≥ 10× the hand-written lxml loop",
        "≥ 20× the `pandas.read_xml`",
        "within 3× of the expat floor",
        "sensor path ≤ 2×",
        "FIXML within 1.3×",
        "peak RSS ≤ 1.5 GB",
    ):
        assert any(target in line and line.startswith("| ") for line in lines), target
    assert not list(tmp_path.glob("tickhouse-userbench-*")), "work folders are removed"
