"""Latency on the real stack: files land in the SeaweedFS bucket on a schedule (one every
`--every` seconds for `--files` files, each the next window of one trading day); for each, how long
until Trino's `ohlcv_1m` counts every trade landed so far — and how much of that is the project's
own processing (its run's step), the run's start-up (launch → first step) and the backlog
(files landed but not yet visible) over the stream.

Needs the stack (`infra/local/stack up`, with its landing listener for push ingestion) and its
environment (`eval "$(infra/local/stack env)"`). Starts `dagster dev` on its own port with a
temporary DAGSTER_HOME, namespace and landing prefix, and removes them afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, RunsFilter

from bench.data import bench_spec, ensure_data_set
from bench.exchange_fixml import exchange_data_set
from bench.report import write_section
from tickhouse_dagster.cli.devserver import dagster_home, running_dagster_dev
from tickhouse_dagster.defs.resources import resolved_resources

# Trino is asked when `ohlcv_1m`'s catalog entry has changed (read every CATALOG_POLL_SECONDS:
# one row of the catalog database), and at least every TRINO_IDLE_SECONDS while a file is
# pending. Asking Trino every 0.5 s whatever happened cost about a fifth of the 2 cores the
# pipeline runs on (measured: 32 s of Trino CPU over 150 s of landing), so the measurement slowed
# what it measured; this way Trino answers a few queries per file.
CATALOG_POLL_SECONDS = 0.1
TRINO_IDLE_SECONDS = 2.0


def wait(what: str, probe, timeout: float, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _catalog_entry(catalog, identifier: str) -> str:
    """Where the catalog says the table's current metadata is: changes with every commit."""
    return catalog.load_table(identifier).metadata_location


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (`share` in 0..1)."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.499999))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Landed:
    key: str
    ticks_so_far: int  # the day's trades once this file is in
    at: float  # monotonic
    at_wall: float
    visible_after: float | None = None
    backlog_when_landed: int = 0  # files landed before it and not yet visible


@dataclass
class RunTimes:
    keys: list[str]
    own: float  # the run's step: fingerprint, parse, checks, commit, bars, Trino read-back
    start: float  # launch (RUN_STARTING) → first step (STEP_START)
    requested_after: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)


def _batch_keys(run_config: dict) -> list[str]:
    ops = run_config.get("ops", {}).get("ingest_landing_files", {})
    return ops.get("config", {}).get("keys", [])


