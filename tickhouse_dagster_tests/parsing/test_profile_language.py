"""The profile language: composed fields (templates), picks from repeated elements by position
and by attribute, read the same by the lxml reader and the compiled fast path; profiles checked
when they load, naming the file, the field and the reason."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from tickhouse_dagster.parsing import TickFileError, read_tick_file
from tickhouse_dagster.parsing.fast_path import FastPathDeclined, read_fast, supports
from tickhouse_dagster.parsing.profiles import (
    ProfileError,
    load_profiles,
    parse_path,
    profile_from_mapping,
    select_profile,
    skipped_profile_files,
)
from tickhouse_dagster.parsing.readers import consume_tick_file

NS = "http://www.fixprotocol.org/FIXML-4-4"


def report(trade_id: str, px: str, sides: list[tuple[str, str]], mmy: str = "202609") -> str:
    """A clearing-style TrdCaptRpt: product ID + contract month, both sides with parties."""
    parts = [
        f'<TrdCaptRpt RptID="R{trade_id}" TrdID="{trade_id}" TransTyp="0" LastQty="2" '
        f'LastPx="{px}" TrdDt="2026-09-14" TxnTm="2026-09-14T09:30:00-05:00">',
        '<Hdr SID="CME" TID="FIRM"/>',
        f'<Instrmt ID="ZC" SecTyp="FUT" MMY="{mmy}" Exch="CBT"/>',
    ]
    for side, firm in sides:
        parts.append(
            f'<RptSide Side="{side}" InptSrc="{firm}"><Pty ID="{firm}" R="1"/>'
            f'<Pty ID="ACCT-{firm}" R="24"/></RptSide>'
        )
    return "".join(parts) + "</TrdCaptRpt>\n"


def document(*reports: str, namespace: bool = True) -> bytes:
    xmlns = f' xmlns="{NS}"' if namespace else ""
    body = '<Batch><Hdr SID="CME" Snt="2026-09-14T20:00:00Z"/>\n' + "".join(reports) + "</Batch>"
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<FIXML{xmlns} v="5.0">{body}</FIXML>'.encode()


REPORTS = [
    report("1", "420.25", [("1", "FIRMA"), ("2", "FIRMB")]),
    report("2", "420.5", [("2", "FIRMB"), ("1", "FIRMC")], mmy="202612"),
    report("3", "421", [("1", "FIRMA")]),  # one side only: [2] and a missing predicate are null
]

BASE = {
    "name": "clearing",
    "root": ["FIXML"],
    "record": "TrdCaptRpt",
    "fields": {
        "venue": {"path": "Instrmt/@Exch", "map": {"CBT": "CBOT"}},
        "symbol": {"template": "{Instrmt/@ID}{Instrmt/@MMY}"},
        "trade_date": {"path": "@TrdDt", "optional": True},
        "ts": "@TxnTm",
        "trade_id": "@TrdID",
        "price": "@LastPx",
        "quantity": "@LastQty",
        "side": {"path": "RptSide[1]/@Side", "optional": True, "map": {"1": "B", "2": "S"}},
    },
}


def profile_with(**fields: object):
    spec = yaml.safe_load(yaml.safe_dump(BASE))
    spec["fields"].update(fields)
    return profile_from_mapping(spec, "clearing.yaml")


def lxml_table(data: bytes, profile, venues) -> pa.Table:
    return read_tick_file(io.BytesIO(data), source_file="f.xml", profile=profile, venues=venues)


def assert_same_rows(data: bytes, profile, venues, batch_rows: int = 65_536) -> pa.Table:
    expected = lxml_table(data, profile, venues)
    batches = read_fast(
        lambda: io.BytesIO(data),
        source_file="f.xml",
        profile=profile,
        venues=venues,
        batch_rows=batch_rows,
    )
    got = pa.Table.from_batches(list(batches), schema=expected.schema)
    assert got.drop(["line"]).to_pylist() == expected.drop(["line"]).to_pylist()
    return expected


# (field overrides, the values they give for the three reports)
CASES = {
    "template": ({}, "symbol", ["ZC202609", "ZC202612", "ZC202609"]),
    "template-literal": (
        {"symbol": {"template": "{Instrmt/@ID}:{Instrmt/@MMY} {{m}}"}},
        "symbol",
        ["ZC:202609 {m}", "ZC:202612 {m}", "ZC:202609 {m}"],
    ),
    "position": (
        {"side": {"path": "RptSide[2]/@Side", "optional": True, "map": {"1": "B", "2": "S"}}},
        "side",
        ["S", "B", None],
    ),
    "predicate": (
        {"trade_id": {"template": "{@TrdID}/{RptSide[@Side='2']/@InptSrc}", "fallback": "@TrdID"}},
        "trade_id",
        ["1/FIRMB", "2/FIRMB", "3"],  # report 3 has no seller: the fallback
    ),
    "predicate-double-quoted": (
        {"side": {"path": 'RptSide[@InptSrc="FIRMC"]/@Side', "optional": True}},
        "side",
        [None, "1", None],
    ),
}


@pytest.mark.parametrize("namespace", [True, False], ids=["fixml-ns", "no-ns"])
@pytest.mark.parametrize("case", list(CASES))
def test_composed_fields_and_picks_same_rows_on_both_paths(case, namespace, venues):
    fields, column, values = CASES[case]
    profile = profile_with(**fields)
    assert supports(profile)
    data = document(*REPORTS, namespace=namespace)
    table = assert_same_rows(data, profile, venues)
    assert table[column].to_pylist() == values
    assert table["venue"].to_pylist() == ["CBOT"] * 3
    # The reader users run picks the compiled path for it (it did not decline).
    rows, reader = consume_tick_file(
        lambda: io.BytesIO(gzip.compress(data)),
        lambda batches: pa.Table.from_batches(list(batches)),
        source_file="f.xml.gz",
        profile=profile,
        venues=venues,
    )
    assert reader == "xml2arrow"
    assert rows[column].to_pylist() == values


def test_picks_hold_across_batch_boundaries(venues):
    profile = profile_with(
        side={"path": "RptSide[2]/@Side", "optional": True, "map": {"1": "B", "2": "S"}}
    )
    data = document(*(REPORTS * 40))
    table = assert_same_rows(data, profile, venues, batch_rows=7)
    assert table["side"].to_pylist() == ["S", "B", None] * 40


def test_a_nested_pick_is_read_by_lxml_and_declined_by_the_fast_path(venues):
    # The buyer's clearing firm: a party of the side whose Side is 1, by its role.
    profile = profile_with(trade_id={"template": "{@TrdID}-{RptSide[@Side='1']/Pty[@R='1']/@ID}"})
    assert not supports(profile)
    data = document(*REPORTS)
    table = lxml_table(data, profile, venues)
    assert table["trade_id"].to_pylist() == ["1-FIRMA", "2-FIRMC", "3-FIRMA"]
    with pytest.raises(FastPathDeclined, match="reaches below the record's children"):
        list(read_fast(lambda: io.BytesIO(data), source_file="f", profile=profile, venues=venues))
    rows, reader = consume_tick_file(
        lambda: io.BytesIO(data),
        lambda batches: pa.Table.from_batches(list(batches)),
        source_file="f.xml",
        profile=profile,
        venues=venues,
    )
    assert reader.startswith("lxml (fast path declined: path ")
    assert rows["trade_id"].to_pylist() == table["trade_id"].to_pylist()


def test_a_required_template_with_a_missing_part_names_record_and_field(venues):
    profile = profile_with(symbol={"template": "{Instrmt/@ID}{Instrmt/@CFI}"})
    with pytest.raises(TickFileError) as error:
        list(
            consume_tick_file(
                lambda: io.BytesIO(document(*REPORTS)),
                lambda batches: list(batches),
                source_file="f.xml",
                profile=profile,
                venues=venues,
            )
        )
    message = str(error.value)
    assert message.startswith("f.xml, record 1, line 3, field symbol: required value missing")
    assert "'{Instrmt/@ID}{Instrmt/@CFI}'" in message


# --- validation when profiles load ---------------------------------------------------------


def write_profile(folder: Path, text: str, name: str = "feed.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


GOOD = """name: feed
record: T
fields:
  venue: {path: "@v"}
  symbol: {path: "@s"}
  ts: "@t"
  trade_id: "@i"
  price: "@p"
  quantity: "@q"
