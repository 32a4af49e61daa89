"""Stream an XML tick file into Arrow record batches in the parsed-ticks contract.

Records are read with lxml's `iterparse` and freed as soon as they are read, so memory stays
bounded whatever the file size. Values are collected as text and converted a batch at a time by
Arrow's strict casts (exact decimals, zone-aware timestamps); only when a cast fails is the batch
scanned row by row, to name the record that broke it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Literal, TypedDict, cast

import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from tickhouse_dagster.core.contract import PARSED_TICKS_ARROW
from tickhouse_dagster.market.venues import Venue, trade_dates_of
from tickhouse_dagster.parsing.errors import TickFileError
from tickhouse_dagster.parsing.fields import BadValue, field_texts
from tickhouse_dagster.parsing.profiles import PROFILE_COLUMNS, FieldPath, Profile

DEFAULT_BATCH_ROWS = 65_536
# How much of a file's start is read to see its root element, hence its profile, and (the fast
# path) the layout of its first records. Every reader of a file's head reads this much.
SNIFF_BYTES = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


_PullEvent = Literal["start", "end"]


class _SafeOptions(TypedDict):
    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    dtd_validation: bool
    huge_tree: bool
    remove_comments: bool
    remove_pis: bool


# Every parser of a tick file is made with these: no entity substitution, no DTD loading, no
# network, libxml2's default size/depth limits.
_SAFE: _SafeOptions = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}


def safe_pull_parser(events: tuple[_PullEvent, ...]) -> etree.XMLPullParser:
    return etree.XMLPullParser(events=events, **_SAFE)


def safe_parser() -> etree.XMLParser:
    return etree.XMLParser(**_SAFE)


def safe_iterparse(stream: IO[bytes], tag: str) -> etree.iterparse[tuple[str, etree._Element]]:
    """The `end` events of the elements named `tag` ("{*}name": any namespace)."""
    return etree.iterparse(stream, events=("end",), tag=tag, **_SAFE)


_Extract = Callable[[etree._Element, etree._Element], "str | None"]

# The columns a profile yields as text before conversion: every column a profile maps.
TEXT_COLUMNS = PROFILE_COLUMNS


# (arrow type, what a valid text looks like) for the columns that are cast from text.
_CASTS: dict[str, tuple[pa.DataType, str]] = {
    "ts": (pa.timestamp("us", tz="UTC"), "an ISO 8601 time with a zone offset"),
    "price": (pa.decimal128(18, 6), "a decimal number with at most 6 decimal places"),
    "quantity": (pa.int64(), "a whole number"),
    "trade_date": (pa.date32(), "a date YYYY-MM-DD"),
}


def local_name(tag: str | bytes | bytearray | etree.QName) -> str:
    """An element's name without its namespace. Parsed elements have str tags; lxml's types
    also allow bytes and QName ones."""
    if isinstance(tag, str):
        return tag.rpartition("}")[2]
    if isinstance(tag, etree.QName):
        return tag.localname
    return tag.decode().rpartition("}")[2]


def open_tick_stream(raw: IO[bytes]) -> IO[bytes]:
    """The decompressed bytes of a plain or gzip file, recognised by content, not by name."""
    # typeshed types io.BufferedReader's argument as a RawIOBase and GzipFile as no IO[bytes];
    # both take and are binary streams.
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(cast(io.RawIOBase, raw))
    head: bytes = buffered.peek(2)
    if head[:2] == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
    return buffered


def sniff_root(head: bytes) -> tuple[str | None, dict[str, str]]:
    """Local name and attributes of the root element, from the first bytes of a (possibly gzip)
    file; (None, {}) when they cannot be read there."""
    if head[:2] == _GZIP_MAGIC:
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, 1 << 20)
        except zlib.error:
            return None, {}
    parser = safe_pull_parser(("start",))
    with contextlib.suppress(etree.XMLSyntaxError):
        parser.feed(head)
    # Events parsed before an error further on are still queued: the root is known even when
    # the file breaks later, and parsing then reports where.
    for _event, element in parser.read_events():
        return local_name(element.tag), dict(element.attrib)
    return None, {}


def sniff_root_element(head: bytes) -> str | None:
    return sniff_root(head)[0]


def unreadable_start(source_file: str, head: bytes) -> TickFileError:
    """Why a file's first bytes show no root element, as the error that names file and line."""
    if not head:
        return TickFileError(source_file, "malformed XML: the file is empty")
    if head[:2] == _GZIP_MAGIC:
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, 1 << 20)
        except zlib.error as exc:
            return TickFileError(source_file, f"unreadable or corrupt file: {exc}")
    parser = safe_pull_parser(("start",))
    try:
        parser.feed(head)
        parser.close()
    except etree.XMLSyntaxError as exc:
        return TickFileError(source_file, f"malformed XML: {exc.msg}", line=exc.lineno)
    return TickFileError(source_file, "malformed XML: no root element at the start of the file")


