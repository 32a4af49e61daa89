"""XML tick files → Arrow record batches in the ticks contract. Pure: no Dagster, no storage."""

from tickhouse_dagster.parsing.errors import TickFileError
from tickhouse_dagster.parsing.profiles import Profile, load_profiles, select_profile
from tickhouse_dagster.parsing.ticks_xml import parse_tick_file, read_tick_file

__all__ = [
    "Profile",
    "TickFileError",
    "load_profiles",
    "parse_tick_file",
    "read_tick_file",
    "select_profile",
]
