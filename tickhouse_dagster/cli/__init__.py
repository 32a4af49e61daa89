"""The `tickhouse` command (`main`) and what its subcommands run in process: `ingest` (the batch
job on the local Dagster instance), `doctor` (configuration and reachability) and `devserver`
(`dagster dev` as `make dev` starts it, for the UI tests and the latency benchmark). The top
layer: it may import every other one; nothing below imports it."""

from tickhouse_dagster.cli.commands import main

__all__ = ["main"]
