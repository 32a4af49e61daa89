"""The three per-file tick assets: raw XML → parsed ticks → the Iceberg ticks table, one landing
file per partition. Their keys live in `defs/asset_keys.py`, what they record in
`defs/file_reports.py`, the reading and parsing in `engine/landing_file.py`.

Each asset is one step of the ingest engine (`tickhouse_dagster.engine`) for one file, for a
file materialized on its own (the UI's Materialize, a re-ingest of one partition). The landing
sensor and `tickhouse ingest` run the same engine over many files in one batch run
(`defs/ingest_batch.py`) and record the same materializations and checks.
"""

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    Output,
    asset,
)

from tickhouse_dagster.defs.asset_keys import PARSED_TICKS, RAW_TICK_XML, TICKS
from tickhouse_dagster.defs.file_reports import (
    parsed_checks,
    parsed_metadata,
    raw_metadata,
    ticks_checks,
    ticks_metadata,
)
from tickhouse_dagster.defs.io_managers import IO_MANAGER_KEY
from tickhouse_dagster.defs.partitions import landing_files
from tickhouse_dagster.defs.resources import (
    FeedResource,
    LakehouseResource,
    LandingResource,
    StagingResource,
)
from tickhouse_dagster.defs.retries import retry_transient
from tickhouse_dagster.engine.catch_up import set_aside
from tickhouse_dagster.engine.commit import commit_parsed, trade_copies_of, verify_commit
from tickhouse_dagster.engine.landing_file import (
    ParsedFile,
    Refusal,
    fingerprint,
    parse_landing_file,
)
from tickhouse_dagster.parsing import TickFileError
from tickhouse_dagster.parsing.profiles import ProfileError
from tickhouse_dagster.storage.landing import LandingKeyError
from tickhouse_dagster.storage.reference_lineage import record_ticks_reference
from tickhouse_dagster.storage.staging import StagedTicks
from tickhouse_dagster.storage.trade_index import TradeIndex

__all__ = ["parsed_ticks", "raw_tick_xml", "ticks"]


class ParseConfig(Config):
    profile: str | None = None  # force an input profile instead of recognising it


def _bad_input(
    key: str, reason: str, refusal: Refusal | None = None, quarantined_at: str | None = None
) -> Failure:
    """A permanent input failure: shown with its reason, and never retried."""
    where = {}
    if refusal is not None:
        where = {
            name: str(getattr(refusal, name))
            for name in ("record", "line", "field")
            if getattr(refusal, name) is not None
        }
    moved = {"quarantined_at": quarantined_at} if quarantined_at else {}
    return Failure(
        description=reason + (f" (file moved to {quarantined_at})" if quarantined_at else ""),
        metadata={"source_file": key, "reason": reason, **where, **moved},
        allow_retries=False,
    )


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
            read = fingerprint(store, key)
    except (FileNotFoundError, LandingKeyError) as exc:
        raise _bad_input(key, f"{type(exc).__name__}: {exc}") from exc
    parsed = ParsedFile(key, read.file.version, read.file.size, sha256=read.sha256)
    try:
        parsed.profile = feed.feed().profile_for(key, read.head).name
    except (ProfileError, TickFileError) as exc:
        context.log.warning(str(exc))  # parsing reports it as the file's failure
    return MaterializeResult(metadata=raw_metadata(parsed, store.uri))


