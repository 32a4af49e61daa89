"""Parse staging: parsed ticks of one landing file, kept as Parquet between parsing and the
Iceberg commit, so both steps stream and a failed commit can be retried without re-parsing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs

from tickhouse_dagster.contract import PARSED_TICKS_ARROW


@dataclass
class StagedTicks:
    """Handle to the staged Parquet file of one landing file's parsed ticks."""

    uri: str
    rows: int = 0
    trade_dates: list[str] = field(default_factory=list)
    symbols: int = 0
    file_version: str = ""  # the landing file version these ticks were parsed from
    sha256: str = ""  # checksum of exactly the bytes parsed

    def trade_date_values(self) -> list[date]:
        return [date.fromisoformat(d) for d in self.trade_dates]

    def _open(self) -> pq.ParquetFile:
        filesystem, path = fs.FileSystem.from_uri(self.uri)
        return pq.ParquetFile(filesystem.open_input_file(path))

    def batches(self, rows: int = 1_000_000) -> Iterator[pa.RecordBatch]:
        yield from self._open().iter_batches(batch_size=rows)

    def read(self) -> pa.Table:
        return self._open().read().cast(PARSED_TICKS_ARROW)


def stage_ticks(batches: Iterable[pa.RecordBatch], uri: str) -> StagedTicks:
    """Write batches to `uri` (local path or s3://) as one Parquet file, summarising as it goes."""
    filesystem, path = fs.FileSystem.from_uri(uri)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    staged = StagedTicks(uri)
    dates: set[str] = set()
    symbols: set[str] = set()
    try:
        with pq.ParquetWriter(filesystem.open_output_stream(path), PARSED_TICKS_ARROW) as writer:
            for batch in batches:
                writer.write_batch(batch)
                staged.rows += batch.num_rows
                dates.update(str(d) for d in pc.unique(batch["trade_date"]).to_pylist())
                symbols.update(pc.unique(batch["symbol"]).to_pylist())
    except BaseException:
        filesystem.delete_file(path)  # a half-parsed file must never look staged
        raise
    staged.trade_dates = sorted(dates)
    staged.symbols = len(symbols)
    return staged
