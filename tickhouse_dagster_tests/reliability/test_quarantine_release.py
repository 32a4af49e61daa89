"""A quarantined file is listed with its reason and released with one command; the sensor then
offers it again and, with the cause fixed, it ingests."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import build_sensor_context

from tickhouse_dagster.cli import main
from tickhouse_dagster.defs.resources import resources_from_env
from tickhouse_dagster.defs.sensors import build_landing_sensor
from tickhouse_dagster.settings import current
from tickhouse_dagster.storage.quarantine import quarantined_key, reason_key
from tickhouse_dagster_tests.defs.helpers import (
    definitions_with,
    ingest,
    requested_keys,
    step_error,
)

KEY = "XTKS/2024-01-04/prints.xml"
TOKYO_FILE = (
    b'<tickhouse venue="XTKS" trade_date="2024-01-04">\n'
    b'<trade id="1" symbol="7203" ts="2024-01-04T09:00:00+09:00" price="2500" qty="100"/>\n'
    b'<trade id="2" symbol="7203" ts="2024-01-04T09:00:01+09:00" price="2501" qty="200"/>\n'
    b"</tickhouse>"
)
TOKYO_VENUE = """XTKS:
  timezone: Asia/Tokyo
  session: {open: "09:00", close: "15:30"}
  tick_sizes:
    - [0, 1]
"""


def offered(resources, instance) -> set[str]:
    context = build_sensor_context(
        instance=instance, resources={"landing": resources["landing"], "feed": resources["feed"]}
    )
    return set(requested_keys(build_landing_sensor(current())(context)))


def test_quarantine_list_and_release(
    home: Path, resources, instance, monkeypatch: pytest.MonkeyPatch, capsys
):
    store = resources["landing"].store()
    store.write(KEY, TOKYO_FILE)
    failed = ingest(definitions_with(resources), instance, KEY)
    assert not failed.success and "unknown venue 'XTKS'" in step_error(failed)
    assert store.exists(quarantined_key(KEY)) and not store.exists(KEY)
    assert KEY not in offered(resources, instance)

    assert main(["quarantine"]) == 0
    listing = capsys.readouterr().out
    assert f"{KEY}  [parse," in listing
    assert f"{KEY}, record 1, line 2, field venue: unknown venue 'XTKS'" in listing
    assert "1 file(s) in quarantine" in listing

    # The cause is fixed (the venue is added to the reference data), then the file released.
    venues = home / "venues.yaml"
    venues.write_text(TOKYO_VENUE)
    monkeypatch.setenv("TICKHOUSE_VENUES_FILE", str(venues))
    assert main(["quarantine", "--release", KEY]) == 0
    assert f"released {KEY}" in capsys.readouterr().out
    assert store.exists(KEY)
    assert not store.exists(quarantined_key(KEY)) and not store.exists(reason_key(KEY))

    fixed = dict(resources_from_env())
    assert KEY in offered(fixed, instance)
    result = ingest(definitions_with(fixed), instance, KEY)
    assert result.success, step_error(result)
    rows = fixed["lakehouse"].lakehouse().table("ticks").scan().to_arrow()
    assert sorted(rows["trade_id"].to_pylist()) == ["1", "2"]
    assert main(["quarantine"]) == 0
    assert "0 file(s) in quarantine" in capsys.readouterr().out


def test_release_refuses_what_it_cannot_do(resources, capsys):
    store = resources["landing"].store()
    assert main(["quarantine", "--release", "KRX/never-quarantined.xml"]) == 1
    assert "'KRX/never-quarantined.xml' is not in the quarantine" in capsys.readouterr().err
    store.write("_quarantine/KRX/a.xml", b"<tickhouse/>")
    store.write("KRX/a.xml", b"<tickhouse/>")  # a new copy arrived meanwhile: not overwritten
    assert main(["quarantine", "--release", "KRX/a.xml"]) == 1
    assert "exists in the landing area again" in capsys.readouterr().err
    assert main(["quarantine", "--release", "../etc/passwd"]) == 1
