"""How the Spark engine packs landing files into tasks (no Spark needed)."""

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
