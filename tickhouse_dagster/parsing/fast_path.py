"""The compiled fast path: xml2arrow (Rust, streaming, GIL released) reads a profile's attributes
as text, and the same strict Arrow casts as the lxml reader turn them into the contract.

It accelerates, it never judges. It applies only to profiles that name their `record_parent` and
read plain attributes, and it declines (FastPathDeclined) on any doubt: a DOCTYPE, a namespace
prefix on records, a parse or conversion error, or a row count that differs from the number of
record start tags in the bytes. The caller then reads the file with lxml, which gives the same
rows or the precise file / record / line error.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from xml2arrow import XmlToArrowParser

from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.parsing.profiles import FieldRule, Profile
from tickhouse_dagster.parsing.ticks_xml import (
    DEFAULT_BATCH_ROWS,
    TEXT_COLUMNS,
    contract_batch,
    open_tick_stream,
)

_ATTRIBUTE = re.compile(r"^(/?)@([A-Za-z_][\w.-]*)$")
_SCAN_CHUNK = 1 << 22


class FastPathDeclined(Exception):
    """The fast path will not vouch for this file; read it with lxml instead."""


def _paths(rule: FieldRule) -> list[str]:
    return [p for p in (rule.path, rule.fallback) if p]


def supports(profile: Profile) -> bool:
    rules = profile.fields.values()
    return profile.record_parent is not None and all(
        _ATTRIBUTE.match(path) for rule in rules for path in _paths(rule)
    )


@lru_cache(maxsize=16)
def _parser(config: str) -> XmlToArrowParser:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        file.write(config)
    return XmlToArrowParser(file.name)


def _record_attributes(profile: Profile) -> list[str]:
    names = []
    for rule in profile.fields.values():
        for path in _paths(rule):
            root, name = _ATTRIBUTE.match(path).groups()  # type: ignore[union-attr]
            if not root and name not in names:
                names.append(name)
    return names


def _config(profile: Profile) -> str:
    record_path = f"{profile.record_parent}/{profile.record}"
    fields = [
        {"name": name, "xml_path": f"{record_path}/@{name}", "data_type": "Utf8", "nullable": True}
        for name in _record_attributes(profile)
    ]
    table = {"name": "records", "xml_path": profile.record_parent, "levels": [], "fields": fields}
    return yaml.safe_dump({"parser_options": {"trim_text": False}, "tables": [table]})


class _TagCounter:
    """Counts `<record` in the bytes as they stream past, and notices a DOCTYPE (in the prolog),
    anything like a namespace-prefixed record, or an element that is neither the root nor a
    record (which the compiled parser would skip, and lxml may refuse: deep nesting), all of
    which the fast path leaves to lxml. An element whose name merely starts with the record's
    only raises the count, so the comparison fails safe. Plain byte scans: a regular expression
    cost half the parse."""

    def __init__(self, stream: IO[bytes], record: str) -> None:
        self._stream = stream
        self._tag = b"<" + record.encode()
        self._prefixed = b":" + record.encode()
        self._tail = b""
        self._first = True
        self.count = 0
        self.start_tags = 0  # every `<` that opens an element (not `</`, nor the prolog's)
        self.doubtful = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size if size and size > 0 else _SCAN_CHUNK)
        window = self._tail + data
        if self._first:
            self.doubtful |= b"<!DOCTYPE" in window
            # Declarations and comments before the first record are not elements. After it, a
            # `<?` or `<!` counts as one: the count comes out too high and lxml reads the file.
            prolog = window[: max(window.find(self._tag), 0)]
            self.start_tags -= prolog.count(b"<?") + prolog.count(b"<!")
            self._first = False
        # A tag cut by the chunk edge is counted with the next chunk, which starts with the tail.
        edge = len(self._tag) - 1
        settled = len(window) if not data else max(len(window) - edge, 0)
        self.count += window.count(self._tag, 0, min(settled + edge, len(window)))
        self.start_tags += window.count(b"<", 0, settled) - window.count(
            b"</", 0, min(settled + 1, len(window))
        )
        self.doubtful |= window.find(self._prefixed) >= 0
        self._tail = window[settled:]
        return data


def read_fast(
    open_source: Callable[[], IO[bytes]],
    *,
    source_file: str,
    profile: Profile,
    venues: Mapping[str, Venue],
    root_attributes: Mapping[str, str],
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Batches of the file in the parsed-ticks contract (line unknown: null), or
    FastPathDeclined — possibly after some batches were yielded, which the caller discards."""
    if not supports(profile):
        raise FastPathDeclined(f"profile {profile.name!r} is not expressible for the fast path")
    parser = _parser(_config(profile))
    rows = 0
    with open_source() as raw:
        counter = _TagCounter(open_tick_stream(raw), profile.record)
        try:
            batches = parser.parse_batches(counter, max_rows_per_batch=batch_rows)
            for _table, batch in batches:
                texts = _texts(batch, profile, root_attributes)
                ones = pa.repeat(pa.scalar(1, pa.int64()), batch.num_rows)
                records = pc.cumulative_sum(ones, start=rows)  # rows + 1, rows + 2, ...
                lines = pa.nulls(batch.num_rows, pa.int64())
                yield contract_batch(texts, records, lines, source_file, venues)
                rows += batch.num_rows
        except Exception as exc:
            # xml2arrow's errors carry no record (and some, e.g. on bytes that are not UTF-8,
            # surface as a TypeError): lxml reads the file again and says where it breaks.
            raise FastPathDeclined(f"{type(exc).__name__}: {exc}") from exc
        while counter.read(_SCAN_CHUNK):  # whatever the parser left unread still gets counted
            pass
    if counter.doubtful:
        raise FastPathDeclined("a DOCTYPE or a namespace-prefixed record is lxml's to read")
    if counter.count != rows:
        raise FastPathDeclined(f"{rows} rows read but {counter.count} record tags in the bytes")
    if counter.start_tags != rows + 1:
        raise FastPathDeclined("elements other than the root and its records are lxml's to read")


def _column(batch: pa.RecordBatch, path: str, root_attributes: Mapping[str, str]) -> pa.Array:
    root, name = _ATTRIBUTE.match(path).groups()  # type: ignore[union-attr]
    if root:
        return pa.repeat(pa.scalar(root_attributes.get(name), pa.string()), batch.num_rows)
    return batch.column(name)


def _texts(
    batch: pa.RecordBatch, profile: Profile, root_attributes: Mapping[str, str]
) -> dict[str, pa.Array]:
    texts: dict[str, pa.Array] = {}
    for column in TEXT_COLUMNS:
        rule = profile.fields.get(column)
        if rule is None:
            texts[column] = pa.nulls(batch.num_rows, pa.string())
            continue
        values = _column(batch, rule.path, root_attributes)
        if rule.fallback:
            values = pc.coalesce(values, _column(batch, rule.fallback, root_attributes))
        if rule.default is not None:
            values = values.fill_null(rule.default)
        if not rule.optional and values.null_count:
            raise FastPathDeclined(f"{column}: a required value is missing")
        if rule.map is not None:
            values = _mapped(values, rule.map, column)
        texts[column] = values
    return texts


def _mapped(values: pa.Array, mapping: Mapping[str, str | None], column: str) -> pa.Array:
    codes = pa.array(list(mapping), pa.string())
    index = pc.index_in(values, value_set=codes)
    if pc.sum(pc.and_(pc.is_null(index), pc.is_valid(values))).as_py():
        raise FastPathDeclined(f"{column}: a code outside the profile's map")
    return pa.array(list(mapping.values()), pa.string()).take(index)
