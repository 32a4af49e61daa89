"""`make bench`: generate (or reuse) the data sets, run every measurement in its own process with a
time limit, print the Markdown tables and targets, and update the report file.

    python -m bench.run --ticks 10000000 [30000000] [--files 10] [--peer-mb 100]
                        [--timeout 1800] [--only expat,parse,...] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from bench import data as datasets
from bench.data import DataFile, DataSet
from bench.report import (
    ROWS,
    Report,
    Row,
    SizeResult,
    files_text,
    fmt_seconds,
    section,
    write_report,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = PROJECT_ROOT / "docs" / "benchmarks.md"
PEERS = ("pandas", "lxml", "spark")
SAMPLE_EVERY_S = 0.2


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Outcome:
    status: str  # ok | timeout | failed
    result: dict | None = None
    peak_rss_all: int | None = None
    error: str = ""


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        with contextlib.suppress(psutil.Error):  # a worker that just exited
            total += member.memory_info().rss
    return total


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """Stop a measurement and its worker processes (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def run_measure(
    name: str,
    data: DataSet,
    files: tuple[DataFile, ...],
    timeout: float,
    logs: Path,
    work: Path | None = None,
) -> Outcome:
    """Run `python -m bench.measures NAME` in a new process group; kill the group on timeout."""
    command = [sys.executable, "-m", "bench.measures", name, "--root", str(data.root), "--json"]
    command += ["--files", *(str(f.path) for f in files)]
    if work is not None:
        command += ["--work", str(work)]
    if name == "bars":
        command += ["--day", data.trade_date.isoformat()]
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    peak = 0
    with out_path.open("wb") as out, err_path.open("wb") as err:
        child = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=out, stderr=err, start_new_session=True
        )
        watched = psutil.Process(child.pid)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    child.wait(timeout=SAMPLE_EVERY_S)
                    break
                except subprocess.TimeoutExpired:
                    peak = max(peak, _tree_rss(watched))
                if time.monotonic() > deadline:
                    _kill_group(child)
                    return Outcome("timeout", peak_rss_all=peak or None)
        except BaseException:  # Ctrl-C: the group is in its own session, so stop it too
            _kill_group(child)
            raise
    lines = out_path.read_text().strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = err_path.read_text().strip().splitlines()[-15:]
        return Outcome("failed", error="\n".join(tail) or f"exit code {child.returncode}")
    result = json.loads(lines[-1])
    return Outcome("ok", result, max(peak, result["peak_rss_bytes"]))


def measure_size(
    data: DataSet, only: list[str], peer_mb: float, timeout: float, work_root: Path | None
) -> SizeResult:
    size = SizeResult(data.ticks, len(data.files), data.describe())
    datasets.warm_page_cache(data.files)
    work = Path(tempfile.mkdtemp(prefix=f"tickhouse-bench-{data.key}-", dir=work_root))
    logs = work / "logs"
    logs.mkdir()
    try:
        for name in ROWS:
            if name not in only:
                continue
            files = data.subset(peer_mb) if name in PEERS else data.files
            row = Row(
                name,
                "ok",
                ticks=sum(f.ticks for f in files),
                bytes=None if name == "bars" else sum(f.bytes for f in files),
                files=len(files),
                all_files=len(data.files),
                all_ticks=data.ticks,
            )
            size.rows[name] = row
            if name == "bars" and not (size.rows.get("ingest") and size.rows["ingest"].ok):
                row.status, row.note = "skipped", "skipped: the full ingest did not finish"
                log(f"[{data.ticks:,} ticks] bars: skipped, the full ingest did not finish")
                continue
            directory = None if name in ("expat", "parse") else work / name
            if name == "bars":
                directory = work / "ingest"  # the ticks the full ingest wrote
            what = "one trade date" if name == "bars" else files_text(len(files))
            log(f"[{data.ticks:,} ticks] {name}: running on {what} ...")
            outcome = run_measure(name, data, files, timeout, logs, directory)
            _fill(row, outcome, timeout)
            _log_row(data, row, outcome)
            if name in PEERS and directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return size


def _fill(row: Row, outcome: Outcome, timeout: float) -> None:
    row.status = outcome.status
    row.peak_rss_all = outcome.peak_rss_all
    if outcome.status == "timeout":
        row.note = f"timeout after {timeout:g} s"
    if outcome.result is None:
        row.note = row.note or outcome.status
        return
    row.seconds = outcome.result["seconds"]
    row.peak_rss = outcome.result["peak_rss_bytes"]
    row.note = outcome.result.get("detail", "")
    rows = outcome.result.get("rows")
    if rows is not None and rows != row.ticks:
        row.warning = f"produced {rows:,} rows, expected {row.ticks:,}"


