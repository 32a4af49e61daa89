"""The record a ticks commit leaves on its `market/ticks` materialization, typed.

Written by the Python engine's runs (per-file assets and batch runs alike, `file_reports`) and by
the Spark engine (`defs/spark.py`); read back by the touched-days sensor (which trade dates, from
which snapshot), the ledger (which file version is ingested), the Trino read-back check (which
snapshot) and `tickhouse ingest` (how many rows). Those readers go through `TicksCommit`, never
through the metadata keys.

`trade_dates` is stored as a JSON list. Events written before that held a comma-separated string
("2024-01-02, 2024-01-03"); they stay in existing Dagster instances, so the reader accepts both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import AssetMaterialization, MetadataValue


@dataclass(frozen=True)
class TicksCommit:
    source_file: str
    file_version: str | None
    sha256: str | None
    trade_dates: tuple[str, ...]  # ISO dates, as the staged ticks name them
    snapshot_id: int | None  # None only in a record that never reached the catalog
    rows_written: int | None

    def to_metadata(self) -> dict[str, Any]:
        # The snapshot id is text: a 63-bit id as a JSON number loses digits in the UI.
        metadata: dict[str, Any] = {
            "source_file": self.source_file,
            "trade_dates": MetadataValue.json(list(self.trade_dates)),
            "snapshot_id": str(self.snapshot_id),
        }
        if self.file_version is not None:
            metadata["file_version"] = self.file_version
        if self.sha256 is not None:
            metadata["sha256"] = self.sha256
        if self.rows_written is not None:
            metadata["rows_written"] = MetadataValue.int(self.rows_written)
        return metadata

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, Any], partition: str | None = None
    ) -> TicksCommit:
        """The record of a materialization's metadata (MetadataValues or plain values);
        `partition` (the landing key) stands in for an event without `source_file`."""
        values = {k: getattr(v, "value", v) for k, v in metadata.items()}
        rows = values.get("rows_written")
        return cls(
            source_file=str(values.get("source_file") or partition or ""),
            file_version=_text(values.get("file_version")),
            sha256=_text(values.get("sha256")),
            trade_dates=_trade_dates(values.get("trade_dates")),
            snapshot_id=_snapshot(values.get("snapshot_id")),
            rows_written=rows if isinstance(rows, int) else None,
        )

    @classmethod
    def from_materialization(cls, materialization: AssetMaterialization) -> TicksCommit:
        return cls.from_metadata(materialization.metadata, materialization.partition)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _trade_dates(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(day) for day in value)
    # The comma-separated text of events written before the JSON list.
    return tuple(day.strip() for day in str(value or "").split(",") if day.strip())


def _snapshot(value: object) -> int | None:
    text = "" if value is None else str(value)
    return int(text) if text.lstrip("-").isdigit() else None
