#!/usr/bin/env bash
# `make demo`: the whole loop (sandbox -> Meltano -> DuckDB -> incremental -> reverse ETL).
# The story is told by scripts/demo.py, run with the project's .venv (made by `make demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py "$@"
