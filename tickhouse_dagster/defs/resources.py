"""Dagster resources over the storage layer, configured from the environment."""

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dagster import ConfigurableResource, DagsterInstance, EnvVar, build_resources
from pydantic import PrivateAttr

from tickhouse_dagster.engine.feed import Feed
from tickhouse_dagster.engine.landing_file import LandingAddress, Staging
from tickhouse_dagster.market.venues import Venue, VenueFileError, load_venues
from tickhouse_dagster.parsing.profiles import Profile, ProfileError, load_profiles
from tickhouse_dagster.settings import SETTINGS, TickhouseSettings, current
from tickhouse_dagster.storage.catalog import CatalogSettings, load_lakehouse_catalog
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.landing import LandingStore


class LandingResource(ConfigurableResource):
    """The landing area exchange files arrive in."""

    uri: str
    s3_endpoint: str | None = None
    region: str | None = None

    def address(self) -> LandingAddress:
        return LandingAddress(self.uri, self.s3_endpoint, self.region)

    def store(self) -> LandingStore:
        return self.address().open()


class FeedResource(ConfigurableResource):
    """How files are read: input profiles, key → profile rules, venue reference data."""

    profiles_dir: str | None = None
    profile_rules: str | None = None
    venues_file: str | None = None

    def feed(self) -> Feed:
        return Feed.load(self.profiles_dir, self.profile_rules, self.venues_file)

    def refusal(self) -> str | None:
        """Why no run may start, if the profiles or venues are refused. Runs read the same
        profiles and venues: a broken one would fail every run a sensor starts, so a sensor
        requests nothing (and keeps its cursor) until it is fixed."""
        try:
            self.feed()
        except (ProfileError, VenueFileError) as exc:
            return f"no run requested: the feed configuration is refused: {exc}"
        return None

    def profiles(self) -> dict[str, Profile]:
        return load_profiles(self.profiles_dir)

    def venues(self) -> dict[str, Venue]:
        return load_venues(self.venues_file)


class LakehouseResource(ConfigurableResource):
    """The Iceberg catalog and namespace holding `ticks` and the `ohlcv_*` tables."""

    catalog_name: str
    namespace: str
    warehouse: str
    catalog_uri: str | None = None
    embedded_db: str
    s3_endpoint: str | None = None
    region: str | None = None
    row_totals_cache: str | None = None  # each ticks data file's row totals (storage.row_totals)
    _lakehouse: Lakehouse | None = PrivateAttr(default=None)

    def catalog_settings(self) -> CatalogSettings:
        return CatalogSettings(
            name=self.catalog_name,
            warehouse=self.warehouse,
            uri=self.catalog_uri,
            embedded_db=self.embedded_db,
            s3_endpoint=self.s3_endpoint,
            s3_region=self.region,
        )

    def lakehouse(self) -> Lakehouse:
        if self._lakehouse is None:
            cache = Path(self.row_totals_cache) if self.row_totals_cache else None
            self._lakehouse = Lakehouse(
                load_lakehouse_catalog(self.catalog_settings()), self.namespace, cache
            )
        return self._lakehouse


class TrinoResource(ConfigurableResource):
    """A Trino coordinator that reads the same Iceberg catalog (optional)."""

    url: str  # http://host:port
    catalog: str
    user: str
    password: str | None = None  # only over https

    def connect(self) -> Any:
        import trino

        parsed = urlparse(self.url)
        auth = trino.auth.BasicAuthentication(self.user, self.password) if self.password else None
        return trino.dbapi.connect(
            host=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 8080),
            http_scheme=parsed.scheme or "http",
            user=self.user,
            catalog=self.catalog,
            auth=auth,
            request_timeout=60,
        )

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        connection = self.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            connection.close()


class StagingResource(ConfigurableResource):
    """Where parsed ticks wait (Arrow IPC files) between parsing and the Iceberg commit."""

    uri: str

    def for_run(self, run_id: str) -> Staging:
        return Staging(self.uri, run_id)

    def uri_for(self, partition_key: str, run_id: str) -> str:
        return self.for_run(run_id).uri_for(partition_key)


def from_settings(settings: TickhouseSettings, env: str) -> Any:
    """A resource field's value for the variable `env`: an `EnvVar` when the variable is set (the
    UI shows its name, and Dagster never stores a secret's value), else the settings' default
    (None when it has none). `settings` were read from the environment EnvVar reads."""
    if env in settings.given:
        return EnvVar(env)
    value = getattr(settings, next(s.field for s in SETTINGS if s.env == env))
    return None if value is None else str(value)


def resources_from_settings(settings: TickhouseSettings) -> dict[str, ConfigurableResource[Any]]:
    def value(env: str) -> Any:
        return from_settings(settings, env)

    resources: dict[str, ConfigurableResource[Any]] = {
        "landing": LandingResource(
            uri=value("TICKHOUSE_LANDING_URI"),
            s3_endpoint=value("TICKHOUSE_S3_ENDPOINT"),
            region=value("AWS_REGION"),
        ),
        "feed": FeedResource(
            profiles_dir=value("TICKHOUSE_PROFILES_DIR"),
            profile_rules=value("TICKHOUSE_PROFILE_RULES"),
            venues_file=value("TICKHOUSE_VENUES_FILE"),
        ),
        "lakehouse": LakehouseResource(
            catalog_name=value("TICKHOUSE_CATALOG_NAME"),
            namespace=value("TICKHOUSE_NAMESPACE"),
            warehouse=value("TICKHOUSE_WAREHOUSE_URI"),
            catalog_uri=value("TICKHOUSE_CATALOG_URI"),
            embedded_db=str(settings.embedded_catalog_db),
            row_totals_cache=str(settings.home / "row-totals"),
            s3_endpoint=value("TICKHOUSE_S3_ENDPOINT"),
            region=value("AWS_REGION"),
        ),
        "staging": StagingResource(uri=value("TICKHOUSE_STAGING_URI")),
    }
    if settings.trino_url is not None:
        # Optional: without it the Trino-dependent assets and checks are not part of the code
        # location (see definitions.py).
        resources["trino"] = TrinoResource(
            url=value("TICKHOUSE_TRINO_URL"),
            catalog=value("TICKHOUSE_TRINO_CATALOG"),
            user=value("TICKHOUSE_TRINO_USER"),
            password=value("TICKHOUSE_TRINO_PASSWORD"),
        )
    return resources


def resources_from_env() -> dict[str, ConfigurableResource[Any]]:
    """The resources of this process's settings (`settings.current()`)."""
    return resources_from_settings(current())


def resolved_resources(
    settings: TickhouseSettings | None = None, instance: DagsterInstance | None = None
) -> dict[str, Any]:
    """The resources as a run sees them (environment variables resolved), for code that runs
    outside a Dagster run: the CLI and `tickhouse doctor`. `instance`: the Dagster instance the
    caller already has, if any."""
    resources = resources_from_settings(settings or current())
    # Initialised together: each resource's own `process_config_and_initialize` makes an
    # ephemeral Dagster instance of its own (0.3 s for the set on every `tickhouse ingest`, 1.3 s
    # cold); the set needs at most one. None of them has a teardown, so the values outlive it.
    with build_resources(resources, instance=instance) as built:
        return {name: getattr(built, name) for name in resources}
