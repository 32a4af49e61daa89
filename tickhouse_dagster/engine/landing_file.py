"""One landing file through parsing and the checks that decide whether it may go in.

`parse_landing_file` runs where the CPU is (a worker process, or the run's own): it reads the
file once while hashing it, parses it into staging (the compiled fast path when it vouches for
the file, lxml otherwise) and runs the value rules over the parsed rows. When they pass, the
session/tick-grid rule and the file's trade ranges are worked out while (given a lakehouse
address) the rows are encoded as the ticks table's Parquet data files, ready for the committer.
Bad input comes back as a `Refusal` naming the file, record, line, field and reason; nothing of
it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.manifest import DataFile

from tickhouse_dagster.engine.feed import SNIFF_BYTES, Feed
from tickhouse_dagster.market.corrections import has_corrections, is_correction
from tickhouse_dagster.parsing import TickFileError
from tickhouse_dagster.parsing.profiles import ProfileError
from tickhouse_dagster.quality.findings import Findings
from tickhouse_dagster.quality.tick_rules import (
    check_session_and_grid,
    check_tick_values,
    file_trading_day,
)
from tickhouse_dagster.quality.trade_ranges import file_id_ranges
from tickhouse_dagster.storage.lakehouse import Lakehouse, LakehouseAddress
from tickhouse_dagster.storage.landing import LandingFile, LandingStore, landing_store
from tickhouse_dagster.storage.staging import StagedTicks, stage_tick_file


@dataclass(frozen=True)
class LandingAddress:
    """What another process needs to open the same landing store (clients do not pickle)."""

    uri: str
    s3_endpoint: str | None = None
    region: str | None = None

    def open(self) -> LandingStore:
        return landing_store(self.uri, s3_endpoint=self.s3_endpoint, region=self.region)


class HashingReader:
    """Passes bytes through while hashing them, so the checksum is of exactly what was parsed."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0

    def __enter__(self) -> HashingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def peek(self, n: int = 0) -> bytes:
        peeked: bytes = self._stream.peek(n)  # type: ignore[attr-defined]  # only buffered streams are passed
        return peeked


@dataclass(frozen=True)
class Fingerprint:
    """A landing file read through once: its version and size, the checksum of its bytes, and
    its first `SNIFF_BYTES` (what recognising its profile needs)."""

    file: LandingFile
    sha256: str
    head: bytes


def fingerprint(store: LandingStore, key: str) -> Fingerprint:
    """Read `key` through once, hashing it (the raw file's own asset records it before any
    parsing)."""
    file = store.stat(key)
    with HashingReader(store.open(key)) as reader:
        head = reader.read(SNIFF_BYTES)
        while reader.read(1 << 20):
            pass
    return Fingerprint(file, reader.sha256.hexdigest(), head)


class _Replay(io.RawIOBase):
    """Bytes already read from a stream, then the rest of the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(buffer)  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        self._rest.close()
        super().close()


@dataclass(frozen=True)
class Refusal:
    """Why a file cannot go in. `stage`: which rule refused it (parse, tick_values, conflicts)."""

    stage: str
    reason: str
    record: int | None = None
    line: int | None = None
    field: str | None = None

    @classmethod
    def of_error(cls, error: TickFileError | ProfileError, stage: str = "parse") -> Refusal:
        return cls(
            stage,
            str(error),
            **{name: getattr(error, name, None) for name in ("record", "line", "field")},
        )

    @classmethod
    def of_findings(cls, findings: Findings, stage: str) -> Refusal:
        return cls(stage, "; ".join(findings.examples[:3]) + f" ({findings.summary()})")


@dataclass
class ParsedFile:
    """What parsing made of one landing file version."""

    key: str
    version: str
    size: int
    profile: str = ""
    sha256: str = ""
    staged: StagedTicks | None = None
    values: Findings | None = None  # contract values: blocking
    session_grid: Findings | None = None  # session and tick grid: a warning
    data_files: list[DataFile] | None = None  # encoded, not committed (None: commit from staging)
    refusal: Refusal | None = None

    @property
    def ok(self) -> bool:
        return self.refusal is None


def check_values(staged: StagedTicks, feed: Feed) -> Findings:
    """The contract values of a file's parsed rows (blocking: a finding refuses the file)."""
    return check_tick_values(staged.batches(), feed.venues, file_trading_day(staged.batches()))


