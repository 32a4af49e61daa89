"""How a feed's files are read: its input profiles, key → profile rules and venue reference data,
resolved once and passed down (picklable, so worker processes get the same)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tickhouse_dagster.market.venues import Venue, load_venues
from tickhouse_dagster.parsing.profiles import (
    Profile,
    ProfileError,
    load_profiles,
    parse_profile_rules,
    select_profile,
)
from tickhouse_dagster.parsing.ticks_xml import SNIFF_BYTES, sniff_root_element, unreadable_start

__all__ = ["SNIFF_BYTES", "Feed"]


@dataclass(frozen=True)
class Feed:
    profiles: Mapping[str, Profile]
    venues: Mapping[str, Venue]
    rules: tuple[tuple[str, str], ...] = ()

    @classmethod
    def load(
        cls,
        profiles_dir: str | Path | None = None,
        profile_rules: str | None = None,
        venues_file: str | Path | None = None,
    ) -> Feed:
        return cls(
            load_profiles(profiles_dir),
            load_venues(venues_file),
            parse_profile_rules(profile_rules),
        )

    def profile_of(self, key: str, stream: IO[bytes], forced: str | None = None) -> Profile:
        """The profile of a landing file, from the first `SNIFF_BYTES` read off `stream`."""
        return self.profile_for(key, stream.read(SNIFF_BYTES), forced)

    def profile_for(self, key: str, head: bytes, forced: str | None = None) -> Profile:
        """The profile of a landing file from its first bytes (`SNIFF_BYTES`)."""
        root = sniff_root_element(head)
        try:
            return select_profile(key, root, self.profiles, forced=forced, rules=self.rules)
        except ProfileError:
            if root is None:  # not a profile question: the file does not start as XML
                raise unreadable_start(key, head) from None
            raise