def _compile_path(path: FieldPath) -> _Extract:
    """A path (`profiles.parse_path`) as a function of (record, root): lxml's ElementPath with
    every name in any namespace, so `RptSide[2]` and `RptSide[@Side='1']` pick as XPath does
    (the first element the whole path matches, in document order)."""
    attribute = path.attribute
    if path.from_root:
        assert attribute is not None
        return lambda record, root: root.get(attribute)
    if not path.steps:
        assert attribute is not None
        return lambda record, root: record.get(attribute)
    steps = "/".join("{*}" + str(step) for step in path.steps)

    def extract(record: etree._Element, root: etree._Element) -> str | None:
        found = record.find(steps)
        if found is None:
            return None
        if attribute is not None:
            return found.get(attribute)
        return None if found.text is None else found.text.strip()

    return extract


class _Batch:
    """Text values of one batch of records, column by column."""

    def __init__(self, paths: tuple[FieldPath, ...]) -> None:
        self.values: dict[FieldPath, list[str | None]] = {path: [] for path in paths}
        self.records: list[int] = []
        self.lines: list[int] = []

    def __len__(self) -> int:
        return len(self.records)


class _TickFileReader:
    def __init__(
        self, source_file: str, profile: Profile, venues: Mapping[str, Venue], batch_rows: int
    ) -> None:
        self.source_file = source_file
        self.profile = profile
        self.venues = venues
        self.batch_rows = batch_rows
        # Each distinct path is read once per record; the rules are applied a batch at a time
        # by `fields.field_texts`, as the fast path applies them.
        paths = dict.fromkeys(p for rule in profile.fields.values() for p in rule.paths())
        self.extractors = {path: _compile_path(path) for path in paths}

    def error(self, reason: str, **where: int | str | None) -> TickFileError:
        return TickFileError(self.source_file, reason, **where)  # type: ignore[arg-type]

    def check_document(self, root: etree._Element) -> None:
        if root.getroottree().docinfo.doctype:
            raise self.error(
                "DOCTYPE declarations are refused (no DTDs, entities or external references)"
            )
        name = local_name(root.tag)
        if self.profile.root and name not in self.profile.root:
            expected = ", ".join(f"<{r}>" for r in self.profile.root)
            raise self.error(
                f"root element <{name}> is not a {self.profile.name!r} file (expected {expected})"
            )

    def read(self, stream: IO[bytes]) -> Iterator[pa.RecordBatch]:
        events = safe_iterparse(stream, "{*}" + self.profile.record)
        batch = _Batch(tuple(self.extractors))
        root: etree._Element | None = None
        record_number = 0
        try:
            for _event, record in events:
                if root is None:
                    top = record
                    while (parent := top.getparent()) is not None:
                        top = parent
                    self.check_document(top)
                    root = top
                record_number += 1
                self.collect(batch, record, root, record_number)
                # Free what was read: the record and the already-processed siblings before it.
                record.clear(keep_tail=False)
                parent = record.getparent()
                if parent is not None:
                    while record.getprevious() is not None:
                        del parent[0]
                if len(batch) >= self.batch_rows:
                    yield self.convert(batch)
                    batch = _Batch(tuple(self.extractors))
            if root is None and events.root is not None:
                self.check_document(events.root)
        except etree.XMLSyntaxError as exc:
            line = exc.lineno if exc.lineno else None
            raise self.error(f"malformed XML: {exc.msg}", line=line) from exc
        except (OSError, EOFError, zlib.error) as exc:
            raise self.error(f"unreadable or corrupt file: {exc}") from exc
        if len(batch):
            yield self.convert(batch)

    def collect(
        self, batch: _Batch, record: etree._Element, root: etree._Element, number: int
    ) -> None:
        for path, extract in self.extractors.items():
            batch.values[path].append(extract(record, root))
        batch.records.append(number)
        batch.lines.append(record.sourceline or 0)

    def convert(self, batch: _Batch) -> pa.RecordBatch:
        try:
            texts = field_texts(
                self.profile, lambda path: pa.array(batch.values[path], pa.string()), len(batch)
            )
            return contract_batch(
                texts,
                pa.array(batch.records, pa.int64()),
                pa.array(batch.lines, pa.int64()),
                self.source_file,
                self.venues,
            )
        except BadValue as bad:
            raise self.error(
                bad.reason,
                record=batch.records[bad.index],
                line=batch.lines[bad.index],
                field=bad.column,
            ) from None


