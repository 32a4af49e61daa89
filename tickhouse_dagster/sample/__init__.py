"""Reproducible sample market data: exchange-like trade prints written as tick XML files.

`spec` says what to generate, `market` simulates the prints, `layouts` renders them as XML and
`files` writes one file per collection window (`generate`)."""

from tickhouse_dagster.sample.files import generate
from tickhouse_dagster.sample.spec import SampleSpec, expected_tick_count

__all__ = ["SampleSpec", "expected_tick_count", "generate"]
