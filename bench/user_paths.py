"""`make bench`, first section: the paths users run, timed as a user waits for them.

    python -m bench.user_paths --ticks 10000000 [--files 10 390] [--profiles tickhouse fixml]
                               [--repeat 1] [--sensor-interval 5] [--bigfile-ticks 18000000]
                               [--only ingest,sensor,expat,lxml,pandas,spark]
                               [--skip PROFILE:FILES:ROW ...] [--out docs/benchmarks.md]

For each profile and layout (one trading day split into N files), on the same files:

- `ingest`: `tickhouse ingest` as a process, in a fresh TICKHOUSE_HOME / DAGSTER_HOME whose
  landing folder holds hard links of the data set: from the process start until it exits 0
  (imports, the batch run with every check, the bar rebuild). Peak RSS of its process tree.
- `sensor`: a real `dagster dev` (webserver + daemon, sensors on) in a fresh home with an empty
  landing folder; once both sensors have ticked, every file appears at once (hard links made
  beside the landing folder, then one rename into it). Timed from that rename until the trade
  date's `market.ohlcv_1d` bars are committed and count every trade (pyiceberg, polled).
- peers on the same files (`bench.measures`): the expat floor on all files; the hand-written
  lxml loop, `pandas.read_xml` and Spark on the first files holding `--peer-mb` MB.

The layout with the most files also gives the per-file cost growth: the gaps between the
consecutive `market/ticks` materializations the `tickhouse ingest` batch run recorded in its
Dagster event log (each file settled: conflict check, commit, read-back, events written).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil

from bench import data as datasets
from bench.data import DataSet
from bench.report import write_section
from bench.run import machine_facts, run_measure
from bench.user_report import (
    PEERS,
    ROWS,
    USER_PATHS,
    Cell,
    Growth,
    LayoutResult,
    Sample,
    UserReport,
    section,
    section_key,
)
from tickhouse_dagster.cli.devserver import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = PROJECT_ROOT / "docs" / "benchmarks.md"
MANY_FILES = 50  # layouts with more files than this are repeated `--repeat-many` times
SAMPLE_EVERY_S = 0.2
POLL_EVERY_S = 0.5
DAGSTER_INSTANCE = PROJECT_ROOT / "infra" / "dagster" / "dagster.local.yaml"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- processes -------------------------------------------------------------------------------


class TreeSampler(threading.Thread):
    """Samples the resident memory of a process and all its descendants every 0.2 s: the peak
    of the sum and the peak of the largest single process, since the last `reset()`."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._process = psutil.Process(pid)
        self._done = threading.Event()
        self.peak_all = 0
        self.peak_largest = 0

    def reset(self) -> None:
        self.peak_all = self.peak_largest = 0

    def sample(self) -> None:
        try:
            members = [self._process, *self._process.children(recursive=True)]
        except psutil.Error:
            return
        sizes = []
        for member in members:
            with contextlib.suppress(psutil.Error):  # a process that just exited
                sizes.append(member.memory_info().rss)
        if sizes:
            self.peak_all = max(self.peak_all, sum(sizes))
            self.peak_largest = max(self.peak_largest, max(sizes))

    def run(self) -> None:
        while not self._done.wait(SAMPLE_EVERY_S):
            self.sample()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with the embedded defaults: no TICKHOUSE_*, PYICEBERG_* or
    DAGSTER_HOME of the caller's (a shell with the stack's variables would measure the stack),
    this tree first on the path, and a home of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TICKHOUSE_", "PYICEBERG_")) and k != "DAGSTER_HOME"
    }
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env["TICKHOUSE_HOME"] = str(home)
    env["DAGSTER_HOME"] = str(home / "dagster")
    env.update(extra)
    return env


def link_files(data: DataSet, into: Path) -> None:
    """The data set's files under `into`, at their keys: hard links (a copy across devices)."""
    for file in data.files:
        target = into / file.path.relative_to(data.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file.path, target)
        except OSError:
            shutil.copy2(file.path, target)


# --- what a home holds afterwards ------------------------------------------------------------


def _catalog(home: Path):
    from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog

    return load_lakehouse_catalog(
        CatalogSettings(
            "tickhouse", warehouse=str(home / "warehouse"), embedded_db=str(home / "catalog.db")
        )
    )


