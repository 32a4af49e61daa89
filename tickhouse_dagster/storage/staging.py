"""Parse staging: parsed ticks of one landing file, kept as an Arrow IPC file (lz4) between parsing
and the Iceberg commit, so both steps stream and a failed commit can be retried without
re-parsing. IPC rather than Parquet: the file lives for one run, and writing it costs little more
than a copy (Parquet encoding cost ~1.2 s per million ticks)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import fs

from tickhouse_dagster.core.contract import PARSED_TICKS_ARROW
from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.parsing.profiles import Profile
from tickhouse_dagster.parsing.readers import consume_tick_file


@dataclass
class StagedTicks:
    """Handle to the staged Arrow IPC file of one landing file's parsed ticks."""

    uri: str
    rows: int = 0
    trade_dates: list[str] = field(default_factory=list)
    symbols: int = 0
    venues: list[str] = field(default_factory=list)  # the venues the rows name
    parser: str = ""  # which reader produced the rows, and why when the fast path declined
    file_version: str = ""  # the landing file version these ticks were parsed from
    sha256: str = ""  # checksum of exactly the bytes parsed
    # Where its trades lie (quality.trade_ranges.file_id_ranges), worked out by the parsing
    # worker so the committing process only compares ranges: (ranges, repeats).
    id_ranges: tuple[pa.Table, pa.Table] | None = None

    def trade_date_values(self) -> list[date]:
        return [date.fromisoformat(d) for d in self.trade_dates]

    def _open(self) -> pa.ipc.RecordBatchFileReader:
        filesystem, path = fs.FileSystem.from_uri(self.uri)
        return pa.ipc.open_file(filesystem.open_input_file(path))

    def dataset(self) -> ds.Dataset:
        filesystem, path = fs.FileSystem.from_uri(self.uri)
        return ds.dataset([path], format="ipc", filesystem=filesystem)

    def batches(self) -> Iterator[pa.RecordBatch]:
        reader = self._open()
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)

    def delete(self) -> None:
        """Remove the staged file once its rows are committed or refused (idempotent)."""
        filesystem, path = fs.FileSystem.from_uri(self.uri)
        with contextlib.suppress(FileNotFoundError):
            filesystem.delete_file(path)

    def read(self) -> pa.Table:
        return self._open().read_all().cast(PARSED_TICKS_ARROW)


def stage_ticks(batches: Iterable[pa.RecordBatch], uri: str) -> StagedTicks:
    """Write batches to `uri` (local path or s3://) as one Arrow IPC file, summarising them."""
    filesystem, path = fs.FileSystem.from_uri(uri)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    staged = StagedTicks(uri)
    dates: set[str] = set()
    symbols: set[str] = set()
    venues: set[str] = set()
    try:
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        sink = filesystem.open_output_stream(path)
        with sink, pa.ipc.new_file(sink, PARSED_TICKS_ARROW, options=options) as writer:
            for batch in batches:
                writer.write_batch(batch)
                staged.rows += batch.num_rows
                dates.update(str(d) for d in pc.unique(batch["trade_date"]).to_pylist())
                symbols.update(pc.unique(batch["symbol"]).to_pylist())
                venues.update(pc.unique(batch["venue"]).to_pylist())
    except BaseException:
        filesystem.delete_file(path)  # a half-parsed file must never look staged
        raise
    staged.trade_dates = sorted(dates)
    staged.symbols = len(symbols)
    staged.venues = sorted(v for v in venues if v is not None)
    return staged


def stage_tick_file(
    open_source: Callable[[], IO[bytes]],
    *,
    source_file: str,
    profile: Profile,
    venues: Mapping[str, Venue],
    uri: str,
    head: bytes | None = None,
) -> StagedTicks:
    """Parse one tick file into staging (the fast path when it vouches for the file, else lxml);
    `head`: its first bytes, when the caller has read them."""
    staged, parser = consume_tick_file(
        open_source,
        lambda batches: stage_ticks(batches, uri),
        source_file=source_file,
        profile=profile,
        venues=venues,
        head=head,
    )
    staged.parser = parser
    return staged