def _cast(texts: pa.Array, column: str) -> pa.Array:
    arrow_type, expected = _CASTS[column]
    try:
        return texts.cast(arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for index, text in enumerate(texts.to_pylist()):
            if text is None:
                continue
            try:
                pa.array([text], pa.string()).cast(arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise BadValue(column, index, f"{text!r} is not {expected}") from None
        raise


def _trade_dates(
    given_texts: pa.Array, venue: pa.Array, ts: pa.Array, venues: Mapping[str, Venue]
) -> pa.Array:
    """The feed's trade date where it has one, else the venue's trade date of the print
    (`market.venues.trade_dates_of`: local clock, roll time for evening prints, trading days)."""
    given = _cast(given_texts, "trade_date")
    if given.null_count == 0:
        return given
    return pc.coalesce(given, trade_dates_of(venue, ts, venues))


def contract_batch(
    texts: Mapping[str, pa.Array],
    records: pa.Array,
    lines: pa.Array,
    source_file: str,
    venues: Mapping[str, Venue],
) -> pa.RecordBatch:
    """Text columns of a batch (feed codes already mapped) → a parsed-ticks batch with the
    contract's types; raises BadValue on the first value that does not convert."""
    rows = len(records)
    venue = texts["venue"]
    for name in pc.unique(venue).to_pylist():
        if name is not None and name not in venues:
            index = pc.index(venue, name).as_py()
            known = ", ".join(sorted(venues))
            reason = f"unknown venue {name!r} (add it to the venues file; known: {known})"
            raise BadValue("venue", index, reason)
    ts = _cast(texts["ts"], "ts")
    columns = {
        "venue": venue,
        "symbol": texts["symbol"],
        "trade_date": _trade_dates(texts["trade_date"], venue, ts, venues),
        "ts": ts,
        "trade_id": texts["trade_id"],
        "price": _cast(texts["price"], "price"),
        "quantity": _cast(texts["quantity"], "quantity"),
        "side": texts["side"],
        "source_file": pa.repeat(pa.scalar(source_file, pa.string()), rows),
        "record": records,
        "line": lines,
        "trans_type": texts.get("trans_type", pa.nulls(rows, pa.string())),
    }
    return pa.RecordBatch.from_arrays(
        [columns[f.name] for f in PARSED_TICKS_ARROW], schema=PARSED_TICKS_ARROW
    )


def parse_tick_file(
    stream: IO[bytes],
    *,
    source_file: str,
    profile: Profile,
    venues: Mapping[str, Venue],
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Record batches of a plain or gzip XML tick file; raises TickFileError on the first bad
    record, naming file, record, line and field."""
    reader = _TickFileReader(source_file, profile, venues, batch_rows)
    yield from reader.read(open_tick_stream(stream))


def read_tick_file(
    stream: IO[bytes], *, source_file: str, profile: Profile, venues: Mapping[str, Venue]
) -> pa.Table:
    batches = list(parse_tick_file(stream, source_file=source_file, profile=profile, venues=venues))
    return pa.Table.from_batches(batches, schema=PARSED_TICKS_ARROW)
