"""The `tickhouse` command: generate sample data, ingest the landing area once, check the setup."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from tickhouse_dagster.settings import PROJECT_ROOT, current

if TYPE_CHECKING:  # the commands import their modules lazily: `tickhouse --help` stays fast
    from tickhouse_dagster.storage.reference_lineage import StaleReport, TicksMode

DAGSTER_INSTANCE_TEMPLATE = PROJECT_ROOT / "infra" / "dagster" / "dagster.local.yaml"


def ensure_dagster_home() -> Path:
    """$DAGSTER_HOME (default .tickhouse/dagster), with the project's instance config."""
    home = current().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and DAGSTER_INSTANCE_TEMPLATE.exists():
        shutil.copyfile(DAGSTER_INSTANCE_TEMPLATE, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def cmd_generate(args: argparse.Namespace) -> int:
    from tickhouse_dagster.defs.resources import resolved_resources
    from tickhouse_dagster.sample import SampleSpec, generate

    spec = SampleSpec(
        days=args.days,
        symbols=args.symbols,
        ticks_per_day=args.ticks_per_day,
        files_per_day=args.files_per_day,
        profile=args.profile,
        seed=args.seed,
        gzip=args.gzip,
        start_date=date.fromisoformat(args.start_date),
    )
    if args.out:  # a plain folder
        out = Path(args.out)
        if args.if_empty and out.exists() and any(out.rglob("*.xml*")):
            print(f"{out} already holds tick files; nothing generated")
            return 0
        files = generate(spec, out)
        where = str(out)
    else:  # the configured landing store, local folder or S3
        store = resolved_resources()["landing"].store()
        if args.if_empty and next(iter(store.iter_files()), None) is not None:
            print(f"{store.uri} already holds tick files; nothing generated")
            return 0
        with tempfile.TemporaryDirectory() as scratch:
            files = generate(spec, Path(scratch))
            for file in files:
                store.write(file.relative_to(scratch).as_posix(), file.read_bytes())
        where = store.uri
    print(f"wrote {len(files)} files, {spec.days * spec.ticks_per_day:,} ticks under {where}")
    return 0


class _TerminalProgress(logging.Handler):
    """The batch's progress line, rewritten in place on a terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write("\r\x1b[2K" + record.getMessage())
        sys.stderr.flush()


def cmd_ingest(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    from tickhouse_dagster.cli.ingest import ingest_landing

    progress = logging.getLogger("tickhouse.progress")
    handler = _TerminalProgress() if sys.stderr.isatty() else None
    if handler is not None:
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
    try:
        report = ingest_landing(profile=args.profile, reingest=args.all, keys=args.keys or None)
    finally:
        if handler is not None:
            progress.removeHandler(handler)
            sys.stderr.write("\n")
    print(report.render())
    return 0 if report.ok else 1


def cmd_quarantine(args: argparse.Namespace) -> int:
    from tickhouse_dagster.defs.resources import resolved_resources
    from tickhouse_dagster.storage.landing import LandingKeyError
    from tickhouse_dagster.storage.quarantine import QuarantineError, quarantined, release

    store = resolved_resources()["landing"].store()
    if args.release:
        try:
            for key in args.release:
                release(store, key)
                print(f"released {key}: back in the landing area, the sensor ingests it again")
        except (QuarantineError, LandingKeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    notes = list(quarantined(store))
    for note in notes:
        print(f"{note.key}  [{note.stage}, {note.quarantined_at}]\n    {note.reason}")
    print(f"{len(notes)} file(s) in quarantine" + (" (release: --release KEY)" if notes else ""))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from tickhouse_dagster.cli.doctor import run_doctor

    ensure_dagster_home()
    return run_doctor()


def _stale_report(ticks: TicksMode = "check") -> StaleReport:
    from tickhouse_dagster.defs.resources import resolved_resources
    from tickhouse_dagster.storage.reference_lineage import find_stale

    resources = resolved_resources()
    house = resources["lakehouse"].lakehouse()
    return find_stale(house, resources["feed"].venues(), ticks=ticks)


def cmd_stale(args: argparse.Namespace) -> int:
    report = _stale_report()
    print(report.render())
    return 1 if report.stale else 0


def cmd_rebuild_bars(args: argparse.Namespace) -> int:
    if bool(args.stale) == bool(args.days):
        print("error: give --stale or trade dates (YYYY-MM-DD), one of them", file=sys.stderr)
        return 2
    ensure_dagster_home()
    from dagster import DagsterInstance

    from tickhouse_dagster.cli.ingest import rebuild_bars
    from tickhouse_dagster.defs.partitions import without_bars_partition

    report = _stale_report(ticks="count")
    days = [d.isoformat() for d in report.days()] if args.stale else args.days
    for venue, files in sorted(report.ticks_unchecked.items()):
        # Bars are rebuilt from the ticks as stored: moved trade dates need the files first.
        print(
            f"note: {files} file(s) were parsed under {venue}'s former trade-date rule; "
            "re-ingest those `tickhouse stale` names, which rebuilds their days' bars"
        )
    if not days:
        print("no stale bars: nothing rebuilt")
        return 0
    instance = DagsterInstance.get()
    outside = without_bars_partition(days)
    refused = [(f"bars {d}", reason) for d, reason in outside.items()]
    rebuilt, failed = rebuild_bars(instance, [d for d in days if d not in outside])
    print(f"bars rebuilt for {len(rebuilt)} trade date(s): {', '.join(rebuilt) or '-'}")
    for what, reason in refused + failed:
        print(f"  FAILED {what}: {reason}")
    return 1 if refused or failed else 0


def cmd_metrics(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from tickhouse_dagster.observability.metrics import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server, _ = serve(args.host, args.port, args.cache_seconds)
    print(f"pipeline metrics at http://{args.host}:{args.port}/metrics", flush=True)
    stopping = threading.Event()
    # Own handlers, not the default actions: a process started by a parent that ignores
    # SIGTERM/SIGINT inherits "ignore" and could then only be stopped by SIGKILL.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.wait(0.5):  # the server runs in its own thread; wake to see signals
        pass
    server.shutdown()
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    from tickhouse_dagster.listener import main as listen

    return listen(args.listener_args)


def cmd_view(args: argparse.Namespace) -> int:
    from tickhouse_dagster import view

    app = Path(view.__file__).with_name("app.py")
    argv = [sys.executable, "-m", "streamlit", "run", str(app)]
    argv += [f"--server.address={args.host}", f"--server.port={args.port}"]
    argv += ["--server.headless=true", "--browser.gatherUsageStats=false"]
    print(f"quick look at http://{args.host}:{args.port}", flush=True)
    os.execv(sys.executable, argv)  # streamlit owns the process (and Ctrl-C) from here


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickhouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write realistic KRX-like sample tick files")
    gen.add_argument("--days", type=int, default=1)
    gen.add_argument("--symbols", type=int, default=5)
    gen.add_argument("--ticks-per-day", type=int, default=50_000, help="all symbols together")
    gen.add_argument("--files-per-day", type=int, default=7, help="collection windows per day")
    gen.add_argument("--out", help="a folder (default: the configured landing store)")
    gen.add_argument("--profile", choices=["tickhouse", "fixml"], default="tickhouse")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--gzip", action="store_true")
    gen.add_argument("--start-date", default="2024-01-02", help="first trade date")
    gen.add_argument("--if-empty", action="store_true", help="only if --out has no tick files")
    gen.set_defaults(func=cmd_generate)

    ing = sub.add_parser("ingest", help="ingest every landing file not yet ingested, then bars")
    ing.add_argument("--profile", help="force this input profile for every file")
    ing.add_argument("--all", action="store_true", help="re-ingest files already ingested")
    ing.add_argument("keys", nargs="*", help="only these landing keys")
    ing.set_defaults(func=cmd_ingest)

    qua = sub.add_parser("quarantine", help="list quarantined files and why; release them")
    qua.add_argument("--release", nargs="+", metavar="KEY", help="move these back to landing")
    qua.set_defaults(func=cmd_quarantine)

    sta = sub.add_parser(
        "stale", help="bars and ticks built under venue reference data that has since changed"
    )
    sta.set_defaults(func=cmd_stale)

    reb = sub.add_parser("rebuild-bars", help="rebuild the bars of stale or given trade dates")
    reb.add_argument("--stale", action="store_true", help="exactly the days `stale` lists")
    reb.add_argument("days", nargs="*", help="these trade dates (YYYY-MM-DD)")
    reb.set_defaults(func=cmd_rebuild_bars)

    doc = sub.add_parser("doctor", help="show the configuration and check every store")
    doc.set_defaults(func=cmd_doctor)

    met = sub.add_parser("metrics", help="serve the pipeline's figures to Prometheus (/metrics)")
    met.add_argument("--host", default="127.0.0.1")
    met.add_argument("--port", type=int, default=19464)
    met.add_argument("--cache-seconds", type=float, default=10.0, help="reuse figures this long")
    met.set_defaults(func=cmd_metrics)

    lis = sub.add_parser(
        "listen",
        help="SeaweedFS landing listener: queue new landing files for the push sensor",
        add_help=False,  # its own options: `tickhouse listen --help`
    )
    lis.add_argument("listener_args", nargs=argparse.REMAINDER)
    lis.set_defaults(func=cmd_listen)

    view = sub.add_parser("view", help="candlestick quick look at the bars (Streamlit)")
    view.add_argument("--host", default="127.0.0.1")
    view.add_argument("--port", type=int, default=8501)
    view.set_defaults(func=cmd_view)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["listen"]:  # its options (and --help) are the listener's own
        from tickhouse_dagster.listener import main as listen

        return listen(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
