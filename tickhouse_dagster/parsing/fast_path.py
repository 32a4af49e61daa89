"""The compiled fast path: xml2arrow (Rust, streaming, GIL released) reads a profile's values as
text, and the same strict Arrow casts as the lxml reader turn them into the contract.

It accelerates, it never judges: it gives exactly the lxml reader's rows or declines
(FastPathDeclined), and the caller then reads the file with lxml, which gives the same rows or
the precise file / record / line error.

How it reads a file. xml2arrow needs absolute element paths, and a layout's record path varies
from file to file (/FIXML/TrdCaptRpt, /FIXML/Batch/TrdCaptRpt), so the path of the first record
is read from the file's first 64 KiB (by lxml, which also vouches for that much being
well-formed) and a parser is compiled per (profile, layout). Names are matched as written
(`strip_namespaces: false`): with prefixes stripped xml2arrow would also read `p:Side` as
`Side` (lxml's `get("Side")` does not, and xml2arrow would join the two values) and it parses
a third slower. xml2arrow reads the bytes from a pipe that a thread fills and checks.

Two shapes:
- a profile that reads only record (and root) attributes: one row per record;
- a profile that also reads child elements ("Instrmt/@Sym", "Code"): one row per child element
  (the record's own attributes land in its first row), with the record's number beside it.
  lxml reads the FIRST child of a name; xml2arrow, asked for one row per record, would join
  the attribute values of repeated children ("1" + "2" -> "12") and refuse repeated text, so
  each record's first row of each child name is picked out in Arrow. A pick is too:
  `RptSide[2]/@Side` takes the record's second row of that name, `RptSide[@Side='1']/@ID`
  the first whose Side column is "1" (the predicate's attribute is read as a column).
- a profile that reads grandchildren ("RptSide[@Side='1']/Pty[@R='4']/@ID"): that child gets
  a nested xml2arrow table, one row per grandchild numbered by record, by the child's row in
  the children table and by its own place; the child's own attributes come in the first row
  of its grandchildren (xml2arrow gives them to the nested table). Each step filters as
  ElementPath does (all of a name, the n-th of each parent, or those with the attribute
  value) and the value is the first grandchild, in document order, that both steps keep: as
  lxml's `find`, `RptSide/Pty/@ID` is the first party of any side. The tables are flushed on
  their own, so a record is read once every table has gone past it.
- Declined for the whole profile: a path below the grandchildren (`A/B/C/@x`; one more level
  of tables and numbers), and the text of a child whose children are read. Templates,
  fallbacks, defaults and maps are not the readers' own:
  both apply them with `fields.field_texts` to the columns they read.

What it checks before it vouches (anything else declines):
- the first 64 KiB parse with lxml; no DOCTYPE, no undeclared prefix there; XML 1.0 in UTF-8;
  the root is one the profile names;
- every element of the record's name (at any depth, under any prefix: lxml finds them all) is
  a row at the detected path; with child rows every record has one (a record without a known
  child would add its attributes to the next record's row);
- the root closes exactly once and only whitespace follows it (xml2arrow accepts a file cut
  short, or content after the root; lxml does not);
- the bytes are valid UTF-8 without NUL, U+FFFE or U+FFFF; every `&` starts a predefined
  entity or a reference to an XML character; from the first record on there is no `<!` or `<?`
  (comment, CDATA, PI, DOCTYPE);
- every value read is XML character data (no control character, no `<` in an attribute);
  element text has no CR (XML turns CR LF into LF, xml2arrow keeps it) and comes from an
  element without child elements (lxml's `.text` stops at the first child);
- with two or more child names, every child row can be told apart by its values.
- a child whose grandchildren are read has at least one of them wherever its own attributes
  are read (else xml2arrow would give those to the next child's first grandchild), and with
  two or more child names, or grandchild names under one child, every row is told apart.
Not re-checked past the first 64 KiB (lxml refuses such a file, xml2arrow skips over it): bad
markup in elements the profile does not read — an invalid name, attributes not separated by
a space, a repeated attribute, a `<` in an attribute value, an undeclared prefix, a control
character other than NUL; and a child element the profile reads written under another prefix
than in the first records.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import fcntl
import os
import re
import select
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from lxml import etree
from xml2arrow import XmlToArrowParser

from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.parsing.fields import BadValue, field_texts
from tickhouse_dagster.parsing.profiles import FieldPath, Profile, Step
from tickhouse_dagster.parsing.ticks_xml import (
    _GZIP_MAGIC,
    DEFAULT_BATCH_ROWS,
    SNIFF_BYTES,
    contract_batch,
    local_name,
    open_tick_stream,
    safe_parser,
    safe_pull_parser,
)

_SCAN_CHUNK = 1 << 20
# Bytes a pattern may reach past a chunk's settled part (an element read as text must fit).
_OVERLAP = 4096
_XML_DECLARATION = re.compile(
    rb"^(?:\xef\xbb\xbf)?<\?xml\s+version\s*=\s*([\"'])(?P<version>[^\"']*)\1"
    rb"(?:\s+encoding\s*=\s*([\"'])(?P<encoding>[^\"']*)\3)?"
)
_ENTITY = re.compile(rb"&(?:(?:amp|lt|gt|quot|apos);|#([0-9]{1,7});|#x([0-9a-fA-F]{1,6});)")
# The control characters XML 1.0 does not allow, literally or as references (\t \n \r it does).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 13))
# What Python's str.strip() strips (the lxml reader strips element text with it).
_PY_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


class FastPathDeclined(Exception):
    """The fast path will not vouch for this file; read it with lxml instead."""


# --- what a profile reads ------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    """One column xml2arrow reads: a record attribute, a root attribute, an attribute (or the
    text, when `attribute` is None) of the record's child elements of a name, or of their
    child elements ("grand": `name` is "Child/Grandchild")."""

    kind: str  # "record", "root", "child" or "grand"
    name: str  # attribute name, the child's local name, or "child/grandchild" local names
    attribute: str | None = None

    @property
    def column(self) -> str:
        """The name of xml2arrow's column (unique per value read)."""
        if self.kind in ("child", "grand"):
            return self.name if self.attribute is None else f"{self.name}/@{self.attribute}"
        return f"@{self.name}"

    @property
    def child(self) -> str:
        """The record's child element the value is in (or under)."""
        return self.name.partition("/")[0]

    @property
    def text(self) -> bool:
        return self.kind in ("child", "grand") and self.attribute is None


