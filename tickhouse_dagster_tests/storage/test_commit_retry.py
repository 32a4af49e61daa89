"""The one commit-retry loop: conflicts retried where the commit is made, and only there."""

from __future__ import annotations

import sqlite3

import pytest
from pyiceberg.exceptions import CommitFailedException, ValidationException

from tickhouse_dagster.storage import commit_retry
from tickhouse_dagster.storage.commit_retry import Backoff, is_commit_conflict, retry_commit
from tickhouse_dagster.storage.transient import is_transient

FAST = Backoff(3, first_delay=0.0, max_delay=0.0)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(commit_retry.time, "sleep", slept.append)
    return slept


def test_conflicts_are_retried_until_an_attempt_commits():
    attempts: list[int] = []

    def attempt_once(attempt: int) -> str:
        attempts.append(attempt)
        if attempt == 1:
            raise CommitFailedException("another writer won")
        if attempt == 2:
            raise ValidationException("a concurrent commit touched the same rows")
        return "committed"

    assert retry_commit("ticks", attempt_once, FAST) == "committed"
    assert attempts == [1, 2, 3]


def test_the_last_conflict_and_any_other_error_propagate():
    calls: list[int] = []

    def always_conflicts(attempt: int) -> None:
        calls.append(attempt)
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        retry_commit("ticks", always_conflicts, FAST)
    assert calls == [1, 2, 3]

    def broken(attempt: int) -> None:
        calls.append(attempt)
        raise KeyError("venue")

    calls.clear()
    with pytest.raises(KeyError):
        retry_commit("ticks", broken, FAST)
    assert calls == [1]


def test_backoff_grows_within_its_bounds():
    backoff = Backoff(10, first_delay=0.1, max_delay=5.0)
    assert 0.1 <= backoff.delay(1) <= 0.3
    assert all(backoff.delay(attempt) <= 7.5 for attempt in range(1, 11))


def test_a_lost_commit_is_not_retried_again_by_the_step():
    assert is_commit_conflict(CommitFailedException("x"))
    assert not is_transient(CommitFailedException("another writer won"))
    assert not is_transient(ValidationException("stale plan"))
    assert not is_commit_conflict(sqlite3.OperationalError("unable to open database file"))
