"""Dagster's private names tickhouse relies on (dagster 1.13). Nothing else imports `dagster._…`
in product code; tickhouse_dagster_tests/compat/test_private_apis.py checks what is used here."""

from __future__ import annotations

from datetime import datetime

from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS
from dagster._time import get_current_datetime as _get_current_datetime

__all__ = ["INVALID_PARTITION_SUBSTRINGS", "current_datetime", "valid_partition_key"]


def valid_partition_key(key: str) -> bool:
    """Whether Dagster accepts `key` as a partition key (it refuses "..." and control
    characters; the list is not public)."""
    return not any(bad in key for bad in INVALID_PARTITION_SUBSTRINGS)


def current_datetime() -> datetime:
    """Dagster's clock (UTC): what its schedules and sensors see, and what its test helper
    `freeze_time` sets."""
    return _get_current_datetime()
