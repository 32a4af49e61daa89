"""The one retry loop for Iceberg commits that lose to a concurrent writer: the ingest commits
(`Lakehouse`) and table maintenance (`storage.maintenance`) both go through `retry_commit`.

A conflict is retried here, where the commit is made, from the table as it is then. Iceberg's
conflicts are not transient errors for a step retry (`storage.transient`): by the time one reaches
a step it has lost every attempt, and retrying the whole step would only multiply them. (SQLite's
"database is locked" stays transient there: reads meet it too.)"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pyiceberg.exceptions import CommitFailedException, ValidationException

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How often, and with which exponential delays (±50 % jitter), a commit is tried."""

    attempts: int
    first_delay: float
    max_delay: float

    def delay(self, attempt: int) -> float:
        return min(self.first_delay * 2.0**attempt, self.max_delay) * random.uniform(0.5, 1.5)


def is_commit_conflict(exc: BaseException) -> bool:
    """Whether `exc` means another writer won, so starting again from the current table is safe.
    CommitFailed: pyiceberg's own commit retries ran out; Validation: pyiceberg refuses a stale
    plan because a concurrent commit touched the same rows (e.g. a compaction rewrote the data
    files), nothing was committed; SQLite catalogs report a concurrent writer as locked."""
    if isinstance(exc, CommitFailedException | ValidationException):
        return True
    return type(exc).__name__ == "OperationalError" and "locked" in str(exc)


def retry_commit(what: str, attempt_once: Callable[[int], T], backoff: Backoff) -> T:
    """`attempt_once(attempt)` (numbered from 1) until it returns, retrying commit conflicts
    only; the last attempt's conflict, and any other error, propagate."""
    for attempt in range(1, backoff.attempts + 1):
        try:
            return attempt_once(attempt)
        except Exception as exc:
            if not is_commit_conflict(exc) or attempt == backoff.attempts:
                raise
            delay = backoff.delay(attempt)
            log.warning("%s: concurrent commit, retrying in %.2fs (%s)", what, delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")
