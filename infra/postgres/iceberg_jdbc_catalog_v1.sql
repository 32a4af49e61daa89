-- Iceberg JDBC catalog tables, "V1" layout, for the `iceberg` database.
--
-- Byte-for-byte the layout Iceberg Java's JdbcCatalog (iceberg-core 1.9.1, bundled
-- with Trino 476) creates: JdbcUtil.V0_CREATE_CATALOG_SQL plus
-- JdbcUtil.V1_UPDATE_CATALOG_SQL (iceberg_type), and
-- JdbcUtil.CREATE_NAMESPACE_PROPERTIES_TABLE_SQL.
--
-- Why pre-create: Trino constructs its JdbcCatalog with initializeCatalogTables=false,
-- so it fails on an empty database; pyiceberg's SqlCatalog creates its own variant
-- only when the tables are missing. Creating the Java layout up front means both
-- engines find tables they agree on, whoever runs first. pyiceberg probes for
-- iceberg_type and then operates in v1 mode (writes iceberg_type='TABLE').
--
-- Idempotent: safe to run on every `stack up`; an existing V0 table is upgraded.
CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    PRIMARY KEY (catalog_name, table_namespace, table_name)
);
ALTER TABLE iceberg_tables ADD COLUMN IF NOT EXISTS iceberg_type VARCHAR(5);

CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
    catalog_name VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL,
    property_key VARCHAR(255),
    property_value VARCHAR(1000),
    PRIMARY KEY (catalog_name, namespace, property_key)
);
