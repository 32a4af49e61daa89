"""Trade-date derivation (ts → trade_date when a feed gives none) on N rows, against the plain
local-date conversion it replaced, measured in the same run:

    python -m bench.trade_dates [--rows 1000000] [--repeat 7]

Prints spread over Friday to Monday (an evening roll, a weekend), one venue at a time and two
venues mixed in one batch. `local date` is the former rule (the venue-local calendar date of the
print); `venue rule` is `market.venues.trade_dates_of` (roll time, weekends, holidays).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from tickhouse_dagster.market.venues import load_venues, trade_dates_of


def local_dates(names: pa.Array, ts: pa.Array, venues) -> pa.Array:
    """The former derivation, as it was in parsing.ticks_xml."""
    derived = pa.nulls(len(ts), pa.date32())
    for name in pc.unique(names).to_pylist():
        zone = venues[name].timezone.key
        local = pc.local_timestamp(ts.cast(pa.timestamp("us", tz=zone)))
        derived = pc.if_else(pc.equal(names, name), local.cast(pa.date32()), derived)
    return derived


def best_ms(work, repeat: int) -> float:
    """The fastest of `repeat` runs: on a shared machine the others measure the neighbours."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    venues = load_venues()
    start = int(datetime(2026, 10, 30, 12, tzinfo=UTC).timestamp() * 1_000_000)  # a Friday
    step = 3 * 86_400 * 1_000_000 // args.rows
    offsets = pc.multiply(pa.array(range(args.rows), pa.int64()), step)
    ts = pc.add(offsets, start).cast(pa.timestamp("us", tz="UTC"))
    cases = {name: pa.array([name] * args.rows, pa.string()) for name in sorted(venues)}
    cases["KRX+NYMEX mixed"] = pa.array(["KRX", "NYMEX"] * (args.rows // 2), pa.string())
    print(f"trade-date derivation, {args.rows:,} rows, best of {args.repeat}")
    print(f"{'venues':<18}{'local date ms':>15}{'venue rule ms':>15}{'ratio':>8}")
    for label, names in cases.items():
        before = best_ms(lambda n=names: local_dates(n, ts, venues), args.repeat)
        after = best_ms(lambda n=names: trade_dates_of(n, ts, venues), args.repeat)
        print(f"{label:<18}{before:>15.1f}{after:>15.1f}{after / before:>8.2f}")


if __name__ == "__main__":
    main()
