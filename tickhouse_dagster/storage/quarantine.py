"""The quarantine: landing files that cannot be ingested, set aside with the reason beside them.

A bad file moves to `_quarantine/<key>` in the same landing store and `<key>.reason.json` is
written next to it, so the sensor stops offering it, nothing of it reaches a table, and a person
sees why. Releasing it (after fixing a profile, a venue or the file) moves it back; it lands as
a new file version, so the sensor ingests it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from tickhouse_dagster.storage.landing import QUARANTINE_PREFIX, LandingStore, checked_key

REASON_SUFFIX = ".reason.json"


class QuarantineError(ValueError):
    """A release that cannot be done as asked."""


@dataclass(frozen=True)
class QuarantineNote:
    key: str  # the landing key the file had, and gets back on release
    reason: str  # the full error: file, record, line, field and why
    stage: str  # which step refused it: parse, tick_values, ...
    file_version: str = ""
    record: int | None = None
    line: int | None = None
    field: str | None = None
    quarantined_at: str = ""


def quarantined_key(key: str) -> str:
    return QUARANTINE_PREFIX + checked_key(key)


def reason_key(key: str) -> str:
    return quarantined_key(key) + REASON_SUFFIX


def quarantine(store: LandingStore, note: QuarantineNote) -> str:
    """Set a landing file aside; returns where it now is. The reason is written first, so a
    quarantined file never sits there without one."""
    stamped = QuarantineNote(
        **{**asdict(note), "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds")}
    )
    store.write(reason_key(note.key), json.dumps(asdict(stamped), indent=2).encode())
    store.move(note.key, quarantined_key(note.key))
    return quarantined_key(note.key)


def quarantined(store: LandingStore) -> Iterator[QuarantineNote]:
    """Every quarantined file with its reason, in key order."""
    for key in store.list_keys(QUARANTINE_PREFIX):
        if not key.endswith(REASON_SUFFIX):
            yield read_note(store, key[len(QUARANTINE_PREFIX) :])


def read_note(store: LandingStore, key: str) -> QuarantineNote:
    try:
        with store.open(reason_key(key)) as stream:
            return QuarantineNote(**json.loads(stream.read()))
    except (FileNotFoundError, ValueError, TypeError):
        return QuarantineNote(key=key, reason="(no readable reason file)", stage="unknown")


def release(store: LandingStore, key: str) -> None:
    """Move a quarantined file back to its landing key, where the sensor picks it up again."""
    source = quarantined_key(key)
    if not store.exists(source):
        raise QuarantineError(f"{key!r} is not in the quarantine ({QUARANTINE_PREFIX})")
    if store.exists(key):
        raise QuarantineError(
            f"{key!r} exists in the landing area again; remove or rename it before releasing"
        )
    store.move(source, key)
    store.delete(reason_key(key))
