"""Raw XML → parsed ticks → the Iceberg ticks table, one landing file per partition."""

import hashlib
from typing import IO

import pyarrow.compute as pc
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from tickhouse_dagster.defs.partitions import FILE_VERSION_TAG, landing_files
from tickhouse_dagster.defs.resources import (
    FeedResource,
    LakehouseResource,
    LandingResource,
    StagingResource,
)
from tickhouse_dagster.defs.retries import retry_transient
from tickhouse_dagster.parsing import TickFileError
from tickhouse_dagster.parsing.profiles import ProfileError
from tickhouse_dagster.quality.tick_rules import find_duplicate_trades
from tickhouse_dagster.storage.landing import LandingKeyError, LandingStore
from tickhouse_dagster.storage.quarantine import QuarantineNote, quarantine
from tickhouse_dagster.storage.staging import StagedTicks, stage_tick_file

RAW_TICK_XML = ["landing", "raw_tick_xml"]
PARSED_TICKS = ["staging", "parsed_ticks"]
TICKS = ["market", "ticks"]


class ParseConfig(Config):
    profile: str | None = None  # force an input profile instead of recognising it


class _HashingReader:
    """Passes bytes through while hashing them, so the checksum is of exactly what was parsed."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0

    def __enter__(self) -> "_HashingReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def peek(self, n: int = 0) -> bytes:
        return self._stream.peek(n)  # type: ignore[attr-defined]


def _bad_input(error: Exception, key: str, quarantined_at: str | None = None) -> Failure:
    """A permanent input failure: shown with its reason, and never retried."""
    where = {
        name: getattr(error, name)
        for name in ("record", "line", "field", "reason")
        if getattr(error, name, None) is not None
    }
    moved = {"quarantined_at": quarantined_at} if quarantined_at else {}
    return Failure(
        description=str(error) + (f" (file moved to {quarantined_at})" if quarantined_at else ""),
        metadata={"source_file": key, **{k: str(v) for k, v in where.items()}, **moved},
        allow_retries=False,
    )


def set_aside(
    context: AssetExecutionContext | AssetCheckExecutionContext,
    store: LandingStore,
    key: str,
    *,
    reason: str,
    stage: str,
    error: Exception | None = None,
) -> str | None:
    """Quarantine a file that cannot be ingested; returns its new key, or None when the move
    itself failed (logged; the file then stays where it is and the run still fails)."""
    note = QuarantineNote(
        key=key,
        reason=reason,
        stage=stage,
        file_version=context.run.tags.get(FILE_VERSION_TAG, ""),
        **{name: getattr(error, name, None) for name in ("record", "line", "field")},
    )
    try:
        where = quarantine(store, note)
    except Exception as exc:
        context.log.warning(f"could not quarantine {key}: {type(exc).__name__}: {exc}")
        return None
    context.log.warning(f"{key} quarantined at {where}: {reason}")
    return where


@asset(
    key=RAW_TICK_XML,
    partitions_def=landing_files,
    group_name="landing",
    description="An exchange tick file in the landing area (plain or gzip XML), fingerprinted.",
)
def raw_tick_xml(
    context: AssetExecutionContext, landing: LandingResource, feed: FeedResource
) -> MaterializeResult:
    key = context.partition_key
    store = landing.store()
    try:
        with retry_transient(context):
            file = store.stat(key)
            digest = hashlib.sha256()
            with store.open(key) as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
            with store.open(key) as stream:
                profile_name = feed.profile_for(key, stream).name
    except (FileNotFoundError, LandingKeyError) as exc:
        raise _bad_input(exc, key) from exc
    except (ProfileError, TickFileError) as exc:
        context.log.warning(str(exc))  # parsing reports it as the file's failure
        profile_name = "(none recognised)"
    return MaterializeResult(
        metadata={
            "key": key,
            "landing": store.uri,
            "size_bytes": MetadataValue.int(file.size),
            "sha256": digest.hexdigest(),
            "file_version": file.version,
            "profile": profile_name,
        }
    )


@asset(
    key=PARSED_TICKS,
    deps=[RAW_TICK_XML],
    partitions_def=landing_files,
    group_name="ticks",
    description="The file's trade prints in the ticks contract, staged as an Arrow IPC file.",
)
def parsed_ticks(
    context: AssetExecutionContext,
    config: ParseConfig,
    landing: LandingResource,
    feed: FeedResource,
    staging: StagingResource,
) -> Output[StagedTicks]:
    key = context.partition_key
    store = landing.store()
    try:
        with retry_transient(context):  # a network error mid-file is retried, bad bytes are not
            file = store.stat(key)
            with store.open(key) as stream:
                profile = feed.profile_for(key, stream, forced=config.profile)
            readers: list[_HashingReader] = []

            def open_source() -> _HashingReader:
                readers.append(_HashingReader(store.open(key)))
                return readers[-1]

            staged = stage_tick_file(
                open_source,
                source_file=key,
                profile=profile,
                venues=feed.venues(),
                uri=staging.uri_for(key, context.run.run_id),
            )
    except (LandingKeyError, FileNotFoundError) as exc:
        raise _bad_input(exc, key) from exc
    except (TickFileError, ProfileError) as exc:
        where = set_aside(context, store, key, reason=str(exc), stage="parse", error=exc)
        raise _bad_input(exc, key, where) from exc
    staged.file_version = file.version
    staged.sha256 = readers[-1].sha256.hexdigest()  # the reading that produced the rows
    return Output(
        staged,
        metadata={
            "rows": MetadataValue.int(staged.rows),
            "trade_dates": ", ".join(staged.trade_dates),
            "symbols": MetadataValue.int(staged.symbols),
            "profile": profile.name,
            "parser": staged.parser,
            "file_version": file.version,
            "sha256": staged.sha256,
            "staged_at": staged.uri,
        },
    )


@asset(
    key=TICKS,
    partitions_def=landing_files,
    group_name="ticks",
    description="market.ticks in Iceberg: this file's rows replaced in one atomic commit.",
    check_specs=[
        AssetCheckSpec(
            "duplicate_trades",
            asset=TICKS,
            description=(
                "Trades of this file also carried by another row (warn; bars count them once)."
            ),
        ),
        AssetCheckSpec(
            "rows_match_parsed",
            asset=TICKS,
            blocking=True,
            description=(
                "The table holds exactly the parsed rows of this file after the commit "
                "(its cancels and replaces applied)."
            ),
        ),
    ],
)
def ticks(context: AssetExecutionContext, parsed_ticks: StagedTicks, lakehouse: LakehouseResource):
    key = context.partition_key
    house = lakehouse.lakehouse()
    with retry_transient(context):
        commit = house.replace_file_ticks(key, parsed_ticks.batches)
    yield MaterializeResult(
        metadata={
            "rows_written": MetadataValue.int(commit.rows_written),
            "rows_replaced": MetadataValue.int(commit.rows_removed),
            "trade_dates": ", ".join(parsed_ticks.trade_dates),
            "table": commit.table,
            "snapshot_id": str(commit.snapshot_id),
            "commit_attempts": MetadataValue.int(commit.attempts),
            "corrections": MetadataValue.int(commit.corrections),
            "source_file": key,
            "file_version": parsed_ticks.file_version,
            "sha256": parsed_ticks.sha256,
        }
    )
    # What the two checks need of the touched days, not whole rows.
    days = house.ticks_for_days(
        parsed_ticks.trade_date_values(),
        columns=(
            "venue",
            "symbol",
            "trade_date",
            "trade_id",
            "ts",
            "price",
            "quantity",
            "source_file",
        ),
    )
    stored = pc.sum(pc.equal(days["source_file"], key)).as_py() or 0
    # Cancels leave no row and replaces stand in for other files' rows: with corrections the
    # file's rows are what the commit planned, and it planned at most the parsed rows.
    expected = parsed_ticks.rows if commit.file_rows is None else commit.file_rows
    yield AssetCheckResult(
        check_name="rows_match_parsed",
        passed=stored == expected and stored <= parsed_ticks.rows,
        metadata={
            "parsed": parsed_ticks.rows,
            "expected_in_table": expected,
            "in_table": stored,
            "corrections": commit.corrections,
        },
    )
    duplicates = find_duplicate_trades(days, involving=key)
    yield AssetCheckResult(
        check_name="duplicate_trades",
        passed=duplicates.passed,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "extra_copies": MetadataValue.int(duplicates.count),
            "examples": MetadataValue.md(
                "\n".join(f"- {e}" for e in duplicates.examples) or "none"
            ),
        },
    )
