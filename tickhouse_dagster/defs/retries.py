"""Retry a step on transient storage errors only, with exponential backoff.

Why not a declarative `RetryPolicy(max_retries, delay, backoff=Backoff.EXPONENTIAL)` on the jobs:
a RetryPolicy retries every exception, so a bug or a permanent S3 "access denied" would be tried
five times before failing, and bad input would rely on every raise site remembering
`Failure(allow_retries=False)`. Here a step asks Dagster for a retry (`RetryRequested`, the wait is
Dagster's) only for errors `storage.transient.is_transient` recognises — the object store or the
catalog being unreachable or busy; everything else fails on the first attempt. When the retries
run out the step fails with a `Failure` naming the storage error, not Dagster's bare "Exceeded
max_retries".

Retrying a step is safe because each step is idempotent: fingerprinting and parsing only read,
and the ticks commit replaces the file's rows (a commit that landed although its reply was lost is
simply replaced by the retry's identical one).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dagster import AssetExecutionContext, Failure, OpExecutionContext, RetryRequested

from tickhouse_dagster.settings import TickhouseSettings, current
from tickhouse_dagster.storage.transient import is_transient

MAX_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class TransientRetry:
    max_retries: int
    base_seconds: float

    @classmethod
    def from_settings(cls, settings: TickhouseSettings) -> TransientRetry:
        return cls(max_retries=settings.retry_max, base_seconds=settings.retry_base_seconds)

    def wait(self, retry_number: int) -> float:
        """Seconds before retry `retry_number + 1`: doubling, capped, with jitter so that runs
        failing together (one outage) do not all come back in the same second."""
        return min(self.base_seconds * 2**retry_number, MAX_WAIT_SECONDS) * random.uniform(
            0.75, 1.25
        )


def describe(exc: BaseException) -> str:
    """One line naming the error; the first line only (SQL errors append statements below)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


@contextmanager
def retry_transient(context: OpExecutionContext | AssetExecutionContext) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if not is_transient(exc):
            raise
        # The settings of the process running the step (a run worker loads the same ones).
        policy = TransientRetry.from_settings(current())
        attempt = context.retry_number + 1
        if context.retry_number >= policy.max_retries:
            raise Failure(
                description=(
                    f"storage unavailable: still failing after {attempt} attempts "
                    f"({policy.max_retries} retries with backoff): {describe(exc)}"
                ),
                metadata={"attempts": attempt, "error": describe(exc)},
                allow_retries=False,
            ) from exc
        wait = policy.wait(context.retry_number)
        context.log.warning(
            f"transient storage error (attempt {attempt} of {policy.max_retries + 1}), "
            f"retrying in {wait:.1f}s: {describe(exc)}"
        )
        raise RetryRequested(max_retries=policy.max_retries, seconds_to_wait=wait) from exc