@asset(
    key=PARSED_TICKS,
    deps=[RAW_TICK_XML],
    partitions_def=landing_files,
    group_name="ticks",
    description="The file's trade prints in the ticks contract, staged as an Arrow IPC file.",
    check_specs=[
        AssetCheckSpec(
            "tick_values",
            asset=PARSED_TICKS,
            blocking=True,
            description="Contract values (pandera): positive price and quantity, side B/S/null, "
            "non-empty ids, trade date within a day of the print's local date or its venue-rule "
            "trade date, and near the file's trading day. Blocks the ticks table; a failing file "
            "is quarantined.",
        ),
        AssetCheckSpec(
            "session_and_tick_grid",
            asset=PARSED_TICKS,
            description="Prints outside the venue's session or off its tick-size grid (warning).",
        ),
        AssetCheckSpec(
            "trade_key_conflicts",
            asset=PARSED_TICKS,
            blocking=True,
            description="A trade key another file (or this one) already carries with a different "
            "ts, price, quantity or side, and no correction explains: blocks the ticks table; "
            "the file is quarantined naming the key and both files.",
        ),
    ],
)
def parsed_ticks(
    context: AssetExecutionContext,
    config: ParseConfig,
    landing: LandingResource,
    feed: FeedResource,
    staging: StagingResource,
    lakehouse: LakehouseResource,
):
    key = context.partition_key
    store = landing.store()
    house = lakehouse.lakehouse()
    try:
        with retry_transient(context):  # a network error mid-file is retried, bad bytes are not
            parsed = parse_landing_file(
                store,
                key,
                feed=feed.feed(),
                staging_uri=staging.uri_for(key, context.run.run_id),
                forced_profile=config.profile,
            )
            index = TradeIndex(house)
            staged = parsed.staged if parsed.ok else None
            copies = trade_copies_of(house, index, key, staged) if staged is not None else None
    except (LandingKeyError, FileNotFoundError) as exc:
        raise _bad_input(key, f"{type(exc).__name__}: {exc}") from exc
    if copies is not None and not copies.conflicts.passed:
        parsed.refusal = Refusal.of_findings(copies.conflicts, "conflicts")
    where = None
    if parsed.refusal is not None:
        where, move_error = set_aside(store, parsed)
        if move_error:
            context.log.warning(f"could not quarantine {key}: {move_error}")
        else:
            context.log.warning(f"{key} quarantined at {where}: {parsed.refusal.reason}")
        if parsed.staged is None:  # nothing parsed: the file's failure is the step's
            raise _bad_input(key, parsed.refusal.reason, parsed.refusal, where)
    assert parsed.staged is not None
    yield Output(
        parsed.staged,
        metadata={**parsed_metadata(parsed), "staged_at": parsed.staged.uri},
    )
    for outcome in parsed_checks(parsed, copies, where):
        yield outcome.result()
    if parsed.refusal is not None:
        # A blocking check failed: `ticks` will not run for these rows, so nothing else would
        # delete them (the file itself is quarantined; a retry parses it again).
        parsed.staged.delete()


@asset(
    key=TICKS,
    partitions_def=landing_files,
    group_name="ticks",
    # The asset commits the table itself (docs/decisions/0006-iceberg-io-managers.md); the IO
    # manager is how assets downstream read it: a daily one gets its trade date of every file,
    # a per-file one its file's rows.
    io_manager_key=IO_MANAGER_KEY,
    description="market.ticks in Iceberg: this file's rows replaced in one atomic commit.",
    check_specs=[
        AssetCheckSpec(
            "duplicate_trades",
            asset=TICKS,
            description=(
                "Trades of this file also carried, identically, by another row (warn; bars "
                "count them once)."
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
def ticks(
    context: AssetExecutionContext,
    parsed_ticks: StagedTicks,
    lakehouse: LakehouseResource,
    feed: FeedResource,
):
    key = context.partition_key
    house = lakehouse.lakehouse()
    parsed = ParsedFile(
        key, parsed_ticks.file_version, 0, sha256=parsed_ticks.sha256, staged=parsed_ticks
    )
    with retry_transient(context):
        index = TradeIndex(house)
        copies = trade_copies_of(house, index, key, parsed_ticks)
        commit = commit_parsed(house, index, parsed)
        record_ticks_reference(house, {key: parsed_ticks.venues}, feed.venues())
        committed = verify_commit(house, parsed, commit)
    yield MaterializeResult(metadata=ticks_metadata(parsed, committed))
    for outcome in ticks_checks(committed, copies):
        yield outcome.result()
    parsed_ticks.delete()
