"""Configuration: every environment variable the project reads, with the embedded defaults.

Defaults need no server: landing, warehouse and staging are folders under `.tickhouse/` in the
repository (git-ignored) and the catalog is SQLite. Secrets (S3 keys, catalog passwords) are read
by the AWS SDK and pyiceberg from their standard variables and never copied into Dagster config.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    help: str
    secret: bool = False

    def value(self) -> str | None:
        return os.environ.get(self.env) or self.default


def _home() -> str:
    return os.environ.get("TICKHOUSE_HOME") or str(PROJECT_ROOT / ".tickhouse")


SETTINGS: tuple[Setting, ...] = (
    Setting("TICKHOUSE_HOME", None, "root of the embedded defaults (default: <repo>/.tickhouse)"),
    Setting("TICKHOUSE_LANDING_URI", None, "landing area: a folder or s3://bucket/prefix"),
    Setting("TICKHOUSE_WAREHOUSE_URI", None, "Iceberg warehouse: a folder or s3://bucket/prefix"),
    Setting("TICKHOUSE_STAGING_URI", None, "parse staging area: a folder or s3://bucket/prefix"),
    Setting("TICKHOUSE_CATALOG_NAME", "tickhouse", "pyiceberg catalog name"),
    Setting(
        "TICKHOUSE_CATALOG_URI",
        None,
        "SQL URL (postgresql+psycopg2://…) or REST endpoint; unset = pyiceberg config or SQLite",
        secret=True,
    ),
    Setting("TICKHOUSE_NAMESPACE", "market", "Iceberg namespace of the tables"),
    Setting(
        "TICKHOUSE_S3_ENDPOINT", None, "S3 endpoint URL (SeaweedFS), for landing and warehouse"
    ),
    Setting("AWS_REGION", "us-east-1", "S3 region"),
    Setting("AWS_ACCESS_KEY_ID", None, "S3 access key (read by the AWS SDKs)", secret=True),
    Setting("AWS_SECRET_ACCESS_KEY", None, "S3 secret key (read by the AWS SDKs)", secret=True),
    Setting(
        "TICKHOUSE_TRINO_URL", None, "Trino coordinator, e.g. http://127.0.0.1:18080 (optional)"
    ),
    Setting("TICKHOUSE_TRINO_CATALOG", "iceberg", "Trino catalog that maps the Iceberg catalog"),
    Setting("TICKHOUSE_TRINO_USER", "tickhouse", "Trino user"),
    Setting("TICKHOUSE_TRINO_PASSWORD", None, "Trino password (https only)", secret=True),
    # Where a person's browser reaches the tools (not always where the code reaches them: in
    # compose Trino is http://trino:8080 to the code); materializations link to them when set.
    Setting(
        "TICKHOUSE_TRINO_UI_URL",
        None,
        "Trino web UI as a browser reaches it (default: TICKHOUSE_TRINO_URL + /ui/); "
        "materializations link to it",
    ),
    Setting(
        "TICKHOUSE_SUPERSET_URL",
        None,
        "Superset as a browser reaches it, e.g. http://127.0.0.1:18088; materializations link "
        "to SQL Lab on their table (and the bars dashboard)",
    ),
    Setting(
        "TICKHOUSE_QUICK_LOOK_URL",
        None,
        "the quick look (`tickhouse view`) as a browser reaches it, e.g. http://127.0.0.1:8501; "
        "bar and tick materializations link to their trade date in it",
    ),
    Setting("TICKHOUSE_SENSOR_INTERVAL_SECONDS", "30", "landing sensor interval"),
    Setting("TICKHOUSE_SENSOR_MAX_FILES_PER_TICK", "500", "runs requested per sensor tick"),
    Setting("TICKHOUSE_SENSOR_MARGIN_SECONDS", "300", "lookback for late-visible uploads"),
    Setting(
        "TICKHOUSE_FILER_GRPC",
        None,
        "SeaweedFS filer gRPC host:port: set, the landing listener pushes new files (push sensor)",
    ),
    Setting(
        "TICKHOUSE_LANDING_QUEUE_URL",
        None,
        "the listener's queue, a SQLAlchemy URL (default: SQLite under TICKHOUSE_HOME/listener)",
        secret=True,
    ),
    Setting("TICKHOUSE_LISTENER_PORT", None, "landing listener health endpoint port (optional)"),
    Setting("TICKHOUSE_PUSH_SENSOR_INTERVAL_SECONDS", "1", "push sensor interval"),
    Setting(
        "TICKHOUSE_LANDING_QUEUE_RETENTION_DAYS",
        "7",
        "the landing listener forgets queued versions every sensor has claimed after this long",
    ),
    Setting(
        "TICKHOUSE_PUSH_WAIT_SECONDS",
        "4",
        "a push sensor evaluation that finds nothing waits this long for the listener's next "
        "file (Dagster's sensor loop runs only every 5 s)",
    ),
    Setting("TICKHOUSE_PROFILES_DIR", None, "folder of extra input profiles (*.yaml)"),
    Setting("TICKHOUSE_PROFILE_RULES", None, "key pattern → profile rules: 'glob=profile,…'"),
    Setting("TICKHOUSE_VENUES_FILE", None, "extra venue reference data (YAML)"),
    Setting(
        "TICKHOUSE_FIRST_TRADE_DATE",
        "2020-01-01",
        "first daily partition of the bars (the first trading day on or after it)",
    ),
    Setting(
        "TICKHOUSE_BARS_FRESHNESS_MINUTES",
        "30",
        "bars are stale when a venue's session has run this long without its trade date's "
        "bars being rebuilt (the fresh_in_session check)",
    ),
    Setting(
        "TICKHOUSE_SNAPSHOT_RETENTION_HOURS",
        "168",
        "time-travel window: snapshots older than this are expired by maintenance",
    ),
    Setting("TICKHOUSE_SNAPSHOT_RETAIN_LAST", "5", "snapshots kept per table whatever their age"),
    Setting("TICKHOUSE_RETRY_MAX", "4", "retries of a step on transient S3/catalog errors"),
    Setting(
        "TICKHOUSE_RETRY_BASE_SECONDS",
        "2",
        "first retry wait; doubles each retry (±25% jitter, at most 60 s)",
    ),
)


def setting(env: str) -> str | None:
    return next(s for s in SETTINGS if s.env == env).value()


def landing_uri() -> str:
    return setting("TICKHOUSE_LANDING_URI") or f"{_home()}/landing"


def warehouse_uri() -> str:
    return setting("TICKHOUSE_WAREHOUSE_URI") or f"{_home()}/warehouse"


def staging_uri() -> str:
    return setting("TICKHOUSE_STAGING_URI") or f"{_home()}/staging"


def embedded_catalog_db() -> str:
    return f"{_home()}/catalog.db"


def tickhouse_home() -> str:
    return _home()


def dagster_home() -> str:
    return os.environ.get("DAGSTER_HOME") or f"{_home()}/dagster"


_URL_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]+)(@)")


def mask(value: str | None, secret: bool = False) -> str:
    """A value fit for printing: secrets reduced to a hint, passwords in URLs starred."""
    if value is None:
        return "(unset)"
    if secret and "://" not in value:
        return "**** (set)" if value else "(empty)"
    return _URL_PASSWORD.sub(r"\1****\3", value)


def effective_settings() -> list[tuple[str, str, str]]:
    """(variable, masked effective value, help) for every setting, defaults resolved."""
    resolved = {
        "TICKHOUSE_HOME": _home(),
        "TICKHOUSE_LANDING_URI": landing_uri(),
        "TICKHOUSE_WAREHOUSE_URI": warehouse_uri(),
        "TICKHOUSE_STAGING_URI": staging_uri(),
    }
    return [(s.env, mask(resolved.get(s.env, s.value()), s.secret), s.help) for s in SETTINGS]