@dataclass(frozen=True)
class _Filter:
    """Which elements one step of a path keeps: the `position`-th (from 1) of the parent's
    elements of that name, or those whose `where` column equals `value`, or (neither) all."""

    position: int | None = None
    where: _Read | None = None
    value: str | None = None


_ALL = _Filter()


@dataclass(frozen=True)
class _Pick:
    """One path of the profile: the column it reads and, for a child (or grandchild) element,
    which of them: `step` filters the element that holds the value, `outer` the record's
    child it is under (grandchildren only). As lxml's ElementPath, the value is the one of the
    first element, in document order, that every step keeps."""

    read: _Read
    step: _Filter = _ALL
    outer: _Filter | None = None

    @property
    def plain(self) -> bool:
        """The first child of the name, as a selector-less one-step path reads it."""
        return (
            self.read.kind == "child"
            and self.step.position in (None, 1)
            and (self.step.where is None)
        )


def _filter_of(step: Step, parent: str) -> _Filter:
    """`step` (of a child of `parent`: "" for the record's children) as a filter."""
    if step.where is not None:
        kind, name = ("child", step.name) if not parent else ("grand", f"{parent}/{step.name}")
        return _Filter(where=_Read(kind, name, step.where[0]), value=step.where[1])
    return _Filter(position=step.position)


def _pick_of(path: FieldPath) -> _Pick:
    if path.from_root:
        assert path.attribute is not None
        return _Pick(_Read("root", path.attribute))
    if not path.steps:
        assert path.attribute is not None
        return _Pick(_Read("record", path.attribute))
    if len(path.steps) > 2:
        # Each level is one more nested xml2arrow table and one more numbering column; two
        # levels cover the layouts seen (RptSide/Pty, Instrmt/Evnt).
        raise FastPathDeclined(
            f"path '{path}' reaches below the record's grandchildren: lxml's to read (the fast "
            "path reads '@a', '/@a', 'Child/@a', 'Child', 'Child/Grandchild/@a', each step with "
            "[n] or [@a='v'])"
        )
    if len(path.steps) == 1:
        (step,) = path.steps
        return _Pick(_Read("child", step.name, path.attribute), _filter_of(step, ""))
    outer, inner = path.steps
    read = _Read("grand", f"{outer.name}/{inner.name}", path.attribute)
    return _Pick(read, _filter_of(inner, outer.name), _filter_of(outer, ""))


@dataclass(frozen=True)
class _Plan:
    reads: tuple[_Read, ...]  # every distinct column, in profile order
    picks: tuple[_Pick, ...]  # every distinct path, in profile order

    @property
    def record_attributes(self) -> list[_Read]:
        return [r for r in self.reads if r.kind == "record"]

    @property
    def children(self) -> dict[str, list[_Read]]:
        """Child element local name -> the columns read from its elements (for a child with
        grandchildren read, its own attributes: xml2arrow gives them in its nested table)."""
        children: dict[str, list[_Read]] = {}
        for read in self.reads:
            if read.kind in ("child", "grand"):
                reads = children.setdefault(read.child, [])
                if read.kind == "child":
                    reads.append(read)
        return children

    @property
    def nested(self) -> dict[str, dict[str, list[_Read]]]:
        """Child local name -> grandchild local name -> the columns read from those."""
        nested: dict[str, dict[str, list[_Read]]] = {}
        for read in self.reads:
            if read.kind == "grand":
                grand = read.name.partition("/")[2]
                nested.setdefault(read.child, {}).setdefault(grand, []).append(read)
        return nested

    @property
    def reads_text(self) -> bool:
        return any(r.text for r in self.reads)


def _plan(profile: Profile) -> _Plan:
    reads: list[_Read] = []
    picks: list[_Pick] = []
    for rule in profile.fields.values():
        for path in rule.paths():
            pick = _pick_of(path)
            filters = [pick.step, pick.outer or _ALL]
            for read in (pick.read, *(f.where for f in filters)):
                if read is not None and read not in reads:
                    reads.append(read)
            if pick not in picks:
                picks.append(pick)
    if all(read.kind == "root" for read in reads):
        raise FastPathDeclined("a profile that reads nothing from its records")
    plan = _Plan(tuple(reads), tuple(picks))
    for name in plan.nested:
        if any(read.text for read in plan.children[name]):
            # lxml's .text of an element with children is the text before the first of them;
            # xml2arrow's nested table takes that element's text apart from its children's.
            raise FastPathDeclined(f"the text of <{name}>, whose child elements are read")
    return plan


def supports(profile: Profile) -> bool:
    """Whether the fast path can read files of this profile at all (each file is still
    checked, and may be declined)."""
    try:
        _plan(profile)
    except FastPathDeclined:
        return False
    return True


