"""The ingest engine: landing file → parsed, checked ticks → one Iceberg commit → verified.

One implementation for every path users run — the per-file Dagster assets, the sensor's batch
runs, `tickhouse ingest` and bulk backfills — with the same blocking checks, quarantine and
corrections everywhere. No Dagster import here: the wiring in `defs/` reports what it returns.
"""
