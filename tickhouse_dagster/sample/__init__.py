"""Reproducible sample market data: exchange-like trade prints written as tick XML files."""