def day_trades(catalog, day: str) -> int:
    """Trades the day's `market.ohlcv_1d` bars count (0 until the table has a snapshot)."""
    import pyarrow.compute as pc
    from pyiceberg.expressions import EqualTo

    if not catalog.table_exists("market.ohlcv_1d"):
        return 0
    table = catalog.load_table("market.ohlcv_1d")
    if table.current_snapshot() is None:
        return 0
    scan = table.scan(row_filter=EqualTo("trade_date", day), selected_fields=("trade_count",))
    return pc.sum(scan.to_arrow()["trade_count"]).as_py() or 0


@dataclass(frozen=True)
class RunTimes:
    """A run's moments (epoch seconds): requested (queued), launched, started, ended."""

    enqueued: float
    launched: float
    started: float
    ended: float


@dataclass
class Timeline:
    """What the Dagster instance recorded: the runs and each ticks commit."""

    batch_runs: list[RunTimes] = field(default_factory=list)
    bars_runs: list[RunTimes] = field(default_factory=list)
    commits: list[float] = field(default_factory=list)  # market/ticks materializations
    # (start, end) of the landing sensor's ticks that requested a run
    landing_ticks: list[tuple[float, float]] = field(default_factory=list)


def timeline(dagster_home: Path) -> Timeline:
    from dagster import AssetKey, DagsterInstance

    from tickhouse_dagster.defs.asset_keys import TICKS

    result = Timeline()
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in instance.get_runs():
            stats = instance.get_run_stats(run.run_id)
            started = stats.start_time or 0.0
            launched = stats.launch_time or started
            times = RunTimes(
                stats.enqueued_time or launched, launched, started, stats.end_time or 0.0
            )
            if run.job_name == "ingest_landing_batch":
                result.batch_runs.append(times)
            elif run.job_name == "rebuild_bars":
                result.bars_runs.append(times)
        for state in instance.all_instigator_state():
            if state.name != "landing_sensor":
                continue
            for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id):
                if tick.run_ids:
                    end = tick.tick_data.end_timestamp or tick.timestamp
                    result.landing_ticks.append((tick.timestamp, end))
        result.landing_ticks.sort()
        cursor = None
        while True:
            page = instance.fetch_materializations(
                AssetKey(TICKS), limit=1000, cursor=cursor, ascending=True
            )
            result.commits += [r.timestamp for r in page.records]
            cursor = page.cursor
            if not page.has_more:
                break
    result.batch_runs.sort(key=lambda r: r.started)
    result.bars_runs.sort(key=lambda r: r.started)
    return result


