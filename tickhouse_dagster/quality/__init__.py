"""Data-quality rules as pure functions over Arrow tables; the Dagster checks only call these."""
