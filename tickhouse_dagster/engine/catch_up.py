"""Many landing files at once — a sensor's burst, `tickhouse ingest`, a backfill — on both cores.

Worker processes parse, check and encode files (the CPU-heavy part); this process looks for
conflicting copies, commits each file in one Iceberg commit and verifies it, in key order, and
reports every file the moment it is settled. A lone file, or a few small ones (POOL_MIN_BYTES),
are parsed in this process: starting workers would cost more than they save. A refused file is
quarantined with its reason and the others carry on.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from tickhouse_dagster.engine.commit import (
    CommittedFile,
    TradeCopies,
    commit_group,
    commit_parsed,
    group_copies_of,
    trade_copies_of,
    trade_dates_of,
    verify_commit,
    verify_group,
)
from tickhouse_dagster.engine.feed import Feed
from tickhouse_dagster.engine.landing_file import (
    LandingAddress,
    ParsedFile,
    Refusal,
    Staging,
    discard_data_files,
    parse_landing_file,
)
from tickhouse_dagster.engine.reference_records import ReferenceRecords
from tickhouse_dagster.storage.lakehouse import Lakehouse, LakehouseAddress
from tickhouse_dagster.storage.landing import LandingStore
from tickhouse_dagster.storage.quarantine import QuarantineNote, quarantine
from tickhouse_dagster.storage.trade_index import TradeIndex


@dataclass
class FileOutcome:
    """One landing file, settled: committed and verified, or refused (and quarantined)."""

    parsed: ParsedFile
    copies: TradeCopies | None = None
    committed: CommittedFile | None = None
    quarantined_at: str | None = None
    quarantine_error: str | None = None
    seconds: float = 0.0  # from the start of the batch until this file was settled

    @property
    def key(self) -> str:
        return self.parsed.key

    @property
    def ok(self) -> bool:
        return self.parsed.ok and self.committed is not None and self.committed.rows_match

    @property
    def rows(self) -> int:
        return self.parsed.staged.rows if self.parsed.staged is not None else 0

    def reason(self) -> str:
        if self.parsed.refusal is not None:
            moved = f" (file moved to {self.quarantined_at})" if self.quarantined_at else ""
            return self.parsed.refusal.reason + moved
        if self.committed is not None and not self.committed.rows_match:
            c = self.committed
            return f"the table holds {c.stored_rows} rows of the file, expected {c.expected_rows}"
        return "not settled"


def set_aside(store: LandingStore, parsed: ParsedFile) -> tuple[str | None, str | None]:
    """Quarantine a refused file; (where it now is, None) or (None, why the move failed), in
    which case the file stays where it is and the failure is reported all the same."""
    refusal = parsed.refusal
    assert refusal is not None
    note = QuarantineNote(
        key=parsed.key,
        reason=refusal.reason,
        stage=refusal.stage,
        file_version=parsed.version,
        record=refusal.record,
        line=refusal.line,
        field=refusal.field,
    )
    try:
        return quarantine(store, note), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


# A pool of parse workers costs ≈1 s before its first file (a forkserver importing the engine,
# then each worker's catalog and storage clients) and saves at most the parse of all but one
# file; a 100k-tick file (≈10 MB) parses and checks in ≈0.7 s. Below this much XML, one process
# is done sooner — the few files of a pushed run while a backlog clears, say.
POOL_MIN_BYTES = 48 << 20


def worth_a_pool(store: LandingStore, keys: Sequence[str]) -> bool:
    """Whether `keys` hold enough XML for parse workers to pay off (stat'ing only as many
    files as it takes to know)."""
    total = 0
    for key in keys:
        try:
            total += store.stat(key).size
        except Exception:  # a file that cannot be read is refused by its parse, saying why
            continue
        if total >= POOL_MIN_BYTES:
            return True
    return False


MAX_GROUP_FILES = 64  # files committed together at most
MAX_GROUP_ROWS = 4_000_000  # and their rows


class Committer:
    """Settles parsed files in the committing process. A file that passed its checks waits in a
    group; the group is committed in one Iceberg commit when the next parsed file is not ready
    yet, when it is full, or before a file that must commit on its own (corrections). So a lone
    file commits at once, while a burst pays one commit (and the table one snapshot) per group,
    not per file: per-file commits made the 400th file of a day cost 7.6× the first (every
    commit and lookup reads the table's growing metadata). Each file's rows are still replaced
    whole, and each file is verified on its own."""

    def __init__(
        self,
        house: Lakehouse,
        store: LandingStore,
        records: ReferenceRecords,
        index: TradeIndex | None = None,
    ) -> None:
        self.house, self.store, self.records = house, store, records
        # Kept across the batch: each group reads it once.
        self.index = index or TradeIndex(house)
        self.pending: list[ParsedFile] = []

    def offer(self, parsed: ParsedFile) -> list[FileOutcome]:
        """Take one parsed file; returns the outcomes settled by it (a refusal, or a group
        committed before a file that commits alone)."""
        if not parsed.ok:
            return [self._refuse(parsed, None)]
        assert parsed.staged is not None
        days = parsed.staged.trade_date_values()
        if parsed.data_files is None or self.house.corrections_for_days(days).num_rows:
            settled = self.flush()
            copies = trade_copies_of(self.house, self.index, parsed.key, parsed.staged)
            if not copies.conflicts.passed:
                parsed.refusal = Refusal.of_findings(copies.conflicts, "conflicts")
                return [*settled, self._refuse(parsed, copies)]
            commit = commit_parsed(self.house, self.index, parsed)
            self.records.record_ticks({parsed.key: parsed.staged.venues})
            outcome = FileOutcome(parsed, copies, verify_commit(self.house, parsed, commit))
            parsed.staged.delete()
            return [*settled, outcome]
        self.pending.append(parsed)
        rows = sum(p.staged.rows for p in self.pending if p.staged is not None)
        full = len(self.pending) >= MAX_GROUP_FILES or rows >= MAX_GROUP_ROWS
        return self.flush() if full else []

    def flush(self) -> list[FileOutcome]:
        """Check the waiting group for copies (one table lookup for the group; a file is also
        checked against the group's files before it), commit the files that pass in one commit
        and verify each of them."""
        if not self.pending:
            return []
        group, self.pending = self.pending, []
        copies_of = group_copies_of(self.house, self.index, group)
        outcomes: list[FileOutcome] = []
        accepted: list[tuple[ParsedFile, TradeCopies]] = []
        for parsed in group:
            copies = copies_of[parsed.key]
            if copies.conflicts.passed:
                accepted.append((parsed, copies))
            else:
                parsed.refusal = Refusal.of_findings(copies.conflicts, "conflicts")
                outcomes.append(self._refuse(parsed, copies))
        if not accepted:
            return outcomes
        files = [parsed for parsed, _ in accepted]
        keys = [p.key for p in files]
        days = trade_dates_of([p.staged for p in files if p.staged is not None])
        before = self.house.file_totals(keys, days, None) if len(files) > 1 else {}
        commit = commit_group(self.house, self.index, files)
        self.records.record_ticks({p.key: p.staged.venues for p in files if p.staged is not None})
        verified = verify_group(self.house, files, commit)
        for (parsed, copies), committed in zip(accepted, verified, strict=True):
            if len(files) > 1:  # the file's own share of the group's commit
                written = sum(f.record_count for f in parsed.data_files or [])
                mine = replace(commit, rows_written=written, rows_removed=before[parsed.key][0])
                committed = replace(committed, commit=mine)
            outcomes.append(FileOutcome(parsed, copies, committed))
            if parsed.staged is not None:
                parsed.staged.delete()
        return outcomes

    def _refuse(self, parsed: ParsedFile, copies: TradeCopies | None) -> FileOutcome:
        discard_data_files(self.house, parsed)
        outcome = FileOutcome(parsed, copies)
        outcome.quarantined_at, outcome.quarantine_error = set_aside(self.store, parsed)
        if parsed.staged is not None:
            parsed.staged.delete()
        return outcome


def iter_ingest_files(
    keys: Sequence[str],
    *,
    landing: LandingAddress,
    lakehouse: LakehouseAddress,
    feed: Feed,
    staging: Staging,
    forced_profile: str | None = None,
    workers: int | None = None,
    index: TradeIndex | None = None,
    records: ReferenceRecords | None = None,
) -> Iterator[FileOutcome]:
    """Ingest `keys` (see the module docstring); yields each file's outcome as soon as it is
    settled (a consumer records it before the next group commits). `index`: the trade index
    to keep the ranges read in (a caller that builds the touched days' bars next reuses them;
    the index drops them itself if another writer commits ticks meanwhile). `records`: where
    the files' reference-data records are written; the caller waits for them (after its own
    work: its bars); without it they are waited for before the last outcome's iteration ends."""
    started = time.perf_counter()
    house = lakehouse.open()
    house.ensure_tables()
    store = landing.open()
    with ExitStack() as own:
        if records is None:  # this call's own, waited for when its last outcome is out
            records = own.enter_context(ReferenceRecords(house, feed.venues))
        committer = Committer(house, store, records, index)
        parse = partial(
            parse_landing_file,
            landing,
            feed=feed,
            encode_for=lakehouse,
            forced_profile=forced_profile,
        )
        uris = [staging.uri_for(key) for key in keys]
        if workers is None:  # one per core, when there is enough to parse (asked for: as asked)
            workers = (os.cpu_count() or 1) if worth_a_pool(store, keys) else 1
        workers = min(workers, len(keys))

        def stamped(outcomes: list[FileOutcome]) -> list[FileOutcome]:
            for outcome in outcomes:
                outcome.seconds = time.perf_counter() - started
            return outcomes

        with _parsed(parse, keys, uris, workers) as parsed_files:
            for ready, parsed in parsed_files:
                if not ready:  # the workers are behind: commit what is waiting meanwhile
                    yield from stamped(committer.flush())
                yield from stamped(committer.offer(parsed()))
        yield from stamped(committer.flush())


def ingest_files(keys: Sequence[str], **options: Any) -> list[FileOutcome]:
    """`iter_ingest_files`, all of it, in the order of `keys`."""
    order = {key: index for index, key in enumerate(keys)}
    return sorted(iter_ingest_files(keys, **options), key=lambda o: order[o.key])


class _parsed:
    """Parsed files in key order, each as (ready now?, get it): from a pool of workers, or in
    this process for one worker (counted as ready: no worker is busy meanwhile, so a group
    waits for its size limit or the end)."""

    def __init__(
        self,
        parse: Callable[..., ParsedFile],
        keys: Sequence[str],
        uris: Sequence[str],
        workers: int,
    ) -> None:
        self._pool = (
            ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context())
            if workers > 1
            else None
        )
        self._parse, self._keys, self._uris = parse, keys, uris

    def __enter__(self) -> Iterator[tuple[bool, Callable[[], ParsedFile]]]:
        if self._pool is None:
            return (
                (True, partial(self._parse, key, staging_uri=uri))
                for key, uri in zip(self._keys, self._uris, strict=True)
            )
        env = {n: v for n, v in os.environ.items() if n.startswith(_PASSED_ENV_PREFIXES)}
        futures = [
            self._pool.submit(_call, self._parse, key, uri, env)
            for key, uri in zip(self._keys, self._uris, strict=True)
        ]
        return ((future.done(), future.result) for future in futures)

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a clean server process, not from this one: a process that has used
    Arrow's, polars' or DuckDB's thread pools cannot be forked safely (its workers crash), and a
    Dagster run process has. The server imports the parser once; each worker forks from it."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tickhouse_dagster.engine.landing_file"])
    return context


