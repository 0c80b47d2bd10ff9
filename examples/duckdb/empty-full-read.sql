-- DuckDB: empty the schema the full read loads into, so that it holds that read alone
DROP TABLE IF EXISTS piriod_full.customers;
