"""``piriod-sandbox``: run the local Piriod API on a port, seeded and with optional faults."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from piriod_sandbox.churn import ChurnPlan
from piriod_sandbox.faults import FaultPlan
from piriod_sandbox.server import DEFAULT_TOKEN, SandboxServer
from piriod_sandbox.store import CustomerStore


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(prog="piriod-sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=None,
                        help="wipe the data and create this many realistic customers")
    parser.add_argument("--rng-seed", type=int, default=7, help="makes seeded data repeatable")
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the Bearer token to accept")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME=PROBABILITY",
                        help="random fault, e.g. 429=0.05, 503_html=0.01, drop=0.01, slow=0.01")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After of a 429")
    parser.add_argument("--slow-ms", type=int, default=3000, help="delay of the 'slow' fault")
    parser.add_argument("--rate-limit", type=float, default=0.0,
                        help="requests per second before answering 429 (0: no limit)")
    parser.add_argument("--ignore-params", action="store_true",
                        help="ignore ordering and date/key filters, answer in arbitrary order")
    parser.add_argument("--mixed-offsets", action="store_true",
                        help="render timestamps in assorted UTC offsets")
    parser.add_argument("--no-links", action="store_true",
                        help="list pages of count and results only, no next/previous links")
    parser.add_argument("--faults", type=json.loads, default=None,
                        help="a whole fault plan as JSON (overrides the flags above)")
    parser.add_argument("--churn", type=json.loads, default=None, metavar="JSON",
                        help='listing churn plan, e.g. \'{"at": 2, "every": 5, "deletes": 2, '
                             '"inserts": 1}\' (see piriod_sandbox/churn.py)')
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def plan_from_args(args: argparse.Namespace) -> FaultPlan:
    """Turn the fault flags into a plan."""
    if args.faults is not None:
        return FaultPlan.from_dict(args.faults)
    random_faults = {}
    for item in args.fault:
        name, _, probability = item.partition("=")
        random_faults[name] = float(probability or 0.05)
    return FaultPlan.from_dict({
        "latency_ms": args.latency_ms, "random": random_faults, "retry_after": args.retry_after,
        "slow_ms": args.slow_ms, "rate_limit": args.rate_limit,
        "ignore_params": args.ignore_params, "mixed_offsets": args.mixed_offsets,
        "no_links": args.no_links,
    })


def main(argv: list[str] | None = None) -> None:
    """Start the server and serve until interrupted."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = CustomerStore(args.db)
    if args.seed is not None:
        store.reset(args.seed, args.rng_seed)
    server = SandboxServer((args.host, args.port), store, args.token, plan_from_args(args),
                           verbose=args.verbose)
    if args.churn is not None:
        server.churner.configure(ChurnPlan.from_dict(args.churn))
    # The first line on stdout is the contract with SandboxProcess and scripts: the URL.
    print(f"piriod-sandbox listening on {server.url} with {store.count()} customers", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
