#!/usr/bin/env bash
# Compose one-shot `postgres-init` (postgres:15 image): the role and databases tickhouse uses,
# and the Iceberg JDBC catalog tables, exactly as infra/local/stack sets up its cluster.
# Idempotent; it runs on every `docker compose up`, so a changed TICKHOUSE_PG_PASSWORD or a
# newer catalog DDL applies to an existing data volume too.
#
# Connects as the superuser through the libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD).
#   TICKHOUSE_PG_USER, TICKHOUSE_PG_PASSWORD    application role (not a superuser)
#   TICKHOUSE_PG_DATABASES                      default "iceberg dagster", owned by that role
#   TICKHOUSE_PG_ICEBERG_DB                     default "iceberg": gets the catalog tables
#   TICKHOUSE_ICEBERG_CATALOG_SQL               infra/postgres/iceberg_jdbc_catalog_v1.sql
#   TICKHOUSE_PG_HOST, TICKHOUSE_PG_PORT        where the role's password login is proven (TCP)
set -euo pipefail

die() {
    printf 'postgres-init: %s\n' "$*" >&2
    exit 1
}

: "${TICKHOUSE_PG_USER:?}" "${TICKHOUSE_PG_PASSWORD:?}"
databases=${TICKHOUSE_PG_DATABASES:-iceberg dagster}
iceberg_db=${TICKHOUSE_PG_ICEBERG_DB:-iceberg}
catalog_sql=${TICKHOUSE_ICEBERG_CATALOG_SQL:-/opt/tickhouse/iceberg_jdbc_catalog_v1.sql}
[[ -f $catalog_sql ]] || die "$catalog_sql: no such file (mount infra/postgres/iceberg_jdbc_catalog_v1.sql)"

ident='^[a-z_][a-z0-9_]*$'
[[ $TICKHOUSE_PG_USER =~ $ident ]] || die "TICKHOUSE_PG_USER must match $ident"
for db in $databases; do [[ $db =~ $ident ]] || die "database name '$db' must match $ident"; done
# The compose file places the password unencoded into connection URLs (TICKHOUSE_CATALOG_URI).
[[ $TICKHOUSE_PG_PASSWORD =~ ^[A-Za-z0-9._~-]+$ ]] ||
    die "TICKHOUSE_PG_PASSWORD must match [A-Za-z0-9._~-]+ (it is part of connection URLs)"

psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$@"; }

for _ in $(seq 1 60); do
    pg_isready -q -t 2 && break
    sleep 1
done
pg_isready -q -t 2 || die "PostgreSQL at ${PGHOST:-local socket}:${PGPORT:-5432} is not ready after 60 s"

# Role and password (via \getenv: never on a command line or in a log), then the databases.
psql_admin -d postgres <<'SQL'
\getenv pg_user TICKHOUSE_PG_USER
\getenv pg_password TICKHOUSE_PG_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'pg_user')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'pg_user') \gexec
ALTER ROLE :"pg_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pg_password';
SQL
for db in $databases; do
    psql_admin -d postgres -v db="$db" <<'SQL'
\getenv pg_user TICKHOUSE_PG_USER
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'pg_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
done

# The Iceberg JDBC catalog tables, created by (so owned by) the application role.
{
    printf 'SET ROLE %s;\n' "$TICKHOUSE_PG_USER"
    cat "$catalog_sql"
} | psql_admin -d "$iceberg_db"

# Prove the application role logs in with its password over TCP.
PGPASSWORD=$TICKHOUSE_PG_PASSWORD psql -X -q -w -h "${TICKHOUSE_PG_HOST:-$PGHOST}" \
    -p "${TICKHOUSE_PG_PORT:-${PGPORT:-5432}}" -U "$TICKHOUSE_PG_USER" -d "$iceberg_db" \
    -tAc 'SELECT 1' >/dev/null || die "password login as $TICKHOUSE_PG_USER over TCP failed"
echo "postgres-init: role $TICKHOUSE_PG_USER, databases: $databases, Iceberg JDBC catalog tables (V1) in $iceberg_db ready"
