"""Print the reliability tally the tests recorded (test-artifacts/reliability.jsonl): bad-input
cases tried, faults injected, rows expected vs found, lost and duplicated — totals, then one line
per case. Exit status 1 when a row was lost or duplicated anywhere, or nothing was recorded.

    python -m tickhouse_dagster_tests.reliability.report [TALLY_FILE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tickhouse_dagster_tests.reliability.tally import TALLY_FILE

KINDS = {"bad_input": "bad-input cases tried", "fault": "faults injected"}


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render(entries: list[dict[str, Any]], source: Path) -> str:
    lines = [f"reliability report ({source})", ""]
    for kind, label in KINDS.items():
        lines.append(f"{label:<24}{sum(1 for e in entries if e['kind'] == kind):>8}")
    others = sorted({e["kind"] for e in entries} - set(KINDS))
    for kind in others:
        lines.append(f"{kind + ' cases':<24}{sum(1 for e in entries if e['kind'] == kind):>8}")
    totals = {
        name: sum(int(e[name]) for e in entries)
        for name in ("expected_rows", "found_rows", "lost_rows", "duplicated_rows")
    }
    lines += [
        f"{'rows expected':<24}{totals['expected_rows']:>8,}",
        f"{'rows found':<24}{totals['found_rows']:>8,}",
        f"{'rows lost':<24}{totals['lost_rows']:>8,}",
        f"{'rows duplicated':<24}{totals['duplicated_rows']:>8,}",
        "",
        f"{'kind':<10} {'expected':>9} {'found':>9} {'lost':>5} {'dup':>5}  case — outcome",
    ]
    for e in sorted(
        entries, key=lambda e: list(KINDS).index(e["kind"]) if e["kind"] in KINDS else 9
    ):
        lines.append(
            f"{e['kind']:<10} {e['expected_rows']:>9,} {e['found_rows']:>9,} "
            f"{e['lost_rows']:>5} {e['duplicated_rows']:>5}  {e['case']}"
            + (f" — {e['outcome']}" if e.get("outcome") else "")
        )
    verdict = (
        "OK: nothing lost, nothing duplicated"
        if entries and totals["lost_rows"] == 0 and totals["duplicated_rows"] == 0
        else "FAILED: rows lost or duplicated"
        if entries
        else "FAILED: no cases recorded (did the tests run?)"
    )
    return "\n".join([*lines, "", verdict])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else TALLY_FILE
    entries = load(source)
    print(render(entries, source))
    ok = bool(entries) and all(e["lost_rows"] == 0 and e["duplicated_rows"] == 0 for e in entries)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
