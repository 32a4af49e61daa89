"""Retry a step on transient storage errors only, with exponential backoff."""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import OpExecutionContext, RetryRequested

from tickhouse_dagster.storage.transient import is_transient

MAX_RETRIES = 4


@contextmanager
def retry_transient(context: OpExecutionContext) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if not is_transient(exc):
            raise
        wait = min(2 ** (context.retry_number + 1), 60)
        context.log.warning(f"transient storage error, retrying in {wait}s: {type(exc).__name__}")
        raise RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from exc
