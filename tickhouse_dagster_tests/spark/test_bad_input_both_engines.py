"""The bad-input corpus (reliability/test_bad_input_corpus.py) through both engines: every file is
parsed in a Spark task (one Spark job for the whole corpus, as a backfill would) and by the Python
engine in this process, with `parse_landing_file` on the same landing store; both must give the
same verdict — refused at the same stage, with the same reason naming the file, record, line and
field. (That such a refusal fails the whole Spark ingest before any commit is
test_spark_engine.py's `test_bad_file_fails_naming_it_and_writes_nothing`.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tickhouse_dagster.defs.resources import resolved_resources
from tickhouse_dagster.engine.landing_file import ParsedFile, Staging, parse_landing_file
from tickhouse_dagster.spark.ticks import ParseTask, TaskResult, parse_files
from tickhouse_dagster_tests.reliability.test_bad_input_corpus import BAD_FILES

pytestmark = pytest.mark.slow


@dataclass
class Verdicts:
    spark: dict[str, TaskResult]
    python: dict[str, ParsedFile]


def _content(content: bytes | str, root: Path) -> bytes:
    if isinstance(content, bytes):
        return content
    # A path nobody writes to and a port nothing listens on: the parsers must touch neither.
    return content.format(fifo=root / "never-read", port=9).encode()


@pytest.fixture(scope="module")
def verdicts(spark, stack_env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdicts]:
    root = tmp_path_factory.mktemp("corpus-both")
    prefix = f"t{uuid.uuid4().hex[:8]}/"
    with pytest.MonkeyPatch.context() as env:
        for name, value in stack_env.items():
            env.setenv(name, value)
        env.setenv("TICKHOUSE_HOME", str(root / "home"))
        env.setenv("TICKHOUSE_LANDING_URI", f"s3://landing/{prefix}")
        resources = resolved_resources()
        store = resources["landing"].store()
        keys = []
        for _, key, content, _ in BAD_FILES:
            store.write(key, _content(content, root))
            keys.append(key)
        feed = resources["feed"].feed()
        staging = Staging(str(root / "staging"), uuid.uuid4().hex)
        task = ParseTask(resources["landing"].address(), feed, staging)
        spark_results = parse_files(spark, task, keys)
        python = {
            key: parse_landing_file(store, key, feed=feed, staging_uri=staging.uri_for(key))
            for key in keys
        }
        yield Verdicts({r.parsed.key: r for r in spark_results}, python)
        for key in keys:
            store.delete(key)


@pytest.mark.parametrize(
    ("case", "key", "content", "says"), BAD_FILES, ids=[case[0] for case in BAD_FILES]
)
def test_both_engines_refuse_alike(verdicts: Verdicts, case, key, content, says):
    python = verdicts.python[key].refusal
    spark = verdicts.spark[key].parsed.refusal
    assert python is not None, f"{case}: the Python engine accepted it"
    assert spark is not None, f"{case}: the Spark engine accepted it"
    assert spark == python  # stage, reason, record, line and field
    assert verdicts.spark[key].parsed.staged is None  # nothing of it kept
    assert spark.reason.startswith(key) or spark.stage == "tick_values"
    for words in says:
        assert words in spark.reason, (words, spark.reason)
