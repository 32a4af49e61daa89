"""A file's profile: forced, by rule, by key pattern or by root element; user profiles as YAML."""

from __future__ import annotations

import pytest

from tickhouse_dagster.parsing import read_tick_file
from tickhouse_dagster.parsing.profiles import (
    ProfileError,
    load_profiles,
    parse_profile_rules,
    select_profile,
)
from tickhouse_dagster.parsing.ticks_xml import sniff_root_element
from tickhouse_dagster_tests.conftest import xml_stream


def test_root_element_recognises_profile(profiles):
    assert select_profile("a/b.xml", "tickhouse", profiles).name == "tickhouse"
    assert select_profile("a/b.xml", "FIXML", profiles).name == "fixml"


def test_key_pattern_and_rules_win_over_root(profiles):
    assert select_profile("x/day.fixml.xml", "tickhouse", profiles).name == "fixml"
    rules = parse_profile_rules("vendor/*=tickhouse, *.fixml.xml=fixml")
    assert (
        select_profile("vendor/day.fixml.xml", "FIXML", profiles, rules=rules).name == "tickhouse"
    )
    assert select_profile("other.xml", "FIXML", profiles, forced="tickhouse").name == "tickhouse"


def test_unknown_profile_and_unrecognised_file(profiles):
    with pytest.raises(ProfileError, match=r"a.xml: unknown profile 'nope' \(forced\)"):
        select_profile("a.xml", "FIXML", profiles, forced="nope")
    with pytest.raises(
        ProfileError, match=r"a.xml: no profile recognises this file \(root element <quotes>\)"
    ):
        select_profile("a.xml", "quotes", profiles)
    with pytest.raises(ProfileError, match="not 'pattern=profile'"):
        parse_profile_rules("justapattern")


def test_sniff_root_element_plain_and_gzip():
    import gzip

    document = b'<?xml version="1.0"?>\n<FIXML xmlns="http://www.fixprotocol.org/FIXML-4-4"><Batch>'
    assert sniff_root_element(document) == "FIXML"
    assert sniff_root_element(gzip.compress(document + b"</Batch></FIXML>")) == "FIXML"
    assert sniff_root_element(b"not xml at all") is None


def test_user_profile_from_yaml_without_code(tmp_path, venues):
    (tmp_path / "vendor.yaml").write_text(
        """
name: vendor_a
root: [Prints]
record: P
fields:
  venue: {path: "@mkt", default: KRX}
  symbol: {path: "Code"}
  ts: {path: "@t"}
  trade_id: {path: "@n"}
  price: {path: "@px"}
  quantity: {path: "@q"}
  side: {path: "@s", optional: true, map: {buy: B, sell: S}}
"""
    )
    profiles = load_profiles(tmp_path)
    assert {"tickhouse", "fixml", "vendor_a"} <= set(profiles)
    document = """<Prints><P t="2024-01-02T09:00:00+09:00" n="7" px="1500" q="4" s="sell">
      <Code> 005930 </Code></P></Prints>"""
    table = read_tick_file(
        xml_stream(document), source_file="v.xml", profile=profiles["vendor_a"], venues=venues
    )
    row = table.to_pylist()[0]
    assert (row["venue"], row["symbol"], row["side"], row["quantity"]) == ("KRX", "005930", "S", 4)


def test_invalid_profile_file_is_reported(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: broken\nrecord: r\nfields:\n  symbol: '@s'\n")
    with pytest.raises(
        ProfileError, match=r"broken.yaml, profile 'broken': missing required fields \['venue'"
    ):
        load_profiles(tmp_path)
