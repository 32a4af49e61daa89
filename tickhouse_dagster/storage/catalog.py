"""Which Iceberg catalog the lakehouse uses.

Order: pyiceberg's own configuration for the catalog name (`.pyiceberg.yaml`,
`PYICEBERG_CATALOG__<NAME>__...`) wins; else `TICKHOUSE_CATALOG_URI` (a SQL database URL or an
Iceberg REST endpoint); else the embedded default, a SQLite `SqlCatalog` next to a local warehouse
folder, which needs no server at all. A SQL catalog is pyiceberg's `SqlCatalog` that keeps the
metadata it has read (compat.pyiceberg_private.RememberingSqlCatalog).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.utils.config import Config

from tickhouse_dagster.compat.pyiceberg_private import RememberingSqlCatalog


@dataclass(frozen=True)
class CatalogSettings:
    name: str
    warehouse: str  # local folder or s3://bucket/prefix
    uri: str | None = None  # SQL URL or REST endpoint; None = pyiceberg config or embedded
    embedded_db: str = ""  # SQLite file used when nothing else is configured
    s3_endpoint: str | None = None
    s3_region: str | None = None

    def source(self) -> str:
        if Config().get_catalog_config(self.name):
            return "pyiceberg configuration"
        if self.uri:
            return "TICKHOUSE_CATALOG_URI"
        return "embedded SQLite"


def warehouse_location(warehouse: str) -> str:
    if "://" in warehouse:
        return warehouse
    path = Path(warehouse).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def _s3_properties(settings: CatalogSettings) -> dict[str, str]:
    properties = {}
    if settings.s3_endpoint:
        properties["s3.endpoint"] = settings.s3_endpoint
    if settings.s3_region:
        properties["s3.region"] = settings.s3_region
    return properties


# A SQL catalog's pooled connections die when its database restarts; without a ping on checkout
# the first commit after the restart fails on a dead connection. The configuration can override it.
_SQL_POOL_DEFAULTS = {"pool_pre_ping": "true"}


def load_lakehouse_catalog(settings: CatalogSettings) -> Catalog:
    # Read pyiceberg's configuration now: `load_catalog` alone uses a copy of the environment
    # taken when pyiceberg was imported.
    configured = Config().get_catalog_config(settings.name)
    if configured:
        if configured.get("type") == "sql":
            # pyiceberg's configuration is typed as nested dicts; a catalog's entries are strings.
            sql = cast(dict[str, str], {**_SQL_POOL_DEFAULTS, **configured})
            return RememberingSqlCatalog(
                settings.name, **{k: v for k, v in sql.items() if k != "type"}
            )
        return load_catalog(settings.name, **cast(dict[str, str | None], configured))
    properties: dict[str, Any] = {
        "warehouse": warehouse_location(settings.warehouse),
        **_s3_properties(settings),
    }
    if settings.uri:
        if settings.uri.startswith(("http://", "https://")):
            return load_catalog(settings.name, type="rest", uri=settings.uri, **properties)
        properties = {**_SQL_POOL_DEFAULTS, **properties}
        return RememberingSqlCatalog(settings.name, uri=settings.uri, **properties)
    db = Path(settings.embedded_db).expanduser().resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return RememberingSqlCatalog(settings.name, uri=f"sqlite:///{db}", **properties)
