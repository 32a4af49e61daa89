"""Exit 0 once `make dev` has done what it promises: every landing file is ingested and the bars
of every trade date hold exactly the distinct ticks (the fresh-machine rehearsal polls this).
Prints what it is still waiting for. Run with the project's venv, in the shell `make dev` uses."""

from __future__ import annotations

import sys

import pyarrow.compute as pc

from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster.storage.pipeline_status import pipeline_status


def main() -> int:
    resources = resolved_resources()
    house = resources["lakehouse"].lakehouse()
    status = pipeline_status(resources["landing"].store(), house)
    if not status.ticks.source_files:
        print("waiting: no ticks yet")
        return 1
    if status.pending_files:
        print(f"waiting: {status.pending_files} landing file(s) not ingested yet")
        return 1
    key = ("venue", "symbol", "trade_date", "trade_id")  # a trade counts once in the bars
    ticks = house.table("ticks").scan(selected_fields=key).to_arrow()
    distinct = ticks.group_by(list(key)).aggregate([]).num_rows
    if not house.catalog.table_exists(house.identifier("ohlcv_1d")):
        print("waiting: no bars yet")
        return 1
    daily = house.table("ohlcv_1d").scan(selected_fields=("trade_count",)).to_arrow()
    in_bars = pc.sum(daily["trade_count"]).as_py() or 0
    if in_bars != distinct:
        print(f"waiting: daily bars count {in_bars:,} trades of {distinct:,}")
        return 1
    files = len(status.ticks.source_files)
    print(f"ready: {files} files, {distinct:,} distinct trades, all in the daily bars")
    return 0


if __name__ == "__main__":
    sys.exit(main())
