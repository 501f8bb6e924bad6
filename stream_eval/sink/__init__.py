"""ClickHouse sink: one DDL and one writer for chdb (embedded) and clickhouse-connect (server)."""
