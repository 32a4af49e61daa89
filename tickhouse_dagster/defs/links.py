"""Links from a materialization to where a person looks at its table: Trino's web UI (with the
query to paste), Superset's SQL Lab and bars dashboard, the quick look — each only when its
address is configured (settings.py), and never with credentials in it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from urllib.parse import urlencode, urlsplit, urlunsplit

from dagster import MetadataValue

from tickhouse_dagster.settings import current

# The dashboard `make superset` provisions (infra/superset/assets/dashboards/Market_bars.yaml).
SUPERSET_BARS_DASHBOARD = "/superset/dashboard/market-bars/"


def public_url(url: str | None) -> str | None:
    """`url` without user, password, query or fragment (a URL in the environment may carry a
    password; metadata is shown to everyone who opens the UI), or None if it is not http(s)."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def trino_sql(identifier: str, trade_dates: Sequence[date] | None) -> str:
    """The query that reads what was written, in Trino's names."""
    catalog = current().trino_catalog
    sql = f"SELECT * FROM {catalog}.{identifier}"
    if trade_dates:
        days = ", ".join(f"DATE '{d.isoformat()}'" for d in sorted(trade_dates))
        sql += f" WHERE trade_date IN ({days})"
    return sql


def table_links(
    identifier: str, trade_dates: Sequence[date] | None, *, bar_interval: str | None = None
) -> dict[str, MetadataValue]:
    """Metadata entries for `identifier` (`namespace.table`) and the trade dates written;
    `bar_interval` for a bar table (the quick look and the dashboard show bars only)."""
    settings = current()
    links: dict[str, MetadataValue] = {}
    sql = trino_sql(identifier, trade_dates)
    trino_ui = public_url(settings.trino_ui_url)
    if trino_ui is None and (coordinator := public_url(settings.trino_url)):
        trino_ui = f"{coordinator}/ui/"
    if trino_ui is not None:
        links["trino_ui"] = MetadataValue.url(trino_ui)
    if trino_ui is not None or settings.superset_url:
        links["trino_sql"] = MetadataValue.text(sql)
    if superset := public_url(settings.superset_url):
        query = urlencode({"sql": sql, "schema": identifier.rsplit(".", 1)[0]})
        links["superset_sql_lab"] = MetadataValue.url(f"{superset}/sqllab/?{query}")
        if bar_interval is not None:
            links["superset_dashboard"] = MetadataValue.url(superset + SUPERSET_BARS_DASHBOARD)
    quick_look = public_url(settings.quick_look_url)
    if quick_look is not None and trade_dates:
        # The quick look draws bars: a ticks write opens its first day's 1-minute bars.
        query = urlencode(
            {"interval": bar_interval or "1m", "trade_date": min(trade_dates).isoformat()}
        )
        links["quick_look"] = MetadataValue.url(f"{quick_look}/?{query}")
    return links
