"""Market reference data and pure market arithmetic (venues, price grids, OHLCV bars)."""