# The worker's environment is the forkserver's, fixed when it first started: the settings the
# storage clients read from the environment (S3 keys, pyiceberg catalog config) go with each task.
_PASSED_ENV_PREFIXES = ("AWS_", "PYICEBERG_", "TICKHOUSE_")


def _call(parse: Callable[..., ParsedFile], key: str, uri: str, env: dict[str, str]) -> ParsedFile:
    for name in [n for n in os.environ if n.startswith(_PASSED_ENV_PREFIXES) and n not in env]:
        del os.environ[name]
    os.environ.update(env)
    return parse(key, staging_uri=uri)


def total_rows(outcomes: Iterable[FileOutcome]) -> int:
    return sum(o.rows for o in outcomes if o.ok)


@dataclass
class Progress:
    """How far a batch has got, for a person watching: files, ticks/s, time left."""

    total_files: int
    files: int = 0
    ticks: int = 0
    refused: int = 0
    seconds: float = 0.0

    def add(self, outcome: FileOutcome) -> None:
        self.files += 1
        self.ticks += outcome.rows if outcome.ok else 0
        self.refused += 0 if outcome.ok else 1
        self.seconds = outcome.seconds

    def line(self) -> str:
        rate = self.ticks / self.seconds if self.seconds else 0.0
        left = self.total_files - self.files
        eta = self.seconds / self.files * left if self.files else 0.0
        refused = f", {self.refused} refused" if self.refused else ""
        return (
            f"{self.files}/{self.total_files} files, {self.ticks:,} ticks, "
            f"{rate:,.0f} ticks/s{refused}, " + (f"ETA {eta:.0f} s" if left else "done")
        )
