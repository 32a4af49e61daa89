"""Monitoring: the pipeline's figures served to Prometheus."""
