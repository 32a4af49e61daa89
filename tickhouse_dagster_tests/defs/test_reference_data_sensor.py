"""`reference_data_sensor` with Dagster's test context on a real embedded lakehouse: it requests
the rebuild of exactly the trade dates built under reference data that has since changed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import yaml
from dagster import SensorResult, SkipReason, build_sensor_context

from tickhouse_dagster.defs.jobs import BARS_DAY_TAG
from tickhouse_dagster.defs.resources import FeedResource
from tickhouse_dagster.defs.sensors import reference_data_sensor
from tickhouse_dagster.market.venues import BUILT_IN_FILE
from tickhouse_dagster.storage.reference_lineage import BAR_TABLES, record_bars_reference


def test_stale_days_are_requested_once_each(resources, instance, tmp_path: Path) -> None:
    house = resources["lakehouse"].lakehouse()
    venues = resources["feed"].venues()
    for day, names in ((date(2024, 1, 2), ["KRX"]), (date(2024, 1, 3), ["KRX", "NYMEX"])):
        bars = {table: pa.table({"venue": names}) for table in BAR_TABLES}
        record_bars_reference(house, day, bars, venues)

    def evaluate(feed: FeedResource) -> SensorResult | SkipReason:
        context = build_sensor_context(
            instance=instance, resources={"feed": feed, "lakehouse": resources["lakehouse"]}
        )
        return reference_data_sensor(context)

    assert isinstance(evaluate(resources["feed"]), SkipReason)

    built_in = yaml.safe_load(BUILT_IN_FILE.read_text())
    venues_file = tmp_path / "venues.yaml"
    venues_file.write_text(
        yaml.safe_dump({"NYMEX": {**built_in["NYMEX"], "timezone": "America/Chicago"}})
    )
    chicago = FeedResource(venues_file=str(venues_file))
    result = evaluate(chicago)
    assert isinstance(result, SensorResult)
    [request] = result.run_requests
    assert request.partition_key == "2024-01-03"  # KRX's 2nd is not stale
    assert request.tags[BARS_DAY_TAG] == "2024-01-03"
    again = evaluate(chicago)
    assert isinstance(again, SensorResult)
    # The same state gives the same run key: Dagster launches it once.
    assert [r.run_key for r in again.run_requests] == [request.run_key]