def new_trades(staged: StagedTicks) -> Iterator[pa.Table]:
    """The file's rows that report trades (not its cancels / replaces), with their record."""
    for batch in staged.batches():
        table = pa.Table.from_batches([batch])
        if has_corrections(table["trans_type"]):
            table = table.filter(pc.invert(is_correction(table["trans_type"])))
        yield table


def _encode_while_checking(
    parsed: ParsedFile, staged: StagedTicks, feed: Feed, house: Lakehouse
) -> None:
    """The file's data files encoded while the rest of it is checked (session and grid, trade
    ranges): Parquet's encoder and DuckDB both let go of the GIL, and a lone pushed file leaves
    a core idle. Only a file whose values passed gets here, so a refused file writes nothing."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        encoding = pool.submit(house.write_file_ticks, parsed.key, staged.batches())
        try:
            parsed.session_grid = check_session_and_grid(staged.batches(), feed.venues)
            staged.id_ranges = file_id_ranges(staged.dataset())
        except BaseException:
            # The check's error is the one to report; data files it leaves are not kept.
            with contextlib.suppress(Exception):
                parsed.data_files = encoding.result()
                discard_data_files(house, parsed)
            raise
        parsed.data_files = encoding.result()


def parse_landing_file(
    landing: LandingAddress | LandingStore,
    key: str,
    *,
    feed: Feed,
    staging_uri: str,
    encode_for: LakehouseAddress | None = None,
    forced_profile: str | None = None,
) -> ParsedFile:
    """Parse and check one landing file (see the module docstring). Transient storage errors
    propagate (the caller retries); bad input never does: it is the `refusal`."""
    store = landing.open() if isinstance(landing, LandingAddress) else landing
    file = store.stat(key)
    parsed = ParsedFile(key, file.version, file.size)
    readers: list[HashingReader] = []
    # One GET: the profile is chosen from the stream's first bytes, which the parser then reads
    # again from memory; only a second parse (lxml after the fast path) opens the file again.
    first: list[IO[bytes]] = [store.open(key)]
    head = first[0].read(SNIFF_BYTES)

    def open_source() -> IO[bytes]:
        stream = io.BufferedReader(_Replay(head, first.pop()), 1 << 20) if first else None
        readers.append(HashingReader(stream or store.open(key)))
        # A HashingReader has the read, peek and close a parser uses, not every method of IO.
        return cast(IO[bytes], readers[-1])

    try:
        profile = feed.profile_for(key, head, forced_profile)
        parsed.profile = profile.name
        staged = stage_tick_file(
            open_source,
            source_file=key,
            profile=profile,
            venues=feed.venues,
            uri=staging_uri,
            head=head,
        )
    except (TickFileError, ProfileError) as exc:
        parsed.refusal = Refusal.of_error(exc)
        return parsed
    finally:
        for unused in first:
            unused.close()
    staged.file_version = file.version
    staged.sha256 = parsed.sha256 = readers[-1].sha256.hexdigest()  # the reading that made rows
    parsed.staged = staged
    parsed.values = check_values(staged, feed)
    if not parsed.values.passed:
        parsed.session_grid = check_session_and_grid(staged.batches(), feed.venues)
        parsed.refusal = Refusal.of_findings(parsed.values, "tick_values")
        return parsed
    if encode_for is None:
        parsed.session_grid = check_session_and_grid(staged.batches(), feed.venues)
        staged.id_ranges = file_id_ranges(staged.dataset())
    else:
        _encode_while_checking(parsed, staged, feed, encode_for.open())
    # Arrow's allocator keeps freed memory for reuse; the next step of this process is a commit
    # (or the next file), which needs little of it: give it back rather than carry it.
    pa.default_memory_pool().release_unused()
    return parsed


def discard_data_files(house: Lakehouse, parsed: ParsedFile) -> None:
    """Delete data files encoded for a file that will not commit them."""
    if parsed.data_files:
        io = house.table("ticks").io
        for data_file in parsed.data_files:
            io.delete(data_file.file_path)
    parsed.data_files = None


@dataclass(frozen=True)
class Staging:
    """Where a run stages parsed ticks: one Arrow IPC file per landing file and run."""

    uri: str
    run_id: str

    def uri_for(self, key: str) -> str:
        safe = key.replace("/", "__")
        return f"{self.uri.rstrip('/')}/parsed_ticks/{safe}.{self.run_id[:8]}.arrow"
