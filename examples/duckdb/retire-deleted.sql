-- DuckDB: retire the customers that the latest full read (piriod_full) did not bring
UPDATE piriod.customers
SET _sdc_deleted_at = strftime(now() AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ')
WHERE _sdc_deleted_at IS NULL
  AND id NOT IN (SELECT id FROM piriod_full.customers)
  AND updated < (SELECT min(_sdc_extracted_at) FROM piriod_full.customers);
