"""Latency on the real stack: a 100,000-tick XML file lands in the SeaweedFS bucket; how long until
its bars are visible in Trino, with the sensor at its default interval — and how much of that is
the project's own processing (the ingest and bar runs' steps) rather than waiting for a tick,
queueing and process start-up.

Needs the stack (`infra/local/stack up`) and its environment (`eval "$(infra/local/stack env)"`).
Starts `dagster dev` on its own port with a temporary DAGSTER_HOME, namespace and landing prefix.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from bench.report import write_section
from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster.devserver import dagster_home, running_dagster_dev
from tickhouse_dagster.sample.generator import SampleSpec, generate


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


def step_seconds(instance: DagsterInstance, run_id: str) -> dict[str, float]:
    return {
        s.step_key: (s.end_time or 0) - (s.start_time or 0)
        for s in instance.get_run_step_stats(run_id)
    }


def _batch_keys(run_config: dict) -> list[str]:
    ops = run_config.get("ops", {}).get("ingest_landing_files", {})
    return ops.get("config", {}).get("keys", [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=3, help="files dropped one after another")
    parser.add_argument("--ticks", type=int, default=100_000)
    parser.add_argument("--interval", type=int, default=30, help="sensor interval, seconds")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--out", help="report file to update (its stack-latency section)")
    parser.add_argument(
        "--poll",
        action="store_true",
        help="without the landing listener (unset TICKHOUSE_FILER_GRPC): the polling sensor only",
    )
    args = parser.parse_args()
    if args.poll:
        os.environ.pop("TICKHOUSE_FILER_GRPC", None)
    mode = "push (landing listener)" if os.environ.get("TICKHOUSE_FILER_GRPC") else "polling"

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

    port = 3400 + int(run[:2], 16) % 100
    rows = []
    per_step: dict[str, list[float]] = {}
    try:
        with running_dagster_dev(env, port, home / "dagster-dev.log") as url:
            instance = DagsterInstance.from_config(str(home / "dagster"))
            wait("the Dagster webserver", lambda: _answers(f"{url}/server_info"), 180, every=1)
            time.sleep(args.interval)  # the daemon has started its sensors and ticked once
            sample = home / "sample"
            for number in range(args.files):
                spec = SampleSpec(
                    symbols=10, ticks_per_day=args.ticks, files_per_day=1, seed=number
                )
                spec = SampleSpec(
                    **{**spec.__dict__, "start_date": spec.start_date.replace(day=2 + number)}
                )
                [path] = generate(spec, sample / str(number))
                key = f"KRX/{number}/{path.name}"
                day = spec.start_date.isoformat()
                data = path.read_bytes()
                landed, landed_wall = time.monotonic(), time.time()
                store.write(key, data)

                def visible(day: str = day) -> bool:
                    table = f"{trino.catalog}.{namespace}.ohlcv_1m"
                    [(count,)] = trino.query(
                        f"SELECT coalesce(sum(trade_count), 0) FROM {table} "
                        f"WHERE trade_date = DATE '{day}'"
                    )
                    return count == args.ticks

                wait(f"bars of {key} in Trino", visible, timeout=args.timeout)
                latency = time.monotonic() - landed

                def finished_runs(key: str = key, day: str = day):
                    done = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
                    # Ingest runs are batch runs (their config names the files), bar runs are
                    # partitioned by day.
                    ingest = [r for r in done if key in _batch_keys(r.dagster_run.run_config)]
                    bars = [r for r in done if r.dagster_run.tags.get("dagster/partition") == day]
                    return (ingest[0], bars[0]) if ingest and bars else None

                ingest, bars = wait("the ingest and bar runs to finish", finished_runs, timeout=120)
                requested = ingest.create_timestamp.timestamp() - landed_wall
                started = (ingest.start_time or 0) - landed_wall
                steps = step_seconds(instance, ingest.dagster_run.run_id) | step_seconds(
                    instance, bars.dagster_run.run_id
                )
                own = sum(steps.values())
                rows.append((key, latency, own, requested, started))
                for step, seconds in steps.items():
                    per_step.setdefault(step, []).append(seconds)
                print(
                    f"{key}: run requested after {requested:.2f} s, started after "
                    f"{started:.1f} s; visible in Trino after {latency:.1f} s; project steps "
                    f"{own:.2f} s "
                    f"({', '.join(f'{step} {seconds:.2f} s' for step, seconds in steps.items())})",
                    flush=True,
                )
    finally:
        for (view,) in trino.query(
            f"SELECT table_name FROM {trino.catalog}.information_schema.views "
            f"WHERE table_schema = '{namespace}'"
        ):
            trino.query(f"DROP VIEW {trino.catalog}.{namespace}.{view}")
        catalog = resources["lakehouse"].lakehouse().catalog
        for identifier in catalog.list_tables(namespace):
            catalog.purge_table(identifier)
        catalog.drop_namespace(namespace)

    latencies = [r[1] for r in rows]
    own = [r[2] for r in rows]
    requested = [r[3] for r in rows]
    started = [r[4] for r in rows]
    table = "\n".join(
        [
            "## Latency on the real stack",
            "",
            f"- Command: `make bench-latency` ({args.files} files of {args.ticks:,} ticks, one "
            f"trade date each; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
            "- From the upload of an XML file into the SeaweedFS landing bucket until Trino's "
            "`ohlcv_1m` holds all its trades, with `dagster dev` running the sensors; the "
            "project's own processing is the sum of the ingest and bar runs' step times "
            "(parse, checks, commits, bars), without sensor waits, queueing or process start.",
            "",
            "| files | ticks each | ingestion | landing → run requested | landing → run started "
            "| landing → bars in Trino (min / median / max) "
            "| project's own processing (min / median / max) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {len(rows)} | {args.ticks:,} "
            f"| {mode if 'push' in mode else f'polling, {args.interval} s interval'} "
            f"| {min(requested):.2f} / {statistics.median(requested):.2f} / "
            f"{max(requested):.2f} s "
            f"| {min(started):.1f} / {statistics.median(started):.1f} / {max(started):.1f} s "
            f"| {min(latencies):.1f} / {statistics.median(latencies):.1f} / "
            f"{max(latencies):.1f} s "
            f"| {min(own):.2f} / {statistics.median(own):.2f} / {max(own):.2f} s |",
            "",
            "Median time of each step: "
            + ", ".join(
                f"`{step}` {statistics.median(times):.2f} s" for step, times in per_step.items()
            )
            + ".",
        ]
    )
    print(table)
    if args.out:
        write_section(Path(args.out), "stack-latency", table)


if __name__ == "__main__":
    main()