def _log_row(data: DataSet, row: Row, outcome: Outcome) -> None:
    prefix = f"[{data.ticks:,} ticks] {row.name}:"
    if outcome.status == "failed":
        log(f"{prefix} FAILED\n{outcome.error}")
    elif outcome.status == "timeout":
        log(f"{prefix} timeout")
    else:
        speed = f", {row.ticks_per_s:,.0f} ticks/s" if row.ticks_per_s else ""
        note = f" ({row.note})" if row.note else ""
        note += f" WARNING: {row.warning}" if row.warning else ""
        log(f"{prefix} {row.seconds:.2f} s{speed}{note}")


def _ready_text(data: DataSet) -> str:
    """How the data set came to be: generated in this run (and how long it took) or reused."""
    if data.generated_s is None:
        return "reused from the cache"
    return f"generated in this run in {fmt_seconds(data.generated_s)}"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine_facts(data_dir: Path, work_root: Path | None) -> list[str]:
    cpu = "unknown CPU"
    meminfo = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            meminfo[key] = value.strip()
    except OSError:
        pass
    ram_kib = int(meminfo.get("MemTotal", "0 kB").split()[0])
    libraries = ", ".join(
        f"{p} {_version(p)}" for p in ("pyarrow", "pyiceberg", "lxml", "duckdb", "pandas")
    )
    return [
        f"Machine: {len(os.sched_getaffinity(0))} cores (nproc), {ram_kib / 2**20:.1f} GiB RAM, "
        f"CPU {cpu}, {platform.system()} {platform.release()}",
        f"Python {platform.python_version()}; {libraries}",
        "Load average (1/5/15 min) when the run started: "
        + " / ".join(f"{load:.2f}" for load in os.getloadavg()),
        f"Storage: local disk — data in `{_home(data_dir)}`, warehouse and staging in a fresh "
        f"folder under `{_home(work_root or Path(tempfile.gettempdir()))}`",
    ]


def _home(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if text.startswith(home + os.sep) else text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add = parser.add_argument
    add("--ticks", type=int, nargs="+", default=[10_000_000], help="ticks of the trading day")
    add("--files", type=int, default=10, help="files the day is split into")
    add("--symbols", type=int, default=datasets.SYMBOLS)
    add("--seed", type=int, default=datasets.SEED)
    peers = "measure peers on the first files totalling at least this many MB (0 = all files)"
    add("--peer-mb", type=float, default=100, help=peers)
    add("--timeout", type=float, default=1800, help="seconds allowed per measurement")
    add("--only", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    add(
        "--data-dir", type=Path, default=datasets.DEFAULT_CACHE, help="cache of generated data sets"
    )
    add("--work-dir", type=Path, default=None, help="where fresh work folders are made")
    add("--out", type=Path, default=DEFAULT_OUT, help="report file to update")
    add("--no-out", action="store_true", help="print only, do not write a report file")
    add("--command", default=None, help="how the run was started, for the report")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(ROWS)
    if unknown:
        parser.error(f"--only: unknown measurements {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    exact = shlex.join(["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)])
    only = args.only.split(",")
    sizes = []
    for ticks in args.ticks:
        spec = datasets.bench_spec(ticks, args.files, args.symbols, args.seed)
        data = datasets.ensure_data_set(spec, args.data_dir, log=log)
        size = measure_size(data, only, args.peer_mb, args.timeout, args.work_dir)
        size.description += f"; {_ready_text(data)}"
        sizes.append(size)
    key = "+".join(f"{t}x{args.files}" for t in args.ticks)
    if set(only) != set(ROWS):
        key += "-" + "-".join(n for n in ROWS if n in only)
    report = Report(
        key=key,
        title=" + ".join(f"{t:,} ticks" for t in args.ticks) + f" in {files_text(args.files)}",
        command=args.command or exact,
        exact_command=exact,
        date=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        machine=machine_facts(args.data_dir, args.work_dir),
        sizes=sizes,
        elapsed_s=time.monotonic() - started,
    )
    print(section(report))
    if not args.no_out:
        write_report(args.out, report)
        log(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
