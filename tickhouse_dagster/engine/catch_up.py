"""Many landing files at once — a sensor's burst, `tickhouse ingest`, a backfill — on both cores.

Worker processes parse, check and encode files (the CPU-heavy part); this process looks for
conflicting copies, commits each file in one Iceberg commit and verifies it, in key order, and
reports every file the moment it is settled. A lone file is parsed in this process: starting a
worker would cost more than it saves. A refused file is quarantined with its reason and the
others carry on.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from tickhouse_dagster.engine.commit import (
    CommittedFile,
    TradeCopies,
    commit_parsed,
    discard_data_files,
    trade_copies_of,
    verify_commit,
)
from tickhouse_dagster.engine.feed import Feed
from tickhouse_dagster.engine.landing_file import (
    LandingAddress,
    ParsedFile,
    Refusal,
    Staging,
    parse_landing_file,
)
from tickhouse_dagster.storage.lakehouse import Lakehouse, LakehouseAddress
from tickhouse_dagster.storage.landing import LandingStore
from tickhouse_dagster.storage.quarantine import QuarantineNote, quarantine


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


def settle(house: Lakehouse, store: LandingStore, parsed: ParsedFile) -> FileOutcome:
    """Conflict check, commit and verification of one parsed file (in the committing process)."""
    outcome = FileOutcome(parsed)
    if parsed.ok:
        assert parsed.staged is not None
        outcome.copies = trade_copies_of(house, parsed.key, parsed.staged)
        if not outcome.copies.conflicts.passed:
            parsed.refusal = Refusal.of_findings(outcome.copies.conflicts, "conflicts")
    if not parsed.ok:
        discard_data_files(house, parsed)
        outcome.quarantined_at, outcome.quarantine_error = set_aside(store, parsed)
    else:
        commit = commit_parsed(house, parsed)
        outcome.committed = verify_commit(house, parsed, commit)
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
) -> Iterator[FileOutcome]:
    """Ingest `keys` (see the module docstring); yields each file's outcome, in key order, as
    soon as it is settled (a consumer records it before the next file commits)."""
    started = time.perf_counter()
    house = lakehouse.open()
    house.ensure_tables()
    store = landing.open()
    parse = partial(
        parse_landing_file,
        landing,
        feed=feed,
        encode_for=lakehouse,
        forced_profile=forced_profile,
    )
    uris = [staging.uri_for(key) for key in keys]
    workers = min(workers or os.cpu_count() or 1, len(keys))
    with _parsed(parse, keys, uris, workers) as parsed_files:
        for parsed in parsed_files:
            outcome = settle(house, store, parsed)
            outcome.seconds = time.perf_counter() - started
            yield outcome


def ingest_files(keys: Sequence[str], **options: Any) -> list[FileOutcome]:
    """`iter_ingest_files`, all of it."""
    return list(iter_ingest_files(keys, **options))


class _parsed:
    """Parsed files in key order: from a pool of workers, or in this process for one worker."""

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

    def __enter__(self) -> Iterator[ParsedFile]:
        if self._pool is None:
            return (
                self._parse(k, staging_uri=u) for k, u in zip(self._keys, self._uris, strict=True)
            )
        return iter(self._pool.map(_call, [self._parse] * len(self._keys), self._keys, self._uris))

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


def _call(parse: Callable[..., ParsedFile], key: str, uri: str) -> ParsedFile:
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
