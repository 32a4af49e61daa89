"""The landing listener's persisted queue: file versions noticed from SeaweedFS's change stream,
the listener's position in that stream, and the batches the push sensor has claimed.

One SQL database (SQLAlchemy URL: a SQLite file on the local stack, PostgreSQL in the compose
deployment) shared by two processes: the listener appends, the Dagster sensor reads.

- `tickhouse_landing_events`: one row per file version (`run_key` = key@version, unique), in the
  order the listener noticed them (`seq`). Inserting a version seen before is a no-op, so a
  replayed stretch of the change stream (after any restart) adds nothing.
- `tickhouse_landing_listener`: per listener, the timestamp of the last filer event it handled
  (`since_ns`, written in the same transaction as the versions that event produced: a restart
  resumes exactly there) and when it last heard from the filer (lag when nothing lands).
- `tickhouse_landing_claims`: per consumer (the sensor's landing URI), the seq ranges turned into
  run requests. A claim is written before its run request is returned, so an evaluation that is
  retried (the daemon died before it stored the cursor) requests exactly the same batch with the
  same run key, and Dagster drops the duplicate.

Writers take a table lock on PostgreSQL (SQLite has one writer at a time anyway), so transactions
commit in seq order and a reader never sees seq N+1 before seq N: a claimed range never gains rows
later.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from tickhouse_dagster.storage.landing import LandingFile

metadata = MetaData()
events = Table(
    "tickhouse_landing_events",
    metadata,
    # Integer (not BigInteger) so SQLite makes it the rowid: gap-free, increasing.
    Column("seq", Integer().with_variant(BigInteger, "postgresql"), primary_key=True),
    Column("run_key", String(2048), nullable=False, unique=True),
    Column("bucket", String(255), nullable=False),
    Column("key", String(1024), nullable=False),  # object key in the bucket
    Column("size", BigInteger, nullable=False),
    Column("modified_ns", BigInteger, nullable=False),
    Column("etag", String(255), nullable=False),
    Column("event_ts_ns", BigInteger, nullable=False),  # the filer's event time
    Column("noticed_ns", BigInteger, nullable=False),  # when the listener queued it
    # "listener", or "poll": the polling sensor's safety net registered (and requested) the
    # version itself; the push sensor requests listener rows only, so neither path requests a
    # version the other has.
    Column("origin", String(16), nullable=False, default="listener"),
)
listeners = Table(
    "tickhouse_landing_listener",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("since_ns", BigInteger, nullable=False),
    Column("heard_ns", BigInteger, nullable=False),  # last message (event or heartbeat)
    Column("filer_ts_ns", BigInteger, nullable=False),  # the filer's clock in that message
)
claims = Table(
    "tickhouse_landing_claims",
    metadata,
    Column("consumer", String(1024), primary_key=True),
    Column("after_seq", BigInteger, primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("claimed_ns", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class QueuedFile:
    seq: int
    file: LandingFile  # key relative to the consumer's landing prefix
    event_ts_ns: int
    noticed_ns: int


@dataclass(frozen=True)
class ListenerState:
    name: str
    since_ns: int
    heard_ns: int
    filer_ts_ns: int


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL: the sensor reads while the listener writes; busy_timeout instead of "database is
    # locked" errors when both touch it at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=FULL")  # a queued event survives a power cut
    cursor.close()


class LandingQueue:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine, checkfirst=True)

    def describe(self) -> str:
        """The database without its password, for logs and metadata."""
        return self.engine.url.render_as_string(hide_password=True)

    # --- the listener's side -------------------------------------------------------------

    def state(self, name: str) -> ListenerState | None:
        with self.engine.connect() as c:
            row = c.execute(select(listeners).where(listeners.c.name == name)).first()
        return None if row is None else ListenerState(*row)

    def record(
        self,
        name: str,
        *,
        since_ns: int,
        filer_ts_ns: int,
        files: Iterable[tuple[str, LandingFile, int]] = (),
    ) -> int:
        """Queue the versions (bucket, file, event ts) not seen before and move the listener's
        position to `since_ns`, in one transaction; returns how many versions were new."""
        now = time.time_ns()
        with self.engine.begin() as c:
            added = len(self._insert_new(c, files, now, "listener"))
            values = {"since_ns": since_ns, "heard_ns": now, "filer_ts_ns": filer_ts_ns}
            updated = c.execute(
                listeners.update().where(listeners.c.name == name).values(**values)
            ).rowcount
            if not updated:
                c.execute(insert(listeners).values(name=name, **values))
        return added

    def _insert_new(
        self, c: Connection, files: Iterable[tuple[str, LandingFile, int]], now: int, origin: str
    ) -> list[LandingFile]:
        if c.dialect.name == "postgresql":  # commit order = seq order (see the module doc)
            c.execute(text("LOCK TABLE tickhouse_landing_events IN EXCLUSIVE MODE"))
        added = []
        for bucket, file, event_ts in files:
            run_key = f"{bucket}/{file.run_key}"
            if c.execute(select(events.c.seq).where(events.c.run_key == run_key)).first():
                continue  # replayed after a restart, a metadata-only update, or polled first
            c.execute(
                insert(events).values(
                    run_key=run_key,
                    bucket=bucket,
                    key=file.key,
                    size=file.size,
                    modified_ns=file.modified_ns,
                    etag=file.etag,
                    event_ts_ns=event_ts,
                    noticed_ns=now,
                    origin=origin,
                )
            )
            added.append(file)
        return added

    def add_listed(self, files: Iterable[tuple[str, LandingFile, int]]) -> int:
        """Queue listener versions found by listing rather than by an event, leaving the
        position alone; returns how many were new."""
        with self.engine.begin() as c:
            return len(self._insert_new(c, files, time.time_ns(), "listener"))

    def take_for_poll(self, bucket: str, prefix: str, files: Iterable[LandingFile]) -> set[str]:
        """Register versions the polling sensor found (keys relative to prefix); returns the run
        keys it registered first, i.e. those it may request: the listener had not queued them."""
        now = time.time_ns()
        rows = [
            (bucket, LandingFile(prefix + f.key, f.size, f.modified_ns, f.etag), 0) for f in files
        ]
        with self.engine.begin() as c:
            added = self._insert_new(c, rows, now, "poll")
        return {f"{f.key[len(prefix) :]}@{f.version}" for f in added}

    # --- the sensor's side ----------------------------------------------------------------

    def last_seq(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())

    def claim(self, consumer: str, after_seq: int, limit: int) -> tuple[int, int]:
        """The seq range (after_seq, last] this consumer turns into runs next: the one claimed
        before, if an earlier evaluation claimed it, else a new one of at most `limit` rows."""
        with self.engine.begin() as c:
            found = c.execute(
                select(claims.c.last_seq).where(
                    and_(claims.c.consumer == consumer, claims.c.after_seq == after_seq)
                )
            ).scalar()
            if found is not None:
                return after_seq, int(found)
            last = c.execute(
                select(func.max(events.c.seq)).where(
                    events.c.seq.in_(
                        select(events.c.seq)
                        .where(events.c.seq > after_seq)
                        .order_by(events.c.seq)
                        .limit(limit)
                        .scalar_subquery()
                    )
                )
            ).scalar()
            if last is None:
                return after_seq, after_seq
            try:
                c.execute(
                    insert(claims).values(
                        consumer=consumer,
                        after_seq=after_seq,
                        last_seq=int(last),
                        claimed_ns=time.time_ns(),
                    )
                )
            except IntegrityError:  # a concurrent evaluation claimed it first: use that one
                c.rollback()
                return self.claim(consumer, after_seq, limit)
        return after_seq, int(last)

    def files(self, after_seq: int, last_seq: int, bucket: str, prefix: str) -> list[QueuedFile]:
        """The versions in (after_seq, last_seq] under bucket/prefix, keys relative to it."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(events)
                .where(
                    and_(
                        events.c.seq > after_seq,
                        events.c.seq <= last_seq,
                        events.c.bucket == bucket,
                        events.c.key.startswith(prefix, autoescape=True),
                        events.c.origin == "listener",
                    )
                )
                .order_by(events.c.seq)
            ).mappings()
            return [
                QueuedFile(
                    r["seq"],
                    LandingFile(r["key"][len(prefix) :], r["size"], r["modified_ns"], r["etag"]),
                    r["event_ts_ns"],
                    r["noticed_ns"],
                )
                for r in rows
            ]

    def backlog(self, after_seq: int, bucket: str, prefix: str) -> tuple[int, int | None]:
        """Versions under bucket/prefix queued after `after_seq`, and the oldest one's
        noticed time."""
        with self.engine.connect() as c:
            count, oldest = c.execute(
                select(func.count(), func.min(events.c.noticed_ns)).where(
                    and_(
                        events.c.seq > after_seq,
                        events.c.bucket == bucket,
                        events.c.key.startswith(prefix, autoescape=True),
                        events.c.origin == "listener",
                    )
                )
            ).one()
        return int(count), None if oldest is None else int(oldest)

    # --- upkeep -----------------------------------------------------------------------------

    def prune(self, older_than_ns: int) -> tuple[int, int]:
        """Forget what no one needs any more: versions noticed before `older_than_ns` that every
        consumer active since then has claimed past, and claims made before it except each
        consumer's latest (a retried evaluation looks it up). Returns (versions, claims)
        removed. A pruned version that shows up again (a replay older than the retention) is
        queued anew and requested, and the run finds it ingested already (the ledger): nothing
        runs twice. With no active consumer no version is pruned, so a sensor that was off keeps
        its backlog."""
        with self.engine.begin() as c:
            latest = (
                select(claims.c.consumer, func.max(claims.c.after_seq).label("after_seq"))
                .group_by(claims.c.consumer)
                .subquery()
            )
            kept = select(latest.c.after_seq).where(latest.c.consumer == claims.c.consumer)
            old_claims = c.execute(
                claims.delete().where(
                    and_(
                        claims.c.claimed_ns < older_than_ns,
                        claims.c.after_seq < kept.scalar_subquery(),
                    )
                )
            ).rowcount
            active = (
                select(func.max(claims.c.last_seq).label("last"))
                .where(claims.c.claimed_ns >= older_than_ns)
                .group_by(claims.c.consumer)
                .subquery()
            )
            bound = c.execute(select(func.min(active.c.last))).scalar()
            removed = 0
            if bound is not None:
                removed = c.execute(
                    events.delete().where(
                        and_(events.c.noticed_ns < older_than_ns, events.c.seq <= int(bound))
                    )
                ).rowcount
        return int(removed or 0), int(old_claims or 0)

    def listener_states(self) -> list[ListenerState]:
        with self.engine.connect() as c:
            return [ListenerState(*r) for r in c.execute(select(listeners))]
