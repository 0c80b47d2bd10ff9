"""The irreducible work of an extract, for tap benchmarks to be measured against.

The same HTTP requests as ``tap-piriod`` (first page with ``page_size`` and
``ordering=created,id``, then the ``next`` links) over one pooled ``requests.Session``,
each record written to stdout as one JSON line. No Singer messages, no schema, no state.

    python benchmarks/baseline_extract.py API_URL TOKEN PAGE_SIZE > records.jsonl
"""

from __future__ import annotations

import json
import sys

import requests


def main(api_url: str, token: str, page_size: int) -> int:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    out = sys.stdout
    url: str | None = f"{api_url.rstrip('/')}/customers/"
    params: dict | None = {"page_size": page_size, "ordering": "created,id"}
    count = 0
    while url:
        response = session.get(url, params=params, timeout=60)
        response.raise_for_status()
        page = json.loads(response.content)
        for record in page["results"]:
            out.write(json.dumps(record) + "\n")
            count += 1
        url, params = page.get("next"), None
    out.flush()
    print(f"{count} records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
