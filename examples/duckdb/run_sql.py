"""Run SQL files on the DuckDB warehouse: `python run_sql.py FILE.sql ...`.

The `duckdb-sql` utility of meltano.yml runs this with the duckdb package target-duckdb
writes the file with (a CLI of another version could change the file's storage format).
The database is the utility's `filepath` setting, which Meltano passes as
DUCKDB_SQL_FILEPATH. All files run in one transaction: all of it or none.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb


def main(paths: list[str]) -> None:
    """Run each SQL file, in order, in one transaction."""
    database = os.environ["DUCKDB_SQL_FILEPATH"]
    with duckdb.connect(database) as connection:
        connection.begin()
        for path in paths:
            connection.execute(Path(path).read_text())
            print(f"duckdb-sql: ran {Path(path).name} on {database}", file=sys.stderr)
        connection.commit()


if __name__ == "__main__":
    main(sys.argv[1:])