def run_times(instance: DagsterInstance) -> list[RunTimes]:
    out = []
    for record in instance.get_run_records(RunsFilter()):
        run = record.dagster_run
        keys = _batch_keys(run.run_config)
        if not keys:
            continue
        events = {
            e.dagster_event.event_type: e.timestamp
            for e in instance.all_logs(run.run_id)
            if e.dagster_event is not None
        }
        stats = instance.get_run_step_stats(run.run_id)
        own = sum((s.end_time or 0) - (s.start_time or 0) for s in stats)
        launched = events.get(DagsterEventType.RUN_STARTING)
        first = events.get(DagsterEventType.STEP_START)
        start = (first - launched) if launched and first else float("nan")
        out.append(RunTimes(keys, own, start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=60, help="files landed one after another")
    parser.add_argument("--every", type=float, default=10, help="seconds between two files")
    parser.add_argument("--ticks", type=int, default=100_000, help="ticks per file")
    parser.add_argument("--profile", default="tickhouse", choices=["tickhouse", "fixml"])
    parser.add_argument("--timeout", type=float, default=300, help="per file, once landed")
    parser.add_argument(
        "--shape",
        choices=["generated", "exchange"],
        default="generated",
        help="fixml only: the generator's files, or the same trades as exchanges send them "
        "(bench/exchange_fixml.py)",
    )
    parser.add_argument("--out", help="report file to update (its stack-latency section)")
    parser.add_argument(
        "--poll",
        action="store_true",
        help="without the landing listener (unset TICKHOUSE_FILER_GRPC): the polling sensor only",
    )
    parser.add_argument("--interval", type=int, default=30, help="polling sensor interval, s")
    args = parser.parse_args()
    if args.poll:
        os.environ.pop("TICKHOUSE_FILER_GRPC", None)
    mode = "push (landing listener)" if os.environ.get("TICKHOUSE_FILER_GRPC") else "polling"

    if args.shape == "exchange" and args.profile != "fixml":
        sys.exit("--shape exchange rewrites FIXML: use it with --profile fixml")
    data = ensure_data_set(
        bench_spec(args.ticks * args.files, args.files, symbols=10, profile=args.profile)
    )
    if args.shape == "exchange":
        data = exchange_data_set(data)
    layout = args.profile + ("" if args.shape == "generated" else f"-{args.shape}")
    run = uuid.uuid4().hex[:8]
    home = Path(tempfile.mkdtemp(prefix="tickhouse-latency-"))
    env = {
        **os.environ,
        **dagster_home(home),
        "TICKHOUSE_NAMESPACE": f"latency_{run}",
        "TICKHOUSE_LANDING_URI": f"s3://landing/latency-{run}/",
        "TICKHOUSE_SENSOR_INTERVAL_SECONDS": str(args.interval),
    }
    os.environ.update(env)
    resources = resolved_resources()
    if "trino" not in resources:
        sys.exit('TICKHOUSE_TRINO_URL is not set: eval "$(infra/local/stack env)" first')
    store, trino = resources["landing"].store(), resources["trino"]
    resources["lakehouse"].lakehouse().ensure_tables()
    namespace = env["TICKHOUSE_NAMESPACE"]
    day = data.trade_date.isoformat()
    table = f"{trino.catalog}.{namespace}.ohlcv_1m"
    catalog = resources["lakehouse"].lakehouse().catalog
    bars_identifier = f"{namespace}.ohlcv_1m"

    port = 3400 + int(run[:2], 16) % 100
    landed: list[Landed] = []
    lock = threading.Lock()
    load = []
    try:
        with running_dagster_dev(env, port, home / "dagster-dev.log") as url:
            wait("the Dagster webserver", lambda: _answers(f"{url}/server_info"), 180, every=1)
            # Only once `dagster dev` has made the instance's storage: two processes creating
            # the same SQLite schema at once fail ("table alembic_version already exists").
            instance = DagsterInstance.from_config(str(home / "dagster"))
            time.sleep(15)  # the daemon has started and evaluated its sensors once

            def land_all() -> None:
                so_far = 0
                start = time.monotonic()
                for number, file in enumerate(data.files):
                    time.sleep(max(0.0, start + number * args.every - time.monotonic()))
                    so_far += file.ticks
                    key = f"{data.spec.venue}/{file.path.name}"
                    payload = file.path.read_bytes()
                    with lock:
                        waiting = sum(1 for f in landed if f.visible_after is None)
                    at, at_wall = time.monotonic(), time.time()
                    store.write(key, payload)
                    with lock:
                        landed.append(Landed(key, so_far, at, at_wall, None, waiting))
                    load.append(os.getloadavg()[0])

            lander = threading.Thread(target=land_all, daemon=True)
            lander.start()
            last_seen = last_asked = time.monotonic()
            bars_entry = _catalog_entry(catalog, bars_identifier)
            while True:
                time.sleep(CATALOG_POLL_SECONDS)
                entry = _catalog_entry(catalog, bars_identifier)
                with lock:
                    waiting = any(f.visible_after is None for f in landed)
                quiet = time.monotonic() - last_asked < TRINO_IDLE_SECONDS
                if not waiting or (entry == bars_entry and quiet):
                    continue
                bars_entry, last_asked = entry, time.monotonic()
                [(count,)] = trino.query(
                    f"SELECT coalesce(sum(trade_count), 0) FROM {table} "
                    f"WHERE trade_date = DATE '{day}'"
                )
                now = time.monotonic()
                with lock:
                    for f in landed:
                        if f.visible_after is None and count >= f.ticks_so_far:
                            f.visible_after = now - f.at
                            last_seen = now
                    done = len(landed) == len(data.files) and all(
                        f.visible_after is not None for f in landed
                    )
                    pending = [f for f in landed if f.visible_after is None]
                if done:
                    break
                if pending and now - min(f.at for f in pending) > args.timeout:
                    raise TimeoutError(
                        f"{pending[0].key}: not visible in Trino {args.timeout:.0f} s after "
                        f"landing (Trino counts {count:,} trades, expected "
                        f"{pending[0].ticks_so_far:,}); last progress {now - last_seen:.0f} s ago"
                    )
            lander.join()
            time.sleep(2)  # the last run's events are written
            runs = run_times(instance)
    finally:
        for (view,) in trino.query(
            f"SELECT table_name FROM {trino.catalog}.information_schema.views "
            f"WHERE table_schema = '{namespace}'"
        ):
            trino.query(f"DROP VIEW {trino.catalog}.{namespace}.{view}")
        for identifier in catalog.list_tables(namespace):
            catalog.purge_table(identifier)
        catalog.drop_namespace(namespace)
        for key in store.list_keys(""):
            store.delete(key)

    latencies = [f.visible_after or 0.0 for f in landed]
    per_file_own = [r.own / len(r.keys) for r in runs]
    starts = [r.start for r in runs if r.start == r.start]
    files_per_run = [len(r.keys) for r in runs]
    third = max(1, len(landed) // 3)
    backlog_first = max(f.backlog_when_landed for f in landed[:third])
    backlog_last = max(f.backlog_when_landed for f in landed[-third:])
    for f in landed:
        print(f"{f.key}: visible after {f.visible_after:.2f} s (backlog {f.backlog_when_landed})")
    minutes = (landed[-1].at - landed[0].at) / 60
    table_md = "\n".join(
        [
            "## Latency on the real stack"
            + ("" if layout == "tickhouse" else f" ({layout} files)"),
            "",
            f"- Command: `make bench-latency` ({len(landed)} files of ~{args.ticks:,} ticks of "
            f"the `{args.profile}` layout"
            + (" as exchanges send it (bench/exchange_fixml.py)" * (args.shape == "exchange"))
            + f", one every {args.every:g} s for {minutes:.1f} min, "
            f"windows of one trading day; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); "
            f"ingestion: {mode}",
            "- Latency: from the upload into the SeaweedFS landing bucket until Trino's "
            f"`ohlcv_1m` counts every trade landed so far (Trino asked as soon as the catalog "
            f"shows a new `ohlcv_1m` commit, read every {CATALOG_POLL_SECONDS:g} s, plus the "
            "time Trino takes to answer). Own processing: the "
            "run's step (fingerprint, parse, checks, ticks commit, Trino read-back, bars of the "
            "changed minutes), per file. Start-up: a run's launch → its first step (process "
            "start, code location import, run set-up). Backlog: files landed and not yet "
            "visible when a file lands.",
            f"- Load average (1 min) while landing: {min(load):.2f}–{max(load):.2f} "
            f"(2 cores; other work on the machine shows here); niceness of the measured "
            f"processes {os.nice(0)}.",
            "",
            "| landing → bars in Trino p50 / p95 / max | own processing per file p50 / max "
            "| run start-up p50 / max | runs (files per run) "
            "| backlog max, first / last third |",
            "| --- | --- | --- | --- | --- |",
            f"| {statistics.median(latencies):.1f} / {percentile(latencies, 0.95):.1f} / "
            f"{max(latencies):.1f} s "
            f"| {statistics.median(per_file_own):.2f} / {max(per_file_own):.2f} s "
            f"| {statistics.median(starts):.2f} / {max(starts):.2f} s "
            f"| {len(runs)} ({min(files_per_run)}–{max(files_per_run)}) "
            f"| {backlog_first} / {backlog_last} |",
        ]
    )
    print(table_md)
    if args.out:
        # One section per layout: a FIXML run does not replace the project layout's figures.
        key = "stack-latency" if layout == "tickhouse" else f"stack-latency-{layout}"
        write_section(Path(args.out), key, table_md)


if __name__ == "__main__":
    main()
