"""The reliability tally: every bad-input case and injected fault records what it expected and
what the tables held afterwards, one JSON line each, so `make reliability` can print the totals.

Recording never replaces an assertion: the tests assert first and record what they saw.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tickhouse_dagster.settings import PROJECT_ROOT

TALLY_FILE = Path(
    os.environ.get("TICKHOUSE_RELIABILITY_TALLY")
    or PROJECT_ROOT / "test-artifacts" / "reliability.jsonl"
)


def record(
    kind: str,
    case: str,
    *,
    expected_rows: int,
    found_rows: int,
    duplicated_rows: int = 0,
    outcome: str = "",
) -> None:
    """kind: 'bad_input' or 'fault'; rows are those of the whole table(s) checked, so
    lost = expected - (found - duplicated) counts every missing row anywhere."""
    TALLY_FILE.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "kind": kind,
        "case": case,
        "expected_rows": expected_rows,
        "found_rows": found_rows,
        "duplicated_rows": duplicated_rows,
        "lost_rows": expected_rows - (found_rows - duplicated_rows),
        "outcome": outcome,
        "at": time.time(),
    }
    with TALLY_FILE.open("a") as out:
        out.write(json.dumps(entry) + "\n")