def growth_of(commits: list[float]) -> Growth | None:
    """Per-file cost: the gap between consecutive ticks commits of one batch run."""
    gaps = [b - a for a, b in itertools.pairwise(commits)]
    if not gaps:
        return None
    tenth = max(1, len(gaps) // 10)
    deciles = []
    for i in range(10):
        part = gaps[i * len(gaps) // 10 : (i + 1) * len(gaps) // 10]
        if part:
            deciles.append(statistics.median(part))
    return Growth(
        files=len(commits),
        first=statistics.median(gaps[:tenth]),
        last=statistics.median(gaps[-tenth:]),
        deciles=deciles,
    )


# --- the two user paths ----------------------------------------------------------------------


def measure_ingest(data: DataSet, work: Path, timeout: float) -> Sample:
    """`tickhouse ingest` in a fresh home over hard links of the data set."""
    home = work / f"ingest-{uuid.uuid4().hex[:8]}"
    link_files(data, home / "landing")
    env = user_env(home)
    command = [sys.executable, "-m", "tickhouse_dagster.cli", "ingest"]
    out, err = home / "ingest.out", home / "ingest.err"
    try:
        with out.open("wb") as stdout, err.open("wb") as stderr:
            started = time.perf_counter()
            child = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
            started_at = time.time()
            sampler = TreeSampler(child.pid)
            sampler.start()
            deadline = started + timeout
            try:
                while True:
                    pid, status = os.waitpid(child.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.perf_counter() > deadline:
                        _kill_group(child.pid)
                        child.wait()
                        return Sample.failed("timeout", f"timeout after {timeout:g} s")
                    time.sleep(0.02)
            except BaseException:
                _kill_group(child.pid)
                raise
            seconds = time.perf_counter() - started
            child.returncode = os.waitstatus_to_exitcode(status)
            sampler.stop()
            _kill_group(child.pid)  # anything it left behind (it should leave nothing)
        if child.returncode != 0:
            tail = (out.read_text() + err.read_text()).strip().splitlines()[-12:]
            return Sample.failed("failed", "\n".join(tail) or f"exit code {child.returncode}")
        printed = out.read_text().splitlines()
        rows = sum(
            int(line.rsplit(": ", 1)[1].split()[0].replace(",", ""))
            for line in printed
            if line.startswith("  ingested ")
        )
        bars = day_trades(_catalog(home), data.trade_date.isoformat())
        events = timeline(home / "dagster")
        detail = _ingest_breakdown(events, started_at, started_at + seconds)
        sample = Sample(
            seconds,
            rows,
            # Sampled only: the child's ru_maxrss would include this harness's resident set,
            # which Linux carries over from the fork across exec.
            peak_rss=sampler.peak_largest,
            peak_rss_all=sampler.peak_all,
            detail=detail,
            growth=growth_of(events.commits),
        )
        if bars != data.ticks:
            sample.warning = f"ohlcv_1d counts {bars:,} trades, expected {data.ticks:,}"
        return sample
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _ingest_breakdown(events: Timeline, start: float, end: float) -> dict[str, float]:
    if not events.batch_runs:
        return {}
    batch = events.batch_runs[0]
    bars_end = max((r.ended for r in events.bars_runs), default=batch.ended)
    return {
        "start → batch run": batch.started - start,
        "batch run": batch.ended - batch.started,
        "bars runs": bars_end - batch.ended,
        "exit": end - bars_end,
    }


@contextlib.contextmanager
def dagster_dev(env: dict[str, str], port: int, log_path: Path):
    """`python -m dagster dev` on 127.0.0.1:`port`, its own process group; yields the Popen."""
    with log_path.open("wb") as output:
        command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"]
        command += ["-h", "127.0.0.1", "-p", str(port)]
        child = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield child
        finally:
            _kill_group(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill_group(child.pid)
                child.wait()
            time.sleep(1)
            _kill_group(child.pid)  # run processes that outlived the daemon


def _wait(what: str, probe, timeout: float, every: float = POLL_EVERY_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # e.g. SQLite busy while a writer commits
            value = probe()
            if value:
                return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _sensors_ticked(dagster_home: Path, names: set[str]) -> bool:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(dagster_home)) as instance:
        ticked = set()
        for state in instance.all_instigator_state():
            if state.name in names and instance.get_ticks(
                state.instigator_origin_id, state.selector_id, limit=1
            ):
                ticked.add(state.name)
    return ticked == names


def measure_sensor(data: DataSet, work: Path, timeout: float, interval: int) -> Sample:
    """`dagster dev` with the sensors on; every file of the data set appears at once."""
    from tickhouse_dagster.cli.devserver import dagster_home

    home = work / f"sensor-{uuid.uuid4().hex[:8]}"
    landing, incoming = home / "landing", home / "incoming"
    landing.mkdir(parents=True)
    dagster_home(home)
    env = user_env(home, TICKHOUSE_SENSOR_INTERVAL_SECONDS=str(interval))
    port = free_port()
    day = data.trade_date.isoformat()
    try:
        with dagster_dev(env, port, home / "dagster-dev.log") as child:
            sampler = TreeSampler(child.pid)
            sampler.start()
            try:
                _wait(
                    "the webserver", lambda: _answers(f"http://127.0.0.1:{port}/server_info"), 300
                )
                _wait(
                    "the first ticks of both sensors",
                    lambda: _sensors_ticked(
                        home / "dagster", {"landing_sensor", "touched_days_sensor"}
                    ),
                    300,
                )
                link_files(data, incoming)
                catalog = _catalog(home)
                sampler.reset()
                dropped_at, started = time.time(), time.perf_counter()
                for entry in sorted(incoming.iterdir()):
                    entry.rename(landing / entry.name)  # a folder: all its files at once
                try:
                    _wait(
                        f"{day}'s ohlcv_1d bars to count {data.ticks:,} trades",
                        lambda: day_trades(catalog, day) == data.ticks,
                        timeout,
                    )
                except TimeoutError:
                    return Sample.failed("timeout", f"timeout after {timeout:g} s")
                seconds = time.perf_counter() - started
                sampler.sample()
            finally:
                sampler.stop()
            events = timeline(home / "dagster")
        return Sample(
            seconds,
            data.ticks,
            peak_rss=sampler.peak_largest,
            peak_rss_all=sampler.peak_all,
            detail=_sensor_breakdown(events, dropped_at, dropped_at + seconds),
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _sensor_breakdown(events: Timeline, dropped: float, done: float) -> dict[str, float]:
    """drop → the landing sensor's tick that sees the files starts → it has requested the batch
    run → the run leaves the queue → its process has loaded the code location → the batch ends;
    then the last bars run that started before the bars were complete, until the poll saw them
    (a bars run commits, then runs its checks: it ends after the bars are visible)."""
    if not events.batch_runs:
        return {}
    batch = events.batch_runs[0]
    last = max(events.batch_runs, key=lambda r: r.ended or done)
    figures: dict[str, float] = {}
    ticks = [t for t in events.landing_ticks if t[0] >= dropped - 1]
    if ticks:
        figures["drop → sensor tick"] = max(0.0, ticks[0][0] - dropped)
        figures["tick → run requested"] = batch.enqueued - ticks[0][0]
    else:
        figures["drop → run requested"] = batch.enqueued - dropped
    figures["queued"] = batch.launched - batch.enqueued
    figures["run process start"] = batch.started - batch.launched
    batch_end = last.ended or done
    figures["batch run"] = batch_end - batch.started
    bars = [r for r in events.bars_runs if r.started and r.started <= done]
    if bars:
        final = max(bars, key=lambda r: r.started)
        figures["batch end → last bars run starts"] = final.started - batch_end
        figures["bars run start → bars seen"] = done - final.started
    figures["batch runs"] = float(len(events.batch_runs))
    figures["bars runs"] = float(len(bars))
    figures["of them during the batch"] = float(len([r for r in bars if r.started < batch_end]))
    return figures


# --- one layout ------------------------------------------------------------------------------


def measure_layout(
    data: DataSet,
    args: argparse.Namespace,
    rows: list[str],
    skipped: dict[str, str],
    repeat: int,
) -> LayoutResult:
    result = LayoutResult(data.profile, len(data.files), data.ticks, data.bytes, data.describe())
    datasets.warm_page_cache(data.files)
    work = Path(tempfile.mkdtemp(prefix=f"tickhouse-userbench-{data.key}-", dir=args.work_dir))
    logs = work / "logs"
    logs.mkdir()
    where = f"[{data.profile}, {len(data.files)} files, {data.ticks:,} ticks]"
    try:
        for name in ROWS:
            if name not in rows:
                continue
            files = data.subset(args.peer_mb) if name in ("lxml", "pandas", "spark") else data.files
            cell = Cell(
                name,
                ticks=sum(f.ticks for f in files),
                bytes=sum(f.bytes for f in files),
                files=len(files),
                all_files=len(data.files),
                all_ticks=data.ticks,
            )
            result.cells[name] = cell
            if name in skipped:
                cell.note = skipped[name]
                log(f"{where} {name}: {cell.note}")
                continue
            times = repeat if name in USER_PATHS else 1
            for attempt in range(times):
                log(f"{where} {name}: running ({attempt + 1}/{times}) ...")
                if name == "ingest":
                    sample = measure_ingest(data, work, args.timeout)
                elif name == "sensor":
                    sample = measure_sensor(data, work, args.timeout, args.sensor_interval)
                else:
                    sample = _peer_sample(name, data, files, args.timeout, logs, work)
                cell.samples.append(sample)
                _log_sample(where, name, cell, sample)
                if not sample.ok:
                    break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _peer_sample(name, data, files, timeout, logs, work) -> Sample:
    directory = None if name == "expat" else work / name
    outcome = run_measure(name, data, files, timeout, logs, directory)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
    if outcome.status != "ok" or outcome.result is None:
        note = f"timeout after {timeout:g} s" if outcome.status == "timeout" else outcome.error
        return Sample.failed(outcome.status, note)
    result = outcome.result
    sample = Sample(
        result["seconds"],
        result.get("rows"),
        peak_rss=result["peak_rss_bytes"],
        peak_rss_all=outcome.peak_rss_all,
        note=result.get("detail", ""),
    )
    expected = sum(f.ticks for f in files)
    if sample.rows is not None and sample.rows != expected:
        sample.warning = f"produced {sample.rows:,} rows, expected {expected:,}"
    return sample


def _log_sample(where: str, name: str, cell: Cell, sample: Sample) -> None:
    if not sample.ok:
        log(f"{where} {name}: {sample.status.upper()}\n{sample.note}")
        return
    rate = cell.ticks / sample.seconds
    extra = ", ".join(f"{k} {v:.2f}" for k, v in sample.detail.items())
    warning = f" WARNING: {sample.warning}" if sample.warning else ""
    log(
        f"{where} {name}: {sample.seconds:.2f} s, {rate:,.0f} ticks/s"
        + (f" ({extra})" if extra else "")
        + warning
    )


# --- the run ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.user_paths", description=__doc__)
    add = parser.add_argument
    add("--ticks", type=int, default=10_000_000, help="ticks of the trading day")
    add(
        "--ticks-many",
        type=int,
        default=None,
        help=f"ticks for the layouts of more than {MANY_FILES} files (default: --ticks)",
    )
    add("--files", type=int, nargs="+", default=[10, 390], help="layouts: files per day")
    add("--profiles", nargs="+", default=["tickhouse", "fixml"], choices=["tickhouse", "fixml"])
    add("--symbols", type=int, default=datasets.SYMBOLS)
    add("--seed", type=int, default=datasets.SEED)
    add("--peer-mb", type=float, default=100, help="lxml, pandas, Spark on the first N MB")
    add("--timeout", type=float, default=1800, help="seconds allowed per measurement")
    add("--repeat", type=int, default=1, help="runs of each user path (median, min–max)")
    add("--repeat-many", type=int, default=1, help=f"the same, layouts > {MANY_FILES} files")
    add("--sensor-interval", type=int, default=5, help="TICKHOUSE_SENSOR_INTERVAL_SECONDS")
    add(
        "--bigfile-ticks",
        type=int,
        default=0,
        help="also `tickhouse ingest` one file of this many ticks (18000000 ≈ 2 GB); 0 = no",
    )
    add("--only", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    add(
        "--skip",
        action="append",
        default=[],
        metavar="PROFILE:FILES:ROW",
        help="leave one row of one layout out, e.g. fixml:390:sensor (repeatable)",
    )
    add("--data-dir", type=Path, default=datasets.DEFAULT_CACHE)
    add("--work-dir", type=Path, default=None, help="where fresh homes are made")
    add("--out", type=Path, default=DEFAULT_OUT)
    add("--no-out", action="store_true", help="print only, do not write the report file")
    add("--command", default=None, help="how the run was started, for the report")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(ROWS)
    if unknown:
        parser.error(f"--only: unknown rows {sorted(unknown)}")
    for skip in args.skip:
        parts = skip.split(":")
        if len(parts) != 3 or parts[2] not in ROWS or not parts[1].isdigit():
            parser.error(f"--skip {skip}: expected PROFILE:FILES:ROW, e.g. fixml:390:sensor")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    exact = shlex.join(
        ["python", "-m", "bench.user_paths", *(sys.argv[1:] if argv is None else argv)]
    )
    rows = args.only.split(",")
    layouts: list[LayoutResult] = []
    for files in args.files:
        many = files > MANY_FILES
        ticks = (args.ticks_many or args.ticks) if many else args.ticks
        for profile in args.profiles:
            spec = datasets.bench_spec(ticks, files, args.symbols, args.seed, profile)
            data = datasets.ensure_data_set(spec, args.data_dir, log=log)
            skipped = {
                s.split(":")[2]: f"not run (`--skip {s}`)"
                for s in args.skip
                if s.split(":")[:2] == [profile, str(files)]
            }
            repeat = args.repeat_many if many else args.repeat
            layouts.append(measure_layout(data, args, rows, skipped, repeat))
    bigfile = None
    if args.bigfile_ticks:
        spec = datasets.bench_spec(args.bigfile_ticks, 1, args.symbols, args.seed, "tickhouse")
        data = datasets.ensure_data_set(spec, args.data_dir, log=log)
        bigfile = measure_layout(data, args, ["ingest"], {}, 1)
    report = UserReport(
        key=section_key(args.ticks),
        ticks=args.ticks,
        ticks_many=args.ticks_many,
        command=args.command or exact,
        exact_command=exact,
        date=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        machine=machine_facts(args.data_dir, args.work_dir),
        layouts=layouts,
        bigfile=bigfile,
        sensor_interval=args.sensor_interval,
        peer_mb=args.peer_mb,
        elapsed_s=time.monotonic() - started,
    )
    text = section(report)
    print(text)
    if not args.no_out:
        write_section(args.out, report.key, text)
        log(f"report: {args.out}")
    return 0


__all__ = ["PEERS", "main"]

if __name__ == "__main__":
    sys.exit(main())
