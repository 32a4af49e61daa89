"""Dagster wiring: resources, partitions, assets, checks, sensors and jobs. Thin by design —
the work is done by `parsing`, `market`, `quality` and `storage`."""

import warnings

from dagster import PreviewWarning

# Partitioned asset checks (one evaluation per landing file / trade date) are used deliberately.
warnings.filterwarnings(
    "ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheck"
)
