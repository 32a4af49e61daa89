"""Spark engine pieces that need no Spark: task packing, the spark_jobs/ entry point."""

from __future__ import annotations

from tickhouse_dagster.spark.ticks import task_groups


def test_files_are_packed_by_size_into_at_most_the_tasks_asked_for():
    sizes = {"a": 100, "b": 90, "c": 50, "d": 40, "e": 10, "f": 10}
    groups = task_groups(sizes, 2)
    assert len(groups) == 2
    assert sorted(k for g in groups for k in g) == sorted(sizes)  # every file exactly once
    loads = sorted(sum(sizes[k] for k in g) for g in groups)
    assert loads == [150, 150]
    assert all(g == sorted(g) for g in groups)  # key order inside a task


def test_fewer_files_than_tasks_gives_one_file_per_task():
    assert task_groups({"b": 5, "a": 7}, 8) == [["a"], ["b"]]
    assert task_groups({"a": 1}, 0) == [["a"]]


def test_the_spark_jobs_entry_point_runs_the_packaged_job():
    """`spark_jobs/ingest_ticks.py` (the layout's place for spark-submit jobs) is the package's
    job: same arguments."""
    import subprocess
    import sys

    from tickhouse_dagster.settings import PROJECT_ROOT

    shown = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "spark_jobs" / "ingest_ticks.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "--all" in shown.stdout and "--profile" in shown.stdout
