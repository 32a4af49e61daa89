"""Interoperability smoke test for the local real stack (infra/local/stack).

Proves that pyiceberg and Trino share Iceberg tables both ways:

  1. pyiceberg creates namespace `smoke` and table `smoke.t` (decimal(18,6),
     timestamptz (us), date; partitioned by day(d)) and appends rows;
  2. Trino reads `<catalog>.smoke.t` and the values must match exactly
     (types checked too), and appends to it;
  3. Trino creates/inserts `smoke.t_trino`; pyiceberg reads it back exactly, and
     pyiceberg sees Trino's append to `smoke.t`;
  4. everything under `smoke` is dropped again (and S3 is checked to be clean).

Catalogs:
  jdbc  pyiceberg SqlCatalog("tickhouse") on PostgreSQL  <->  Trino catalog `iceberg`
  rest  pyiceberg RestCatalog on SeaweedFS's Iceberg REST  <->  Trino catalog `iceberg_rest`

Usage (stack up):  infra/local/stack smoke [--catalog jdbc|rest|all] [--keep]
   or:             eval "$(infra/local/stack env)"; .venv/bin/python infra/local/smoke_interop.py
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
import traceback
from decimal import Decimal
from typing import Any

import boto3
import pyarrow as pa
import trino
from botocore.config import Config
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    DateType,
    DecimalType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

NAMESPACE = "smoke"
UTC = dt.UTC


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


S3_ENDPOINT = env("TICKHOUSE_S3_ENDPOINT", "http://127.0.0.1:18333")
S3_REGION = env("TICKHOUSE_S3_REGION", "us-east-1")
S3_ACCESS_KEY = env("TICKHOUSE_S3_ACCESS_KEY", "tickhouse")
S3_SECRET_KEY = env("TICKHOUSE_S3_SECRET_KEY", "tickhouse-local-secret")
PG_PASSWORD = env("TICKHOUSE_PG_PASSWORD", "tickhouse-local-pg")
CATALOG_URI = env(
    "TICKHOUSE_CATALOG_URI",
    f"postgresql+psycopg2://tickhouse:{PG_PASSWORD}@127.0.0.1:15433/iceberg",
)
REST_URI = env("TICKHOUSE_ICEBERG_REST_URI", "http://127.0.0.1:18181")
REST_WAREHOUSE = env("TICKHOUSE_ICEBERG_REST_WAREHOUSE", "s3://tickhouse-rest")
TRINO_HOST = env("TICKHOUSE_TRINO_HOST", "127.0.0.1")
TRINO_PORT = int(env("TICKHOUSE_TRINO_PORT", "18080"))

S3_PROPS = {
    "s3.endpoint": S3_ENDPOINT,
    "s3.access-key-id": S3_ACCESS_KEY,
    "s3.secret-access-key": S3_SECRET_KEY,
    "s3.region": S3_REGION,
}

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "symbol", StringType(), required=False),
    NestedField(3, "px", DecimalType(18, 6), required=False),
    NestedField(4, "ts", TimestamptzType(), required=False),
    NestedField(5, "d", DateType(), required=False),
)
SPEC = PartitionSpec(
    PartitionField(source_id=5, field_id=1000, transform=DayTransform(), name="d_day")
)

# Rows written by pyiceberg: edge-ish values for each type.
PY_ROWS = [
    (
        1,
        "AAPL",
        Decimal("189.123456"),
        dt.datetime(2026, 1, 2, 14, 30, 0, 123456, tzinfo=UTC),
        dt.date(2026, 1, 2),
    ),
    (
        2,
        "MSFT",
        Decimal("-0.000001"),
        dt.datetime(2026, 1, 2, 23, 59, 59, 999999, tzinfo=UTC),
        dt.date(2026, 1, 2),
    ),
    (
        3,
        "BIG",
        Decimal("999999999999.999999"),
        dt.datetime(1999, 12, 31, 0, 0, 0, 1, tzinfo=UTC),
        dt.date(1999, 12, 31),
    ),
    (4, None, None, None, None),
]
# Rows written by Trino (SQL literals) and what pyiceberg must read back.
TRINO_ROWS = [
    (
        10,
        "ES",
        Decimal("5012.250000"),
        dt.datetime(2026, 3, 4, 9, 30, 0, 1, tzinfo=UTC),
        dt.date(2026, 3, 4),
    ),
    (
        11,
        "NQ",
        Decimal("-123456789012.345678"),
        dt.datetime(2026, 3, 5, 0, 0, 0, 0, tzinfo=UTC),
        dt.date(2026, 3, 5),
    ),
]
EXPECTED_TRINO_TYPES = {
    "id": "bigint",
    "symbol": "varchar",
    "px": "decimal(18,6)",
    "ts": "timestamp(6) with time zone",
    "d": "date",
}


def log(msg: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def arrow_table(rows: list[tuple]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "id": pa.array(cols[0], pa.int64()),
            "symbol": pa.array(cols[1], pa.string()),
            "px": pa.array(cols[2], pa.decimal128(18, 6)),
            "ts": pa.array(cols[3], pa.timestamp("us", tz="UTC")),
            "d": pa.array(cols[4], pa.date32()),
        },
        schema=SCHEMA.as_arrow(),
    )


def normalize(row: Any) -> tuple:
    """Make Trino/pyarrow values comparable: aware datetimes -> UTC."""
    out = []
    for v in row:
        if isinstance(v, dt.datetime):
            check(v.tzinfo is not None, f"timestamp {v!r} lost its time zone")
            v = v.astimezone(UTC)
        out.append(v)
    return tuple(out)


def rows_from_arrow(tbl: pa.Table) -> list[tuple]:
    tbl = tbl.sort_by("id")
    return [normalize(r.values()) for r in tbl.to_pylist()]


def sql_literal(row: tuple) -> str:
    i, sym, px, ts, d = row
    return (
        f"({i}, '{sym}', DECIMAL '{px}', "
        f"TIMESTAMP '{ts.strftime('%Y-%m-%d %H:%M:%S.%f')} UTC', DATE '{d.isoformat()}')"
    )


class TrinoSession:
    def __init__(self, catalog: str) -> None:
        self.catalog = catalog
        self.conn = trino.dbapi.connect(
            host=TRINO_HOST,
            port=TRINO_PORT,
            user="tickhouse-smoke",
            catalog=catalog,
            schema=NAMESPACE,
        )

    def query(self, sql: str) -> list[list[Any]]:
        cur = self.conn.cursor()
        cur.execute(sql)
        return cur.fetchall()


def make_catalog(kind: str) -> Catalog:
    if kind == "jdbc":
        return SqlCatalog("tickhouse", uri=CATALOG_URI, warehouse="s3://warehouse/", **S3_PROPS)
    # SeaweedFS authenticates REST callers with its S3 identities: OAuth2
    # client-credentials where client_id/secret are the S3 access/secret key.
    return RestCatalog(
        "tickhouse_rest",
        uri=REST_URI,
        warehouse=REST_WAREHOUSE,
        credential=f"{S3_ACCESS_KEY}:{S3_SECRET_KEY}",
        **S3_PROPS,
    )


def drop_namespace(cat: Catalog) -> None:
    try:
        tables = cat.list_tables(NAMESPACE)
    except NoSuchNamespaceError:
        return
    for ident in tables:
        try:
            cat.purge_table(ident)
        except NotImplementedError:
            cat.drop_table(ident)
        except NoSuchTableError:
            pass
    # SeaweedFS REST lists tables of a missing namespace as []; dropping it then raises.
    with contextlib.suppress(NoSuchNamespaceError):
        cat.drop_namespace(NAMESPACE)


def s3_keys(bucket: str, prefix: str) -> list[str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
        config=Config(s3={"addressing_style": "path"}),
    )
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def run(kind: str, keep: bool) -> None:
    trino_catalog = "iceberg" if kind == "jdbc" else "iceberg_rest"
    cat = make_catalog(kind)
    log(f"=== {kind}: pyiceberg {type(cat).__name__} <-> Trino catalog {trino_catalog} ===")
    ts = TrinoSession(trino_catalog)
    drop_namespace(cat)  # leftovers of an interrupted run

    # 1. pyiceberg writes.
    cat.create_namespace(NAMESPACE)
    t = cat.create_table(f"{NAMESPACE}.t", schema=SCHEMA, partition_spec=SPEC)
    t.append(arrow_table(PY_ROWS))
    log(f"pyiceberg: created {NAMESPACE}.t at {t.location()} and appended {len(PY_ROWS)} rows")

    # 2. Trino reads exactly what pyiceberg wrote, with the expected types.
    types = {r[0]: r[1] for r in ts.query(f"DESCRIBE {trino_catalog}.{NAMESPACE}.t")}
    check(types == EXPECTED_TRINO_TYPES, f"Trino column types {types} != {EXPECTED_TRINO_TYPES}")
    got = [
        normalize(r)
        for r in ts.query(
            f"SELECT id, symbol, px, ts, d FROM {trino_catalog}.{NAMESPACE}.t ORDER BY id"
        )
    ]
    check(
        got == [normalize(r) for r in PY_ROWS],
        f"Trino read mismatch:\n got      {got}\n expected {PY_ROWS}",
    )
    ddl = ts.query(f"SHOW CREATE TABLE {trino_catalog}.{NAMESPACE}.t")[0][0]
    check(
        "partitioning = ARRAY['day(d)']" in ddl, f"Trino does not see day(d) partitioning:\n{ddl}"
    )
    log(
        f"trino: read {len(got)} rows from {trino_catalog}.{NAMESPACE}.t: exact match; types {types}; partitioning day(d)"
    )

    # 3. Trino writes: a new table, and an append to pyiceberg's table.
    ts.query(
        f"CREATE TABLE {trino_catalog}.{NAMESPACE}.t_trino "
        "(id bigint, symbol varchar, px decimal(18,6), ts timestamp(6) with time zone, d date) "
        "WITH (partitioning = ARRAY['day(d)'])"
    )
    values = ", ".join(sql_literal(r) for r in TRINO_ROWS)
    ts.query(f"INSERT INTO {trino_catalog}.{NAMESPACE}.t_trino VALUES {values}")
    ts.query(f"INSERT INTO {trino_catalog}.{NAMESPACE}.t VALUES {values}")
    loc = ts.query(f'SELECT file_path FROM {trino_catalog}.{NAMESPACE}."t_trino$files" LIMIT 1')[0][
        0
    ]
    log(
        f"trino: created {NAMESPACE}.t_trino, inserted {len(TRINO_ROWS)} rows into it and into {NAMESPACE}.t"
    )
    log(f"trino: t_trino data file e.g. {loc}")

    # 4. pyiceberg reads Trino's writes.
    tt = cat.load_table(f"{NAMESPACE}.t_trino")
    got = rows_from_arrow(tt.scan().to_arrow())
    check(
        got == [normalize(r) for r in TRINO_ROWS],
        f"pyiceberg read mismatch:\n got      {got}\n expected {TRINO_ROWS}",
    )
    check(str(tt.spec().fields[0].transform) == "day", f"unexpected spec {tt.spec()}")
    ice_types = {f.name: str(f.field_type) for f in tt.schema().fields}
    log(
        f"pyiceberg: read {len(got)} rows from {NAMESPACE}.t_trino: exact match; schema {ice_types}"
    )
    t = cat.load_table(f"{NAMESPACE}.t")
    got = rows_from_arrow(t.scan().to_arrow())
    expected = sorted([normalize(r) for r in PY_ROWS + TRINO_ROWS], key=lambda r: r[0])
    check(
        got == expected, f"pyiceberg read of {NAMESPACE}.t after Trino append mismatch:\n got {got}"
    )
    log(
        f"pyiceberg: {NAMESPACE}.t has {len(got)} rows after Trino's append ({len(t.snapshots())} snapshots): exact match"
    )

    if kind == "jdbc":
        with cat.engine.connect() as c:  # type: ignore[attr-defined]
            from sqlalchemy import text

            rows = c.execute(
                text(
                    "SELECT table_name, iceberg_type FROM iceberg_tables "
                    "WHERE catalog_name = 'tickhouse' AND table_namespace = :ns ORDER BY table_name"
                ),
                {"ns": NAMESPACE},
            ).all()
        log(f"postgres iceberg_tables rows (table_name, iceberg_type): {[tuple(r) for r in rows]}")
        check(all(r[1] == "TABLE" for r in rows), "expected iceberg_type='TABLE' for both writers")

    if keep:
        log(f"--keep: leaving namespace {NAMESPACE} in place")
        return

    # 5. Clean up via Trino (drops data files too), then the namespace.
    for name in ("t_trino", "t"):
        ts.query(f"DROP TABLE {trino_catalog}.{NAMESPACE}.{name}")
    ts.query(f"DROP SCHEMA {trino_catalog}.{NAMESPACE}")
    check(
        NAMESPACE not in [n[0] for n in cat.list_namespaces()], "namespace still listed after drop"
    )
    bucket = "warehouse" if kind == "jdbc" else REST_WAREHOUSE.removeprefix("s3://").split("/")[0]
    left: list[str] = []
    for _ in range(10):  # SeaweedFS removes emptied "directories" asynchronously
        left = s3_keys(bucket, f"{NAMESPACE}/") + s3_keys(bucket, f"{NAMESPACE}.db/")
        if not left:
            break
        time.sleep(1)
    log(
        f"cleanup: dropped {NAMESPACE}.t, {NAMESPACE}.t_trino and namespace {NAMESPACE}; objects left in s3://{bucket}/{NAMESPACE}/: {len(left)}"
    )
    if left:
        log(f"  note: leftover objects {left[:5]}{' ...' if len(left) > 5 else ''}")


def main() -> int:
    try:
        import pyiceberg_core  # noqa: F401
    except ImportError:
        sys.exit(
            "pyiceberg_core is not importable: pyiceberg 0.12 needs the `pyiceberg-core` extra "
            "(pyiceberg-core>=0.10.1,<0.11) to write tables partitioned by day()/month()/hour()/bucket(). "
            "`infra/local/stack smoke` provides it from the cache when the project venv lacks it."
        )
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--catalog", choices=["jdbc", "rest", "all"], default="all")
    ap.add_argument("--keep", action="store_true", help="do not drop the smoke namespace")
    args = ap.parse_args()
    kinds = ["jdbc", "rest"] if args.catalog == "all" else [args.catalog]
    failed = []
    for kind in kinds:
        t0 = time.monotonic()
        try:
            run(kind, args.keep)
            log(f"=== {kind}: PASS ({time.monotonic() - t0:.1f}s) ===")
        except Exception as e:  # report and continue with the next catalog
            failed.append(kind)
            traceback.print_exc()
            log(f"=== {kind}: FAIL: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
