"""The sequential reverse-ETL baseline: one request at a time, no index, no diffing.

Reads write payloads (one JSON object a line) and sends each one: a POST per record
(``create``), or a PATCH of the whole payload to the id found in ``--ids`` (``update``,
every record, changed or not). One pooled ``requests.Session``. With ``--ids-out``, the
created ids are saved for a later ``update`` run.

    python benchmarks/baseline_load.py create API_URL TOKEN payloads.jsonl --ids-out ids.txt
    python benchmarks/baseline_load.py update API_URL TOKEN payloads.jsonl --ids ids.txt
"""

from __future__ import annotations

import argparse
import json
import sys

import requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=("create", "update"))
    parser.add_argument("api_url")
    parser.add_argument("token")
    parser.add_argument("payloads")
    parser.add_argument("--ids", help="ids to PATCH, one a line, in payload order")
    parser.add_argument("--ids-out", help="where to write the created ids")
    args = parser.parse_args(argv)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.token}"
    root = f"{args.api_url.rstrip('/')}/customers/"
    ids = open(args.ids).read().split() if args.ids else []  # noqa: SIM115
    created = []
    with open(args.payloads, encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            payload = json.loads(line)
            if args.action == "create":
                response = session.post(root, json=payload, timeout=60)
            else:
                response = session.patch(f"{root}{ids[number]}/", json=payload, timeout=60)
            response.raise_for_status()
            created.append(response.json()["id"])
    if args.ids_out:
        with open(args.ids_out, "w") as out:
            out.write("\n".join(created) + "\n")
    print(f"{len(created)} {args.action}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