"""

INVALID = {
    "concat-garbage": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {path: "concat(Instrmt/@ID, Instrmt/@MMY)"}'),
        "field 'symbol': path 'concat(Instrmt/@ID, Instrmt/@MMY)': 'concat(Instrmt' is not an "
        "element step",
    ),
    "unbalanced-bracket": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {path: "Side[2/@s"}'),
        "field 'symbol': path 'Side[2/@s' has unbalanced brackets",
    ),
    "position-zero": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {path: "Side[0]/@s"}'),
        "field 'symbol': path 'Side[0]/@s': positions count from 1",
    ),
    "unquoted-predicate": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {path: "Side[@S=1]/@s"}'),
        "field 'symbol': path 'Side[@S=1]/@s': 'Side[@S=1]' is not an element step",
    ),
    "template-brace": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {template: "{@a}{@b"}'),
        "field 'symbol': template '{@a}{@b' has an unbalanced '{'",
    ),
    "template-constant": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {template: "ZC"}'),
        "field 'symbol': template 'ZC' has no {path}",
    ),
    "path-and-template": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {path: "@s", template: "{@s}"}'),
        "field 'symbol': needs exactly one of 'path' and 'template'",
    ),
    "unknown-field-key": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {path: "@s", mapping: {a: b}}'),
        "field 'symbol': unknown keys ['mapping']",
    ),
    "unknown-profile-key": (GOOD + "records: T\n", "profile 'feed': unknown keys ['records']"),
    "unknown-column": (GOOD + '  isin: "@isin"\n', "field 'isin': not a ticks column"),
    "bad-map": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {path: "@s", map: [a, b]}'),
        "field 'symbol': 'map' must be a non-empty mapping",
    ),
    "bad-map-value": (
        GOOD.replace('symbol: {path: "@s"}', 'symbol: {path: "@s", map: {a: [b]}}'),
        "field 'symbol': map value ['b'] (for 'a') is not a text or null",
    ),
    "bad-optional": (
        GOOD + '  side: {path: "@x", optional: maybe}\n',
        "field 'side': 'optional' must be true or false",
    ),
    "missing-field": (
        GOOD.replace('  price: "@p"\n', ""),
        "profile 'feed': missing required fields ['price']",
    ),
    "required-made-optional": (
        GOOD.replace('price: "@p"', 'price: {path: "@p", optional: true}'),
        "field 'price': cannot be optional",
    ),
    "not-a-mapping": ("- a\n- b\n", "not a profile (a YAML mapping is needed)"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_profiles_are_refused_naming_file_field_and_reason(case, tmp_path):
    text, reason = INVALID[case]
    folder = write_profile(tmp_path / "profiles", text)
    with pytest.raises(ProfileError) as error:
        load_profiles(folder)
    message = str(error.value)
    assert message.startswith(str(folder / "feed.yaml")), message
    assert reason in message, message


def test_a_valid_profile_loads(tmp_path):
    profiles = load_profiles(write_profile(tmp_path / "profiles", GOOD))
    assert profiles["feed"].source == str(tmp_path / "profiles/feed.yaml")


def test_paths_print_as_written():
    for text in ["@a", "/@a", "A/@b", "A", "A[2]/B/@c", "A[@k='v w']/B[@r='4']/@ID"]:
        assert str(parse_path(text)) == text


def test_a_venues_file_in_the_profiles_folder_is_skipped_with_a_note(tmp_path):
    folder = write_profile(tmp_path / "profiles", GOOD)
    (folder / "venues.yaml").write_text(
        'CME:\n  timezone: America/Chicago\n  sessions:\n    - {open: "17:00", close: "16:00"}\n'
    )
    assert set(load_profiles(folder)) == {"feed", "fixml", "tickhouse"}
    [note] = skipped_profile_files(folder)
    assert note.startswith(f"{folder / 'venues.yaml'}: venue reference data, not a profile")
    assert "TICKHOUSE_VENUES_FILE" in note


def test_another_file_in_the_profiles_folder_is_refused_by_name(tmp_path):
    folder = write_profile(tmp_path / "profiles", "settings:\n  retries: 3\n", "notes.yaml")
    with pytest.raises(ProfileError) as error:
        load_profiles(folder)
    message = str(error.value)
    assert message.startswith(f"{folder / 'notes.yaml'}, profile ?: not a profile: needs")
    assert "has settings" in message


def test_two_profiles_claiming_one_root_are_named_with_how_to_choose(tmp_path):
    folder = write_profile(
        tmp_path / "profiles", yaml.safe_dump({**BASE, "name": "cme_clearing"}), "cme.yaml"
    )
    profiles = load_profiles(folder)
    with pytest.raises(ProfileError) as error:
        select_profile("CME/day1.xml", "FIXML", profiles)
    message = str(error.value)
    assert "2 profiles claim root element <FIXML>" in message
    assert f"'cme_clearing' ({folder / 'cme.yaml'})" in message
    assert "'fixml' (" in message
    assert "--profile" in message and "TICKHOUSE_PROFILE_RULES" in message
    assert "key_patterns" in message
    # Either way of choosing works.
    assert select_profile("CME/day1.xml", "FIXML", profiles, forced="cme_clearing").name == (
        "cme_clearing"
    )
    assert select_profile(
        "CME/day1.xml", "FIXML", profiles, rules=(("CME/*", "cme_clearing"),)
    ).name == ("cme_clearing")