# --- the layout of one file, from its first bytes -------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where a file's records are, as its first bytes show it (qualified names as written)."""

    parent: tuple[str, ...]  # root .. the records' parent element
    record: str
    # (local name, qualified name) of the children read, and ("child/grandchild" local names,
    # the grandchild's qualified name) of the grandchildren read.
    children: tuple[tuple[str, str], ...]
    root_attributes: Mapping[str, str]
    body: int  # offset of the first record's start tag in the decompressed bytes
    # Another element's name starts with the record's (<P> and <Px>): `<P` alone miscounts.
    name_collides: bool

    @property
    def root(self) -> str:
        return self.parent[0]


def _qname(element: etree._Element) -> str:
    name = local_name(element.tag)
    return f"{element.prefix}:{name}" if element.prefix else name


def decompressed_head(head: bytes) -> bytes:
    if head[:2] == _GZIP_MAGIC:
        try:
            return zlib.decompressobj(wbits=31).decompress(head, 1 << 20)
        except zlib.error as exc:
            raise FastPathDeclined(f"corrupt gzip: {exc}") from exc
    return head


def sniff_layout(head: bytes, profile: Profile) -> Layout:
    """The layout of a file whose first (possibly gzip) bytes are `head`, or FastPathDeclined
    when those bytes leave any doubt."""
    head = decompressed_head(head)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head[:4]:
        raise FastPathDeclined("not UTF-8 (UTF-16 or UTF-32)")
    declaration = _XML_DECLARATION.match(head)
    if declaration is not None:
        version = declaration["version"]
        encoding = (declaration["encoding"] or b"UTF-8").upper()
        if version != b"1.0" or encoding != b"UTF-8":
            raise FastPathDeclined(
                f"XML {version.decode(errors='replace')} in "
                f"{encoding.decode(errors='replace')}: lxml's to read (the fast path reads "
                "XML 1.0 in UTF-8)"
            )
    parser = safe_pull_parser(("start",))
    try:
        parser.feed(head)
    except etree.XMLSyntaxError as exc:
        raise FastPathDeclined(f"malformed XML in the first bytes: {exc.msg}") from exc
    root = record = None
    for _event, element in parser.read_events():
        if root is None:
            root = element
            if root.getroottree().docinfo.doctype:
                raise FastPathDeclined("a DOCTYPE is lxml's to refuse")
            if profile.root and local_name(root.tag) not in profile.root:
                raise FastPathDeclined(f"root element <{local_name(root.tag)}> is lxml's to refuse")
        if local_name(element.tag) == profile.record:
            record = element
            break
    if root is not None:
        # libxml2 reports an undeclared prefix only when the document ends (lxml then
        # refuses the file); in the head it shows as a name that kept its colon.
        for element in root.iter():
            names = [element.tag, *element.attrib]
            if any(":" in name and not name.startswith("{") for name in names):
                raise FastPathDeclined("an undeclared namespace prefix is lxml's to refuse")
    if root is None or record is None:
        raise FastPathDeclined(f"no <{profile.record}> in the first {SNIFF_BYTES // 1024} KiB")
    if record is root:
        raise FastPathDeclined("a file that is one record is lxml's to read")
    parent = []
    ancestor = record.getparent()
    while ancestor is not None:
        parent.append(_qname(ancestor))
        ancestor = ancestor.getparent()
    # Every byte of the head was parsed (the events above were queued by feed): the records
    # of the head show how their children's names are written.
    plan = _plan(profile)
    names = [*plan.children, *(f"{c}/{g}" for c, grand in plan.nested.items() for g in grand)]
    children = []
    for name in names:
        local = name.rpartition("/")[2]
        written = f"{record.prefix}:{local}" if record.prefix else local
        for seen in root.iter("{*}" + profile.record):
            child = seen.find("/".join("{*}" + step for step in name.split("/")))
            if child is not None:
                written = _qname(child)
                break
        children.append((name, written))
    qname = _qname(record)
    body = _first_start_tag(head, qname.encode())
    if body < 0:
        raise FastPathDeclined(f"<{qname}> not found in the first bytes")
    _check_head(head, qname)
    qnames = {_qname(element) for element in root.iter()}
    return Layout(
        parent=tuple(reversed(parent)),
        record=qname,
        children=tuple(children),
        root_attributes=dict(root.attrib),
        body=body,
        name_collides=any(n != qname and n.startswith(qname) for n in qnames),
    )


