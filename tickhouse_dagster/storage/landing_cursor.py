"""Which landing files need ingesting, remembered between sensor ticks in a small cursor.

A file version is identified by its run key (key + size + modified time, + etag on S3). The cursor
keeps a watermark — every version changed before it has been handled — and the digests of the
versions requested since then. Each tick lists the landing area, requests versions that are newer
than the watermark and not yet requested (at most `limit`), and moves the watermark up to the
start of the pass minus a margin that absorbs clock skew and late-visible uploads. A burst larger
than `limit` keeps the watermark where it is until every version in it has been requested.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from tickhouse_dagster.storage.landing import LandingFile


def version_digest(file: LandingFile) -> str:
    return hashlib.blake2b(file.run_key.encode(), digest_size=8).hexdigest()


@dataclass
class LandingCursor:
    watermark_ns: int = 0
    requested: set[str] = field(default_factory=set)

    def to_json(self) -> str:
        return json.dumps({"watermark_ns": self.watermark_ns, "requested": sorted(self.requested)})

    @classmethod
    def from_json(cls, text: str | None) -> LandingCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(int(data["watermark_ns"]), set(data["requested"]))


@dataclass(frozen=True)
class LandingPlan:
    to_ingest: list[LandingFile]
    cursor: LandingCursor
    files_listed: int
    backlog: int  # versions waiting for a later tick because of the limit


def plan_ingestion(
    files: Iterable[LandingFile],
    cursor: LandingCursor,
    *,
    now_ns: int,
    margin_ns: int,
    limit: int,
) -> LandingPlan:
    to_ingest: list[LandingFile] = []
    still_recent: dict[str, int] = {}  # digest -> modified_ns, of versions already requested
    listed = backlog = 0
    for file in files:
        listed += 1
        if file.modified_ns < cursor.watermark_ns:
            continue
        digest = version_digest(file)
        if digest in cursor.requested:
            still_recent[digest] = file.modified_ns
        elif len(to_ingest) < limit:
            to_ingest.append(file)
            still_recent[digest] = file.modified_ns
        else:
            backlog += 1
    watermark = cursor.watermark_ns if backlog else max(cursor.watermark_ns, now_ns - margin_ns)
    requested = {d for d, modified in still_recent.items() if modified >= watermark}
    return LandingPlan(to_ingest, LandingCursor(watermark, requested), listed, backlog)
