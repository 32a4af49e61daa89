"""The local landing store: key order, paging, only tick files, unsafe keys refused."""

from __future__ import annotations

import os

import pytest

from tickhouse_dagster.storage.landing import LandingKeyError, LocalLanding


def test_lists_tick_files_in_key_order_and_pages(tmp_path):
    store = LocalLanding(tmp_path)
    for key in [
        "b/2.xml",
        "a/1.xml.gz",
        "a/0.XML",
        "notes.txt",
        ".hidden.xml",
        "_quarantine/x.xml",
    ]:
        store.write(key, b"<x/>")
    assert [f.key for f in store.iter_files()] == ["a/0.XML", "a/1.xml.gz", "b/2.xml"]
    assert [f.key for f in store.iter_files(start_after="a/1.xml.gz")] == ["b/2.xml"]


def test_version_changes_with_content_and_with_mv(tmp_path):
    store = LocalLanding(tmp_path)
    first = store.write("a.xml", b"<x/>")
    second = store.write("a.xml", b"<xy/>")
    assert first.version != second.version and first.run_key.startswith("a.xml@")
    outside = tmp_path.parent / "moved.xml"
    outside.write_bytes(b"<x/>")
    os.utime(outside, ns=(0, 0))  # an old mtime, as `mv` or `cp -p` would keep
    outside.rename(tmp_path / "moved.xml")
    assert store.stat("moved.xml").modified_ns > 10**18  # ctime: it arrived now


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "a/../../b.xml", ""])
def test_unsafe_keys_are_refused(tmp_path, key):
    with pytest.raises(LandingKeyError, match="refused landing key"):
        LocalLanding(tmp_path).open(key)


@pytest.mark.parametrize("key", ["../outside.xml", "/tmp/outside.xml", "a/../../outside.xml"])
def test_unsafe_keys_are_refused_for_every_operation_and_touch_nothing(tmp_path, key):
    root = tmp_path / "landing"
    store = LocalLanding(root)
    for operation in (store.stat, store.open, lambda k: store.write(k, b"<x/>")):
        with pytest.raises(LandingKeyError, match="refused landing key"):
            operation(key)
    assert not (tmp_path / "outside.xml").exists() and not root.exists()


def test_dots_inside_a_name_are_not_a_parent_reference(tmp_path):
    store = LocalLanding(tmp_path)
    assert store.write("KRX/a..b.xml", b"<x/>").key == "KRX/a..b.xml"