def _check_head(head: bytes, record: str) -> None:
    """Parse the head as a whole document: cut after its last complete record, with the
    elements still open there closed. libxml2 reports some errors (an invalid namespace URI,
    an undeclared prefix) only when a document ends, and a head fed to a pull parser never
    does."""
    name = re.escape(record.encode())
    ends = list(re.finditer(rb"</" + name + rb"\s*>|<" + name + rb"[\s/>]", head))
    cut = 0
    for match in reversed(ends):
        if match[0].startswith(b"</"):
            cut = match.end()
            break
        tag = _START_TAG_REST.match(head, match.end() - 1)
        if tag is not None and tag[1]:  # <record .../>
            cut = tag.end()
            break
    if cut == 0:
        raise FastPathDeclined(f"no complete <{record}> in the first {SNIFF_BYTES // 1024} KiB")
    events = safe_pull_parser(("start", "end"))
    open_elements: list[str] = []
    try:
        events.feed(head[:cut])
        for event, element in events.read_events():
            if event == "start":
                open_elements.append(_qname(element))
            else:
                open_elements.pop()
        closing = b"".join(f"</{qname}>".encode() for qname in reversed(open_elements))
        etree.fromstring(head[:cut] + closing, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise FastPathDeclined(f"malformed XML in the first bytes: {exc.msg}") from exc


def _first_start_tag(data: bytes, qname: bytes) -> int:
    """Offset of the first `<qname` followed by the end of the name, or -1."""
    position = data.find(b"<" + qname)
    while position >= 0:
        after = data[position + 1 + len(qname) : position + 2 + len(qname)]
        if after and after in b" \t\r\n/>":
            return position
        position = data.find(b"<" + qname, position + 1)
    return -1


# --- the compiled parser -------------------------------------------------------------------


def _field(name: str, xml_path: str) -> dict[str, object]:
    return {"name": name, "xml_path": xml_path, "data_type": "Utf8", "nullable": True}


def _nested_table(child: str) -> str:
    return f"under:{child}"


def _config(plan: _Plan, layout: Layout) -> str:
    parent = "/" + "/".join(layout.parent)
    record = f"{parent}/{layout.record}"
    written = dict(layout.children)

    def path(read: _Read) -> str:
        if read.kind == "record":
            return f"{record}/@{read.name}"
        element = f"{record}/{written[read.child]}"
        if read.kind == "grand":
            element += f"/{written[read.name]}"
        return element if read.attribute is None else f"{element}/@{read.attribute}"

    nested = plan.nested
    # A child whose grandchildren are read has a table of its own (one row per grandchild);
    # xml2arrow gives that child's attributes to it too (in the child's first row there).
    fields = [
        _field(r.column, path(r))
        for r in plan.reads
        if r.kind == "record" or (r.kind == "child" and r.name not in nested)
    ]
    # A table at the document node gets a row each time a root element closes: exactly one
    # row says the root closed, once (xml2arrow accepts a file cut short, or a second root).
    # The attribute is never read; a table needs a field to get rows.
    tables: list[dict[str, object]] = [
        {
            "name": "root",
            "xml_path": "/",
            "levels": [],
            "fields": [_field("root", f"/{layout.root}/@tickhouse-root-closed")],
        }
    ]
    if plan.children:
        # One row per child element of a record; the parent table has no fields and only
        # numbers the records (the "<record>" column).
        if not fields:  # a table without fields has no output (its rows are still counted)
            fields = [_field("@tickhouse-record", f"{record}/@tickhouse-record")]
        tables += [
            {"name": "records", "xml_path": parent, "levels": ["record"], "fields": []},
            {
                "name": "children",
                "xml_path": record,
                "levels": ["record", "child"],
                "fields": fields,
            },
        ]
        for child in nested:
            reads = [r for r in plan.reads if r.child == child and r.kind in ("child", "grand")]
            tables.append(
                {
                    "name": _nested_table(child),
                    "xml_path": f"{record}/{written[child]}",
                    "levels": ["record", "child", "grand"],
                    "fields": [_field(r.column, path(r)) for r in reads],
                }
            )
    else:
        tables.append({"name": "records", "xml_path": parent, "levels": [], "fields": fields})
    options = {
        # Trimming skips the whitespace between elements (a few per cent faster), but it works
        # per text event and would drop the spaces around an entity: element text is stripped
        # here instead, after the checks.
        "trim_text": not plan.reads_text,
        "strip_namespaces": False,
    }
    return yaml.safe_dump({"parser_options": options, "tables": tables}, sort_keys=False)


@lru_cache(maxsize=32)
def _parser(config: str) -> XmlToArrowParser:
    # xml2arrow takes its configuration only as a file, read once when the parser is built.
    fd, path = tempfile.mkstemp(prefix="tickhouse-xml2arrow-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(config)
        return XmlToArrowParser(path)
    finally:
        os.unlink(path)


# --- the bytes, checked as they stream past -------------------------------------------------


class _CheckedStream:
    """The decompressed bytes on their way to xml2arrow (the _Feeder's thread reads them),
    checked a chunk at a time with plain byte scans (a regular expression cost half the parse;
    single bytes are found with memchr, so the rarer checks look for one byte first): record
    start tags counted, and the record's name under another prefix; NUL, invalid UTF-8,
    U+FFFE / U+FFFF, and from the first record on `<!` and `<?` refused; every `&` checked;
    the last bytes kept for the end-of-document check. Each chunk is scanned in a window that
    starts with the end of the one before: a pattern is counted where it starts (in the
    window's settled part) and may reach into the unsettled end, which the next window starts
    with."""

    def __init__(self, stream: IO[bytes], layout: Layout, text_elements: list[str]) -> None:
        self._stream = stream
        self._window = b""
        self._done = False
        self._offset = 0  # of the window's start in the stream
        self._body = layout.body
        record = layout.record.encode()
        # Start tags of the record as written; when another name starts with it, each way a
        # name can end is counted apart (slower, only for such layouts).
        ends = (b" ", b"\t", b"\r", b"\n", b"/", b">") if layout.name_collides else (b"",)
        self._start_tags = [b"<" + record + end for end in ends]
        # `:name` finds the record under any other prefix (and, for a prefixed record, its own
        # start and end tags, which are subtracted).
        self._colon_name = b":" + layout.record.rpartition(":")[2].encode()
        self._own = [b"<" + record, b"</" + record] if b":" in record else []
        self._text_elements = [name.encode() for name in text_elements]
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.records = 0
        self.other_prefixes = 0
        self.text_beside_children = 0
        self.doubt: str | None = None
        self.tail = b""

    def next_chunk(self) -> bytes:
        """The next chunk of bytes, checked; b"" at the end."""
        chunk = self._stream.read(_SCAN_CHUNK) if not self._done else b""
        self._scan(chunk)
        return chunk

    def _doubt(self, reason: str) -> None:
        self.doubt = self.doubt or reason

    def _count(self, window: bytes, pattern: bytes, settled: int) -> int:
        return window.count(pattern, 0, settled + len(pattern) - 1)

    def _scan(self, chunk: bytes) -> None:
        if self._done:
            return
        final = not chunk
        self._done = final
        window = self._window + chunk
        settled = len(window) if final else max(len(window) - _OVERLAP, 0)
        self.tail = (self.tail + chunk[-256:])[-256:]
        if chunk.find(b"\x00") >= 0:
            self._doubt("a NUL byte")
        if not chunk.isascii() or final or self._utf8.getstate()[0]:
            try:
                self._utf8.decode(chunk, final)
            except UnicodeDecodeError:
                self._doubt("bytes that are not UTF-8")
        if not (chunk.isascii() and self._window.isascii()):
            for noncharacter in (b"\xef\xbf\xbe", b"\xef\xbf\xbf"):
                if window.find(noncharacter, 0, settled + 2) >= 0:
                    self._doubt("U+FFFE or U+FFFF")
        for tag in self._start_tags:
            self.records += self._count(window, tag, settled)
        prefixed = self._count(window, self._colon_name, settled)
        for own in self._own if prefixed else ():
            prefixed -= self._count(window, own, settled)
        self.other_prefixes += prefixed
        if window.find(b"&", 0, settled) >= 0:
            self._check_entities(window, settled)
        body = max(self._body - self._offset, 0)
        if body < settled:
            for markup in (b"<!", b"<?"):
                if window.find(markup[1:], body, settled + 1) >= 0 and (
                    window.find(markup, body, settled + 1) >= 0
                ):
                    self._doubt(f"'{markup.decode()}' after the first record (comment, CDATA, PI)")
        for name in self._text_elements:
            self.text_beside_children += _text_beside_children(window, name, settled)
        self._window = window[settled:]
        self._offset += settled

    def _check_entities(self, window: bytes, settled: int) -> None:
        position = window.find(b"&", 0, settled)
        while position >= 0:
            reference = _ENTITY.match(window, position)
            if reference is None:
                self._doubt("an entity XML does not predefine (or a bare '&')")
                return
            number = reference[1] or reference[2]
            if number is not None:
                code = int(number, 16 if reference[2] else 10)
                if not _is_xml_char(code):
                    self._doubt(f"a reference to character U+{code:04X}")
                    return
            position = window.find(b"&", reference.end(), settled)


class _Feeder:
    """Hands xml2arrow the checked bytes through a pipe that a thread fills. Read through a
    Python file object, xml2arrow's parsing thread would call back into Python (and wait for
    the GIL) for every 8 KiB, and the byte checks would run on that thread; from a pipe it
    parses without the GIL while this thread reads, decompresses and checks the next chunks
    (tickhouse files 1.1M -> 1.7M ticks/s, FIXML 0.57M -> 0.84M, on two idle cores)."""

    def __init__(self, checked: _CheckedStream) -> None:
        self._checked = checked
        self._stop = threading.Event()
        self._read_end: int | None = None
        self._write_end: int | None = None
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def source(self) -> str:
        """The path xml2arrow opens: the read end of the pipe."""
        read_end, write_end = os.pipe()
        path = f"/dev/fd/{read_end}"
        if not os.path.exists(path):  # Linux and macOS have /dev/fd
            os.close(read_end)
            os.close(write_end)
            raise FastPathDeclined("no /dev/fd to hand xml2arrow a pipe")
        with contextlib.suppress(OSError, AttributeError):  # a larger pipe: fewer wake-ups
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _SCAN_CHUNK)
        os.set_blocking(write_end, False)
        self._read_end, self._write_end = read_end, write_end
        self._thread = threading.Thread(target=self._run, name="tickhouse-fast-path", daemon=True)
        self._thread.start()
        return path

    def opened(self) -> None:
        """xml2arrow has opened the pipe by path (its own descriptor): ours can go."""
        if self._read_end is not None:
            os.close(self._read_end)
            self._read_end = None

    def close(self, *, finish: bool) -> None:
        """Wait for the thread: with `finish`, until every byte was read and checked (it
        keeps checking once xml2arrow stops reading); otherwise stop it now."""
        if not finish:
            self._stop.set()
        self.opened()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._checked.next_chunk()
                if not chunk:
                    break
                if self._write_end is not None and not self._write(memoryview(chunk)):
                    self._close_write_end()  # xml2arrow stopped reading; keep checking
        except BaseException as exc:  # the source broke (I/O, corrupt gzip): decline later
            self.failure = exc
        finally:
            self._close_write_end()

    def _write(self, data: memoryview) -> bool:
        assert self._write_end is not None
        while data:
            try:
                data = data[os.write(self._write_end, data) :]
            except BlockingIOError:
                select.select([], [self._write_end], [], 0.1)
                if self._stop.is_set():
                    return False
            except BrokenPipeError:
                return False
        return True

    def _close_write_end(self) -> None:
        if self._write_end is not None:
            os.close(self._write_end)
            self._write_end = None


def _is_xml_char(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


_START_TAG_REST = re.compile(rb"""(?:\s+[^\s=/>]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*\s*(/?)>""")


def _text_beside_children(window: bytes, name: bytes, settled: int) -> int:
    """How many <name> elements starting in window[:settled] hold anything but text (another
    element, a comment, CDATA, a PI) or end past the window: lxml's `.text` stops at the first
    child, xml2arrow joins all the element's text. Runs only for profiles that read text."""
    doubtful = 0
    start = window.find(b"<" + name, 0, settled)
    while start >= 0:
        after = start + 1 + len(name)
        tag = _START_TAG_REST.match(window, after)
        if tag is not None and not tag[1]:
            following = window.find(b"<", tag.end())
            if following < 0 or not window.startswith(b"</" + name, following):
                doubtful += 1
        elif (
            tag is None
            and window[after : after + 1] not in (b"", b":")
            and not (window[after : after + 1].isalnum() or window[after : after + 1] in b"_.-")
        ):
            doubtful += 1  # a start tag this check cannot read
        start = window.find(b"<" + name, after, settled)
    return doubtful


# --- the rows ------------------------------------------------------------------------------


def _checked(column: pa.Array, read: _Read) -> pa.Array:
    """A value read by xml2arrow, as lxml reads it, or FastPathDeclined if lxml would refuse
    the file or read the value differently."""
    if column.null_count == len(column):
        return column
    data = column.buffers()[2]
    values = b"" if data is None else data.to_pybytes()
    if len(values.translate(None, _CONTROL)) != len(values):
        raise FastPathDeclined(f"{read.column}: a control character XML does not allow")
    if read.text:
        # XML turns a line end into LF; xml2arrow keeps CR in element text (a CR from a
        # character reference is kept by both, so the two cannot be told apart here).
        if b"\r" in values or b"]]>" in values:
            raise FastPathDeclined(f"{read.column}: a CR or ']]>' in element text")
        return pc.utf8_trim(column, characters=_PY_WHITESPACE)
    if b"<" in values:
        raise FastPathDeclined(f"{read.column}: '<' in an attribute value")
    return column


# Child rows waiting for the nested tables to catch up (xml2arrow fills and flushes each table
# on its own): past this many, the nested elements are too rare to stream by record.
_MAX_PENDING_ROWS = 1 << 21


class _ChildRows:
    """Turns the `children` table (one row per child element, in document order, with the
    record's attributes in its first row and the record's number beside each) and the nested
    tables (one per child whose children are read: a row per grandchild, numbered by record,
    child and grandchild, with the child's attributes in its first row) into one row per
    record: its attributes, and each path's value, picked as lxml's ElementPath picks it.
    xml2arrow flushes each table when it is full, so a record is read once every table has
    moved past it (its last rows may come in the next batch)."""

    def __init__(self, plan: _Plan, schemas: Mapping[str, pa.Schema]) -> None:
        self._plan = plan
        self._schemas = schemas
        self._tables = list(schemas)
        self._pending: dict[str, list[pa.RecordBatch]] = {t: [] for t in self._tables}
        self._seen = dict.fromkeys(self._tables, -1)  # the last record number each table gave
        self.records = 0  # records yielded (and the number of the next one)

    def feed(self, table: str, batch: pa.RecordBatch) -> Iterator[dict[_Pick, pa.Array]]:
        self._pending[table].append(batch)
        self._seen[table] = batch.column("<record>")[batch.num_rows - 1].as_py()
        ready = min(self._seen.values())  # records before it are complete in every table
        if ready > self.records:
            yield self._cut(ready)
        if sum(b.num_rows for b in self._pending["children"]) > _MAX_PENDING_ROWS:
            raise FastPathDeclined("grandchild elements too far apart to read by record")

    def finish(self) -> Iterator[dict[_Pick, pa.Array]]:
        if any(b.num_rows for b in self._pending["children"]):
            yield self._cut(None)

    def _cut(self, ready: int | None) -> dict[_Pick, pa.Array]:
        """The values of the records before `ready` (all, with None); the rest waits."""
        heads: dict[str, pa.RecordBatch] = {}
        for table in self._tables:
            rows = _concat(self._pending[table], self._schemas[table])
            at = rows.num_rows
            if ready is not None and rows.num_rows:
                numbers = rows.column("<record>").to_numpy(zero_copy_only=False)
                at = int(numbers.searchsorted(ready))
            heads[table] = rows.slice(0, at)
            self._pending[table] = [rows.slice(at)] if at < rows.num_rows else []
        return self._records(heads)

    def _records(self, tables: Mapping[str, pa.RecordBatch | None]) -> dict[_Pick, pa.Array]:
        rows = tables["children"]
        assert rows is not None
        record = rows.column("<record>")
        first = pc.equal(rows.column("<child>"), 0)
        numbers = record.filter(first)
        count = len(numbers)
        expected = pc.add(_iota(count), pa.scalar(self.records, pa.uint32()))
        if not numbers.equals(expected):
            # A record without a child the profile reads (its attributes would join the next
            # record's), or a second records parent (numbering starts again): lxml's to read.
            raise FastPathDeclined("a record without a child element the profile reads")
        self.records += count
        attributes = {
            read.column: _checked(rows.column(read.column).filter(first), read)
            for read in self._plan.record_attributes
        }
        out = {p: attributes[p.read.column] for p in self._plan.picks if p.read.kind == "record"}
        children = self._plan.children
        nested = {
            name: _Nested(tables[_nested_table(name)], rows, reads)
            for name, reads in self._plan.nested.items()
        }
        # Every column read at the children's level, one value per child row.
        values: dict[str, pa.Array] = {}
        for name, reads in children.items():
            for read in reads:
                if name in nested:
                    values[read.column] = nested[name].own(read)
                else:
                    values[read.column] = _checked(rows.column(read.column), read)
        if len(children) == 1:
            # Only that child's elements end a row: each row is one.
            present = {name: pa.repeat(pa.scalar(True), rows.num_rows) for name in children}
        else:
            present = {
                name: nested[name].has_rows
                if name in nested
                else _any([pc.is_valid(values[read.column]) for read in reads])
                for name, reads in children.items()
            }
            if not pc.all(_any(list(present.values()))).as_py():
                # A row with no value could be any child's: which came first is unknown (a
                # child whose grandchildren are read but that has none is such a row too).
                raise FastPathDeclined("a child element without any value the profile reads")
        for name, table in nested.items():
            lacking = pc.and_(present[name], pc.invert(table.has_rows))
            if children[name] and pc.any(lacking).as_py():
                # Its attributes wait in the nested table for a row, and join the next one's.
                raise FastPathDeclined(f"a <{name}> without the child elements the profile reads")
        for pick in self._plan.picks:
            if pick.read.kind == "child":
                if len(children) == 1 and pick.plain:
                    # A record's first row is its first child.
                    out[pick] = values[pick.read.column].filter(first)
                    continue
                mask = _kept(pick.step, present[pick.read.name], record, values)
                out[pick] = values[pick.read.column].take(_first_per_record(mask, record, numbers))
            elif pick.read.kind == "grand":
                assert pick.outer is not None
                under = _kept(pick.outer, present[pick.read.child], record, values)
                out[pick] = nested[pick.read.child].picked(pick, under, numbers)
        return out


class _Nested:
    """The rows of one nested table for some records: a row per grandchild element of one
    child name, numbered by record, the child's row in the children table and its own place."""

    def __init__(
        self,
        rows: pa.RecordBatch | None,
        children: pa.RecordBatch,
        grand: Mapping[str, list[_Read]],
    ) -> None:
        assert rows is not None
        self.rows = rows
        self.record = rows.column("<record>")
        self.key = _key(self.record, rows.column("<child>"))
        self.child_key = _key(children.column("<record>"), children.column("<child>"))
        first = pc.equal(rows.column("<grand>"), 0)
        self._first = first
        # For each child row, the nested row that starts its element (null: none).
        self._starts = pc.index_in(self.child_key, value_set=self.key.filter(first))
        self.has_rows = pc.is_valid(self._starts)
        self.grand = grand
        self.values = {
            read.column: _checked(rows.column(read.column), read)
            for grand in self.grand.values()
            for read in grand
        }

    def own(self, read: _Read) -> pa.Array:
        """The child's attribute, one value per child row (xml2arrow puts it in the first row
        of the child's grandchildren)."""
        column = _checked(self.rows.column(read.column).filter(self._first), read)
        return column.take(self._starts)

    def picked(self, pick: _Pick, under: pa.Array, numbers: pa.Array) -> pa.Array:
        """Per record (`numbers`), the value of the first grandchild, in document order, that
        `pick.step` keeps under a child row `under` keeps (null when none)."""
        name = pick.read.name.partition("/")[2]
        if len(self.grand) == 1:
            present = pa.repeat(pa.scalar(True), self.rows.num_rows)
        else:
            present = _any([pc.is_valid(self.values[r.column]) for r in self.grand[name]])
            others = [
                pc.is_valid(self.values[r.column]) for reads in self.grand.values() for r in reads
            ]
            if not pc.all(_any(others)).as_py():
                raise FastPathDeclined("a grandchild element without any value the profile reads")
        parents = pc.is_in(self.key, value_set=self.child_key.filter(under))
        mask = pc.and_(_kept(pick.step, present, self.key, self.values), parents)
        return self.values[pick.read.column].take(_first_per_record(mask, self.record, numbers))


def _key(record: pa.Array, child: pa.Array) -> pa.Array:
    """(record, child row) as one uint64."""
    high = pc.multiply(pc.cast(record, pa.uint64()), pa.scalar(1 << 32, pa.uint64()))
    return pc.add(high, pc.cast(child, pa.uint64()))


def _concat(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    joined = pa.Table.from_batches(batches, schema=schema).combine_chunks()
    return joined.to_batches()[0] if joined.num_rows else pa.RecordBatch.from_pylist([], schema)


def _kept(
    step: _Filter, present: pa.Array, group: pa.Array, values: Mapping[str, pa.Array]
) -> pa.Array:
    """The rows one step keeps: among the rows of its element name (`present`), those whose
    `where` column equals the value, or the `position`-th of each parent (`group`), or all."""
    mask = present
    if step.where is not None:
        equal = pc.equal(values[step.where.column], pa.scalar(step.value, pa.string()))
        mask = pc.and_(mask, pc.fill_null(equal, False))
    if step.position is not None:
        rows = pc.indices_nonzero(present)
        their = group.take(rows)
        starts = _first_of_each(their)
        # Rank of each row within its parent: its index minus its parent's first index.
        run = pc.subtract(pc.cumulative_sum(pc.cast(starts, pa.int64())), 1)
        first_index = pc.indices_nonzero(starts).take(run)
        rank = pc.subtract(pc.cast(_iota(len(rows)), pa.int64()), pc.cast(first_index, pa.int64()))
        kept = rows.filter(pc.equal(rank, step.position - 1))
        mask = pc.is_in(_iota(len(present)), value_set=pc.cast(kept, pa.uint32()))
    return mask


def _first_per_record(mask: pa.Array, record: pa.Array, numbers: pa.Array) -> pa.Array:
    """For each record (`numbers`), the first row `mask` keeps, or null when it keeps none."""
    rows = pc.indices_nonzero(mask)
    their_records = record.take(rows)
    starts = _first_of_each(their_records)
    picked, picked_records = rows.filter(starts), their_records.filter(starts)
    if len(picked) == len(numbers) and picked_records.equals(numbers):
        return picked
    # Some records have none: place by number (null where none).
    return picked.take(pc.index_in(numbers, value_set=picked_records))


@lru_cache(maxsize=1)
def _iota_block() -> pa.Array:
    return pa.array(range(1 << 18), pa.uint32())


def _iota(count: int) -> pa.Array:
    """0, 1, ..., count - 1 (uint32)."""
    block = _iota_block()
    if count <= len(block):
        return block.slice(0, count)
    return pa.array(range(count), pa.uint32())


def _any(masks: list[pa.Array]) -> pa.Array:
    result = masks[0]
    for mask in masks[1:]:
        result = pc.or_(result, mask)
    return result


def _first_of_each(ordered: pa.Array) -> pa.Array:
    """True where a value differs from the one before it (the first of each run)."""
    if len(ordered) == 0:
        return pa.array([], pa.bool_())
    before = pa.concat_arrays([pa.nulls(1, ordered.type), ordered[:-1]])
    return pc.fill_null(pc.not_equal(ordered, before), True)


def read_fast(
    open_source: Callable[[], IO[bytes]],
    *,
    source_file: str,
    profile: Profile,
    venues: Mapping[str, Venue],
    head: bytes | None = None,
    root_attributes: Mapping[str, str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Batches of the file in the parsed-ticks contract (line unknown: null), or
    FastPathDeclined — possibly after some batches were yielded, which the caller discards.
    `head`: the file's first bytes (up to 64 KiB, maybe gzip), when the caller has read them.
    `root_attributes`: the root's attributes as `ticks_xml.sniff_root` reads them (callers from
    before the layout was sniffed here pass them; the head gives the same)."""
    plan = _plan(profile)
    if head is None:
        with open_source() as stream:
            head = stream.read(SNIFF_BYTES)
    layout = sniff_layout(head, profile)
    if root_attributes is not None:
        layout = dataclasses.replace(layout, root_attributes=dict(root_attributes))
    parser = _parser(_config(plan, layout))
    written = dict(layout.children)
    text_elements = sorted({written[r.name] for r in plan.reads if r.text})
    children = None
    if plan.children:
        tables = ["children", *map(_nested_table, plan.nested)]
        children = _ChildRows(plan, {table: parser.schema(table) for table in tables})
    rows = roots = 0
    with open_source() as raw:
        checked = _CheckedStream(open_tick_stream(raw), layout, text_elements)
        feeder = _Feeder(checked)
        finished = False
        batches = None
        try:
            # With child rows a record takes a row per child: more rows per batch keep the
            # batches about `batch_rows` records long.
            limit = batch_rows * (1 + len(plan.children))
            batches = parser.parse_batches(feeder.source(), max_rows_per_batch=limit)
            feeder.opened()
            for table, batch in batches:
                if table == "root":
                    roots += batch.num_rows
                    continue
                if children is None:
                    parts = [
                        {
                            p: _checked(batch.column(p.read.column), p.read)
                            for p in plan.picks
                            if p.read.kind == "record"
                        }
                    ]
                else:
                    parts = list(children.feed(table, batch))
                for values in parts:
                    yield _contract(values, profile, layout, rows, source_file, venues)
                    rows += len(next(iter(values.values())))
            for values in children.finish() if children is not None else ():
                yield _contract(values, profile, layout, rows, source_file, venues)
                rows += len(next(iter(values.values())))
            finished = True
        except FastPathDeclined:
            raise
        except Exception as exc:
            # xml2arrow's errors carry no record (and some, e.g. on bytes that are not UTF-8,
            # surface as a TypeError), nor do bad values: lxml reads the file again and says
            # where it breaks.
            raise FastPathDeclined(f"{type(exc).__name__}: {exc}") from exc
        finally:
            batches = None  # xml2arrow's thread stops and closes its end of the pipe
            feeder.close(finish=finished)
        failure = feeder.failure
        if failure is not None:  # the source broke (I/O, corrupt or cut gzip)
            raise FastPathDeclined(f"{type(failure).__name__}: {failure}") from failure
    _verify(checked, layout, rows, roots)


def _verify(checked: _CheckedStream, layout: Layout, rows: int, roots: int) -> None:
    if checked.doubt:
        raise FastPathDeclined(f"{checked.doubt} is lxml's to read")
    # lxml reads every element of the record's name, at any depth and under any prefix.
    if checked.records != rows:
        raise FastPathDeclined(f"{rows} rows read but {checked.records} record tags in the bytes")
    if checked.other_prefixes:
        raise FastPathDeclined("a record name under another namespace prefix is lxml's to read")
    if checked.text_beside_children:
        raise FastPathDeclined("element text beside child elements is lxml's to read")
    ending = checked.tail.rstrip(b" \t\r\n")
    end_tag = re.compile(rb"</" + re.escape(layout.root.encode()) + rb"\s*>\Z")
    if roots != 1 or not end_tag.search(ending):
        raise FastPathDeclined("a document that does not end with its root's end tag")


def _contract(
    values: Mapping[_Pick, pa.Array],
    profile: Profile,
    layout: Layout,
    rows: int,
    source_file: str,
    venues: Mapping[str, Venue],
) -> pa.RecordBatch:
    """Rows `rows + 1 ...` in the contract, from the values read; the profile's rules applied
    by `fields.field_texts`, as the lxml reader applies them."""
    count = len(next(iter(values.values())))

    def value_of(path: FieldPath) -> pa.Array:
        pick = _pick_of(path)
        if pick.read.kind == "root":
            value = layout.root_attributes.get(pick.read.name)
            return pa.repeat(pa.scalar(value, pa.string()), count)
        return values[pick]

    try:
        texts = field_texts(profile, value_of, count)
    except BadValue as bad:  # lxml reads the file again and names the record
        raise FastPathDeclined(f"{bad.column}: {bad.reason}") from None
    ones = pa.repeat(pa.scalar(1, pa.int64()), count)
    records = pc.cumulative_sum(ones, start=rows)  # rows + 1, rows + 2, ...
    lines = pa.nulls(count, pa.int64())
    return contract_batch(texts, records, lines, source_file, venues)
