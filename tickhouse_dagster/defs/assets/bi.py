"""Trino-side assets: BI-friendly views over the bar tables."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from tickhouse_dagster.defs.assets.bars import BAR_KEYS
from tickhouse_dagster.defs.resources import FeedResource, LakehouseResource, TrinoResource
from tickhouse_dagster.storage.trino_sql import bar_view_statements


@asset(
    key=["market", "bar_views"],
    deps=list(BAR_KEYS.values()),
    group_name="bi",
    description="Trino views market.ohlcv_*_local: bars with the venue's local bar start, for "
    "Superset and Grafana.",
)
def bar_views(
    context: AssetExecutionContext,
    trino: TrinoResource,
    lakehouse: LakehouseResource,
    feed: FeedResource,
) -> MaterializeResult:
    statements = bar_view_statements(trino.catalog, lakehouse.namespace, feed.venues())
    for view, sql in statements.items():
        trino.query(sql)
        context.log.info(f"created or replaced {trino.catalog}.{lakehouse.namespace}.{view}")
    return MaterializeResult(
        metadata={
            "views": MetadataValue.md(
                "\n".join(f"- `{trino.catalog}.{lakehouse.namespace}.{v}`" for v in statements)
            ),
        }
    )
