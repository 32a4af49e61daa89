"""Which reader parses a tick file: the compiled fast path when it vouches for the file, else
(or when it declines half-way) the lxml reader, which also words any error."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import IO, TypeVar

import pyarrow as pa

from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.parsing.fast_path import FastPathDeclined, read_fast
from tickhouse_dagster.parsing.profiles import Profile
from tickhouse_dagster.parsing.ticks_xml import SNIFF_BYTES, parse_tick_file

Result = TypeVar("Result")


def consume_tick_file(
    open_source: Callable[[], IO[bytes]],
    consume: Callable[[Iterator[pa.RecordBatch]], Result],
    *,
    source_file: str,
    profile: Profile,
    venues: Mapping[str, Venue],
    head: bytes | None = None,
) -> tuple[Result, str]:
    """`consume` the file's record batches; returns what it returned and which reader produced
    them. The fast path vouches for a file only once it has read all of it, so when it declines
    `consume` has already seen batches and raised FastPathDeclined: it must drop whatever it made
    of them (delete what it wrote) before it is called again with the lxml reader's batches.
    `head`: the file's first SNIFF_BYTES when the caller has read them (saves opening it once
    more)."""
    if head is None:
        with open_source() as stream:
            head = stream.read(SNIFF_BYTES)
    fast = read_fast(
        open_source, source_file=source_file, profile=profile, venues=venues, head=head
    )
    try:
        return consume(fast), "xml2arrow"
    except FastPathDeclined as declined:
        reason = str(declined)
    with open_source() as stream:
        batches = parse_tick_file(stream, source_file=source_file, profile=profile, venues=venues)
        return consume(batches), f"lxml (fast path declined: {reason})"[:300]
