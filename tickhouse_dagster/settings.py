"""Configuration: every environment variable the project reads, its default, and one typed,
frozen `TickhouseSettings` built from them.

`TickhouseSettings.from_env(env)` is the only place a variable's text becomes a value: each
default is written once (in `SETTINGS`), a bad value fails naming its variable, and ints are
ints, paths are paths. The wiring layer (the code location, the CLI) resolves it and passes it
down; the layers below take plain values (a folder, a file, a number), never the environment.

Defaults need no server: landing, warehouse and staging are folders under `.tickhouse/` in the
repository (git-ignored) and the catalog is SQLite. Secrets (S3 keys, catalog passwords) are read
by the AWS SDK and pyiceberg from their standard variables and reach Dagster resources only as
`EnvVar`s, so Dagster never stores their values; `rows()` masks them for printing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import date, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SettingError(ValueError):
    """An environment variable whose value cannot be used; the message names the variable."""


def _int(text: str) -> int:
    return int(text)


def _float(text: str) -> float:
    return float(text)


def _str(text: str) -> str:
    return text


def _path(text: str) -> Path:
    return Path(text).expanduser()


@dataclass(frozen=True)
class Setting:
    """One environment variable: the `TickhouseSettings` field it fills, how its text is read,
    its default (text, read the same way; None: unset, or derived from TICKHOUSE_HOME)."""

    env: str
    field: str
    default: str | None
    help: str
    parse: Callable[[str], Any] = _str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "TICKHOUSE_HOME",
        "home",
        None,
        "root of the embedded defaults (default: <repo>/.tickhouse)",
        _path,
    ),
    Setting(
        "DAGSTER_HOME",
        "dagster_home",
        None,
        "Dagster instance folder (default: <home>/dagster)",
        _path,
    ),
    Setting(
        "TICKHOUSE_CACHE",
        "cache",
        None,
        "download cache: uv, jars, servers (default: ~/.cache/tickhouse)",
        _path,
    ),
    Setting(
        "TICKHOUSE_LANDING_URI", "landing_uri", None, "landing area: a folder or s3://bucket/prefix"
    ),
    Setting(
        "TICKHOUSE_WAREHOUSE_URI",
        "warehouse_uri",
        None,
        "Iceberg warehouse: a folder or s3://bucket/prefix",
    ),
    Setting(
        "TICKHOUSE_STAGING_URI",
        "staging_uri",
        None,
        "parse staging area: a folder or s3://bucket/prefix",
    ),
    Setting("TICKHOUSE_CATALOG_NAME", "catalog_name", "tickhouse", "pyiceberg catalog name"),
    Setting(
        "TICKHOUSE_CATALOG_URI",
        "catalog_uri",
        None,
        "SQL URL (postgresql+psycopg2://…) or REST endpoint; unset = pyiceberg config or SQLite",
        secret=True,
    ),
    Setting("TICKHOUSE_NAMESPACE", "namespace", "market", "Iceberg namespace of the tables"),
    Setting(
        "TICKHOUSE_S3_ENDPOINT",
        "s3_endpoint",
        None,
        "S3 endpoint URL (SeaweedFS), for landing and warehouse",
    ),
    Setting("AWS_REGION", "region", "us-east-1", "S3 region"),
    Setting(
        "AWS_ACCESS_KEY_ID",
        "aws_access_key_id",
        None,
        "S3 access key (read by the AWS SDKs)",
        secret=True,
    ),
    Setting(
        "AWS_SECRET_ACCESS_KEY",
        "aws_secret_access_key",
        None,
        "S3 secret key (read by the AWS SDKs)",
        secret=True,
    ),
    Setting(
        "TICKHOUSE_TRINO_URL",
        "trino_url",
        None,
        "Trino coordinator, e.g. http://127.0.0.1:18080 (optional)",
    ),
    Setting(
        "TICKHOUSE_TRINO_CATALOG",
        "trino_catalog",
        "iceberg",
        "Trino catalog that maps the Iceberg catalog",
    ),
    Setting("TICKHOUSE_TRINO_USER", "trino_user", "tickhouse", "Trino user"),
    Setting(
        "TICKHOUSE_TRINO_PASSWORD",
        "trino_password",
        None,
        "Trino password (https only)",
        secret=True,
    ),
    # Where a person's browser reaches the tools (not always where the code reaches them: in
    # compose Trino is http://trino:8080 to the code); materializations link to them when set.
    Setting(
        "TICKHOUSE_TRINO_UI_URL",
        "trino_ui_url",
        None,
        "Trino web UI as a browser reaches it (default: TICKHOUSE_TRINO_URL + /ui/); "
        "materializations link to it",
    ),
    Setting(
        "TICKHOUSE_SUPERSET_URL",
        "superset_url",
        None,
        "Superset as a browser reaches it, e.g. http://127.0.0.1:18088; materializations link "
        "to SQL Lab on their table (and the bars dashboard)",
    ),
    Setting(
        "TICKHOUSE_QUICK_LOOK_URL",
        "quick_look_url",
        None,
        "the quick look (`tickhouse view`) as a browser reaches it, e.g. http://127.0.0.1:8501; "
        "bar and tick materializations link to their trade date in it",
    ),
    Setting(
        "TICKHOUSE_SENSOR_INTERVAL_SECONDS",
        "sensor_interval_seconds",
        "30",
        "landing sensor interval",
        _int,
    ),
    Setting(
        "TICKHOUSE_SENSOR_MAX_FILES_PER_TICK",
        "sensor_max_files_per_tick",
        "500",
        "runs requested per sensor tick",
        _int,
    ),
    Setting(
        "TICKHOUSE_SENSOR_MARGIN_SECONDS",
        "sensor_margin_seconds",
        "300",
        "lookback for late-visible uploads",
        _int,
    ),
    Setting(
        "TICKHOUSE_FILER_GRPC",
        "filer_grpc",
        None,
        "SeaweedFS filer gRPC host:port: set, the landing listener pushes new files (push sensor)",
    ),
    Setting(
        "TICKHOUSE_LANDING_QUEUE_URL",
        "landing_queue_url",
        None,
        "the listener's queue, a SQLAlchemy URL (default: SQLite under TICKHOUSE_HOME/listener)",
        secret=True,
    ),
    Setting(
        "TICKHOUSE_LISTENER_PORT",
        "listener_port",
        "0",
        "landing listener health endpoint port (0: none)",
        _int,
    ),
    Setting(
        "TICKHOUSE_PUSH_SENSOR_INTERVAL_SECONDS",
        "push_sensor_interval_seconds",
        "1",
        "push sensor interval",
        _int,
    ),
    Setting(
        "TICKHOUSE_PUSH_RUN_STALL_SECONDS",
        "push_run_stall_seconds",
        "600",
        "a push run queued or running holds the next one back, unless it is older than this",
        _float,
    ),
    Setting(
        "TICKHOUSE_LANDING_QUEUE_RETENTION_DAYS",
        "landing_queue_retention_days",
        "7",
        "the landing listener forgets queued versions every sensor has claimed after this long",
        _float,
    ),
    Setting(
        "TICKHOUSE_PUSH_WAIT_SECONDS",
        "push_wait_seconds",
        "4",
        "a push sensor evaluation that finds nothing waits this long for the listener's next "
        "file (Dagster's sensor loop runs only every 5 s)",
        _float,
    ),
    Setting(
        "TICKHOUSE_PROFILES_DIR",
        "profiles_dir",
        None,
        "folder of extra input profiles (*.yaml)",
        _path,
    ),
    Setting(
        "TICKHOUSE_PROFILE_RULES",
        "profile_rules",
        None,
        "key pattern → profile rules: 'glob=profile,…'",
    ),
    Setting(
        "TICKHOUSE_VENUES_FILE", "venues_file", None, "extra venue reference data (YAML)", _path
    ),
    Setting(
        "TICKHOUSE_FIRST_TRADE_DATE",
        "first_trade_date",
        "2020-01-01",
        "first daily partition of the bars (the first trading day on or after it)",
        date.fromisoformat,
    ),
    Setting(
        "TICKHOUSE_BARS_FRESHNESS_MINUTES",
        "bars_freshness_minutes",
        "30",
        "bars are stale when a venue's session has run this long without its trade date's "
        "bars being rebuilt (the fresh_in_session check)",
        _float,
    ),
    Setting(
        "TICKHOUSE_SNAPSHOT_RETENTION_HOURS",
        "snapshot_retention_hours",
        "168",
        "time-travel window: snapshots older than this are expired by maintenance",
        _float,
    ),
    Setting(
        "TICKHOUSE_SNAPSHOT_RETAIN_LAST",
        "snapshot_retain_last",
        "5",
        "snapshots kept per table whatever their age",
        _int,
    ),
    Setting(
        "TICKHOUSE_RETRY_MAX",
        "retry_max",
        "4",
        "retries of a step on transient S3/catalog errors",
        _int,
    ),
    Setting(
        "TICKHOUSE_RETRY_BASE_SECONDS",
        "retry_base_seconds",
        "2",
        "first retry wait; doubles each retry (±25% jitter, at most 60 s)",
        _float,
    ),
    Setting(
        "TICKHOUSE_SPARK_MASTER",
        "spark_master",
        "local[2]",
        "the Spark engine's master: spark://host:7077, k8s://…, yarn, local[N]",
    ),
)


@dataclass(frozen=True)
class TickhouseSettings:
    """The whole configuration, typed; build it with `from_env`."""

    home: Path
    dagster_home: Path
    cache: Path
    landing_uri: str
    warehouse_uri: str
    staging_uri: str
    catalog_name: str
    catalog_uri: str | None
    namespace: str
    s3_endpoint: str | None
    region: str
    aws_access_key_id: str | None
    aws_secret_access_key: str | None
    trino_url: str | None
    trino_catalog: str
    trino_user: str
    trino_password: str | None
    trino_ui_url: str | None
    superset_url: str | None
    quick_look_url: str | None
    sensor_interval_seconds: int
    sensor_max_files_per_tick: int
    sensor_margin_seconds: int
    filer_grpc: str | None
    landing_queue_url: str
    listener_port: int
    push_sensor_interval_seconds: int
    push_run_stall_seconds: float
    landing_queue_retention_days: float
    push_wait_seconds: float
    profiles_dir: Path | None
    profile_rules: str | None
    venues_file: Path | None
    first_trade_date: date
    bars_freshness_minutes: float
    snapshot_retention_hours: float
    snapshot_retain_last: int
    retry_max: int
    retry_base_seconds: float
    spark_master: str
    # The variables given in the environment (not defaulted): a Dagster resource takes those as
    # `EnvVar`s, so the UI shows a variable's name and Dagster never stores a secret's value.
    given: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TickhouseSettings:
        """The settings of `env`: an unset or empty variable takes its default."""
        given = frozenset(s.env for s in SETTINGS if env.get(s.env))
        values: dict[str, Any] = {}
        for s in SETTINGS:
            text = env.get(s.env) or s.default
            if text is None:
                values[s.field] = None
                continue
            try:
                values[s.field] = s.parse(text)
            except ValueError as exc:
                shown = "****" if s.secret else repr(text)
                raise SettingError(f"{s.env}={shown}: not a valid value ({exc})") from None
        # Defaults derived from TICKHOUSE_HOME (and the user's home for the download cache).
        home = values["home"] or PROJECT_ROOT / ".tickhouse"
        values["home"] = home
        values["dagster_home"] = values["dagster_home"] or home / "dagster"
        values["cache"] = values["cache"] or Path.home() / ".cache" / "tickhouse"
        values["landing_uri"] = values["landing_uri"] or f"{home}/landing"
        values["warehouse_uri"] = values["warehouse_uri"] or f"{home}/warehouse"
        values["staging_uri"] = values["staging_uri"] or f"{home}/staging"
        values["landing_queue_url"] = values["landing_queue_url"] or default_queue_url(home)
        return cls(**values, given=given)

    @property
    def embedded_catalog_db(self) -> Path:
        return self.home / "catalog.db"

    @property
    def bars_freshness_threshold(self) -> timedelta:
        return timedelta(minutes=self.bars_freshness_minutes)

    @property
    def push_enabled(self) -> bool:
        """Push ingestion: a SeaweedFS filer feeds the landing listener."""
        return self.filer_grpc is not None

    def rows(self) -> list[tuple[str, str, str]]:
        """(variable, effective value fit for printing, help) for every setting: defaults
        resolved, secrets masked."""
        shown = []
        for s in SETTINGS:
            value = getattr(self, s.field)
            shown.append((s.env, mask(None if value is None else str(value), s.secret), s.help))
        return shown

    def secret_values(self) -> list[str]:
        """The values of the secret settings that are set (for redacting text)."""
        return [
            str(getattr(self, s.field))
            for s in SETTINGS
            if s.secret and getattr(self, s.field) is not None
        ]


def default_queue_url(home: Path) -> str:
    """The landing listener's queue when TICKHOUSE_LANDING_QUEUE_URL is unset: SQLite under
    TICKHOUSE_HOME/listener."""
    return f"sqlite:///{home / 'listener' / 'landing-queue.sqlite'}"


def current() -> TickhouseSettings:
    """This process's settings. Only the wiring layer (the code location as it loads, a step at
    run time, the CLI) calls it; it is not cached, so a test that changes a variable sees it."""
    return TickhouseSettings.from_env(os.environ)


# Every field but `given` has a row, and every row a field (a test checks it too).
assert {s.field for s in SETTINGS} == {f.name for f in fields(TickhouseSettings)} - {"given"}


_URL_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]+)(@)")


def mask(value: str | None, secret: bool = False) -> str:
    """A value fit for printing: secrets reduced to a hint, passwords in URLs starred."""
    if value is None:
        return "(unset)"
    if secret and "://" not in value:
        return "**** (set)" if value else "(empty)"
    return _URL_PASSWORD.sub(r"\1****\3", value)
