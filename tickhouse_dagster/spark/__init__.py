"""The Spark engine: landing XML → `market.ticks` with Spark's built-in XML reader and Iceberg's
Spark runtime. Same contract and semantics as the Python path (`parsing` + `storage`); only the
executor differs. No Dagster import: `spark_jobs/` and `defs/spark.py` both drive it."""
