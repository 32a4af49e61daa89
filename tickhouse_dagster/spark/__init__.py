"""The Spark engine: landing files → `market.ticks` with the Python engine's own parser and rules
running inside Spark tasks, written by Iceberg's Spark runtime (docs/decisions/1701-*). No Dagster
import in `ticks.py` / `session.py`; `job.py` is the spark-submit entry point (Dagster Pipes), and
`defs/spark.py` drives both."""
