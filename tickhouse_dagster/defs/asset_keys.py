"""The tick assets' keys, on their own: the sensors, jobs, ledger, checks and reports name these
assets without importing the modules that define them (and everything those import)."""

RAW_TICK_XML = ["landing", "raw_tick_xml"]
PARSED_TICKS = ["staging", "parsed_ticks"]
TICKS = ["market", "ticks"]
