"""`tickhouse doctor`: the effective configuration, secrets masked, and a reachability check of
every store, each problem with a message saying what to fix."""

from __future__ import annotations

from collections.abc import Callable

from tickhouse_dagster.settings import TickhouseSettings, current, mask


class StaleReferenceData(RuntimeError):
    """Ticks or bars built under venue reference data that has since changed."""


def _probe(name: str, probe: Callable[[], str]) -> bool:
    try:
        detail = probe()
    except Exception as exc:  # each problem is reported, none stops the others
        reason = mask(f"{type(exc).__name__}: {exc}".splitlines()[0])
        print(f"  FAIL  {name}: {reason}")
        return False
    print(f"  ok    {name}: {detail}")
    return True


def print_settings(settings: TickhouseSettings) -> None:
    """Every setting with its effective value, secrets masked."""
    print("configuration (environment variable = effective value):")
    for env, value, help_text in settings.rows():
        print(f"  {env:38} = {value:50}  # {help_text}")


def run_doctor() -> int:
    from tickhouse_dagster.defs.resources import resolved_resources

    settings = current()
    print_settings(settings)

    resources = resolved_resources(settings)
    landing, lakehouse, feed = resources["landing"], resources["lakehouse"], resources["feed"]

    def catalog() -> str:
        house = lakehouse.lakehouse()
        house.ensure_tables()
        tables = [t[-1] for t in house.catalog.list_tables(house.namespace)]
        source = lakehouse.catalog_settings().source()
        return f"{source}, namespace {house.namespace!r}: {', '.join(sorted(tables))}"

    def trino() -> str:
        resource = resources["trino"]
        [(version,)] = resource.query("SELECT node_version FROM system.runtime.nodes LIMIT 1")
        schemas = [s for (s,) in resource.query(f"SHOW SCHEMAS FROM {resource.catalog}")]
        seen = "sees" if lakehouse.namespace in schemas else "does NOT see"
        return f"Trino {version}, catalog {resource.catalog!r} {seen} {lakehouse.namespace!r}"

    def reference_data() -> str:
        from tickhouse_dagster.storage.reference_lineage import find_stale

        # Counting only: naming the files to re-ingest reads their ticks (`tickhouse stale`).
        report = find_stale(lakehouse.lakehouse(), feed.venues(), ticks="count")
        if report.stale:
            lines = report.render().splitlines()[:-1]  # the last says "stale: see above"
            summary = "; ".join(line for line in lines if not line.startswith(" "))
            raise StaleReferenceData(f"{summary}; details: tickhouse stale")
        return "ticks and bars built under the current reference data"

    def profiles() -> str:
        from tickhouse_dagster.parsing.profiles import skipped_profile_files

        names = ", ".join(sorted(feed.profiles()))  # every file checked: file, field, reason
        notes = skipped_profile_files(feed.profiles_dir)
        return names + "".join(f"\n        note: {note}" for note in notes)

    print("checks:")
    results = [
        _probe("landing store", lambda: landing.store().check()),
        _probe("iceberg catalog", catalog),
        _probe("input profiles", profiles),
        _probe("venues", lambda: ", ".join(sorted(feed.venues()))),
        _probe("reference data", reference_data),
    ]
    if "trino" in resources:
        results.append(_probe("trino", trino))
    else:
        print(
            "  --    trino: not configured (TICKHOUSE_TRINO_URL unset): the BI views and the "
            "Trino read-back check are not part of the code location"
        )
    print("all good" if all(results) else "problems found (see FAIL lines)")
    return 0 if all(results) else 1
