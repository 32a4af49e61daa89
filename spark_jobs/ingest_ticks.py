"""spark-submit job: landing tick files → `market.ticks` with the Spark engine (the project's
parser and rules in Spark tasks, Iceberg's Spark runtime writing).

Kept where the layout puts spark-submit jobs; the job itself lives in the package,
`tickhouse_dagster/spark/job.py`, which is what Dagster submits and what an installed project
(the Docker image, no repository checkout) runs. Same arguments:

    spark-submit --master spark://127.0.0.1:17077 spark_jobs/ingest_ticks.py --all
"""

from __future__ import annotations

import sys

from tickhouse_dagster.spark.job import main

if __name__ == "__main__":
    sys.exit(main())
