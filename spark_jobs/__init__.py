"""spark-submit-able jobs (each file runs as a Spark driver script)."""
