"""Golden Singer inputs (tests/data/*.singer) piped into a real target-piriod process.

Each file is one edge case of the target, readable on its own (tests/data/README.md says
what each shows). ``CASES`` holds, per file, the customers the sandbox starts with, the
target's settings, and the expected outcome: the summary's counts, the dead letters
(key value and reason), the final customers, and the last STATE emitted.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from target_helpers import SUMMARY, TARGET, target_config, write_config

DATA = Path(__file__).parent / "data"
COUNTS = ("records", "created", "updated", "unchanged", "skipped", "rejected")


@dataclass
class Case:
    """What the sandbox holds before, how the target is set up, and what must come out."""

    config: dict
    counts: dict[str, int]
    customers: dict[str, dict]  # final customers by ``by``: the attributes they must hold
    by: str = "tax_id"
    given: list[dict] = field(default_factory=list)  # customers the sandbox starts with
    rejects: list[tuple[str | None, str]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # ``by`` values no customer may hold
    last_state: int | None = None  # the position of the last STATE emitted
    writes: int | None = None  # POSTs + PATCHes the sandbox saw, when it matters


CASES = {
    "duplicate_keys": Case(
        config={"match_field": "tax_id"},
        counts={"records": 5, "created": 2},
        customers={"77.500.001-1": {"name": "Duplicada SpA (renamed)", "phone": "+56 2 1000 0009",
                                    "metadata": {"erp_id": "D-1", "segment": "enterprise",
                                                 "tier": "gold"}},
                   "77.500.002-2": {"name": "Otra SpA", "email": "otra@example.com"}},
        last_state=5, writes=2),
    "key_change": Case(
        config={"match_field": "tax_id"},
        given=[{"id": "cus_gold_rekey", "name": "Rekey SpA", "tax_id": "76.100.000-1"}],
        counts={"records": 2, "updated": 1},
        customers={"76.100.000-9": {"id": "cus_gold_rekey", "phone": "+56 2 2222 0000"}},
        absent=["76.100.000-1"], last_state=2, writes=1),
    "metadata_merge": Case(
        config={"match_field": "metadata.erp_id"}, by="metadata.erp_id",
        given=[{"id": "cus_gold_meta", "name": "Metadata SpA", "phone": "+56 2 3333 0000",
                "metadata": {"erp_id": "ERP-7", "segment": "smb", "crm": "hubspot"}}],
        counts={"records": 2, "created": 1, "updated": 1},
        customers={"ERP-7": {"id": "cus_gold_meta", "phone": None,
                             "metadata": {"erp_id": "ERP-7", "crm": "hubspot", "tier": "gold"}},
                   "ERP-8": {"name": "Nueva con metadata", "website": "https://nueva.example",
                             "metadata": {"erp_id": "ERP-8"}}},
        last_state=2),
    "country_forms": Case(
        config={"match_field": "tax_id", "max_rejects": 1},
        given=[{"id": "cus_gold_country", "name": "País SpA", "tax_id": "76.300.000-3",
                "country": "CL", "state": "CL-RM"}],
        counts={"records": 5, "created": 3, "unchanged": 1, "rejected": 1},
        customers={"76.300.000-3": {"country": "CL", "state": "CL-RM"},
                   "77.300.001-1": {"country": "PE", "state": None},
                   "77.300.002-2": {"country": "CL", "state": "CL-RM"},
                   "77.300.003-3": {"country": None, "state": None}},
        rejects=[("77.300.004-4", "invalid")], absent=["77.300.004-4"], last_state=5,
        writes=3),
    "unchanged_resend": Case(
        config={}, by="id",
        given=[{"id": "cus_gold_same", "name": "Igual SpA", "email": "igual@example.com",
                "tax_id": "76.400.000-4", "country": "CL", "state": "CL-VS",
                "phone": "+56 32 200 0000", "currency": "CLP",
                "metadata": {"erp_id": "ERP-400"}}],
        counts={"records": 2, "unchanged": 1},
        customers={"cus_gold_same": {"name": "Igual SpA", "email": "igual@example.com"}},
        last_state=2, writes=0),
    "missing_key": Case(
        config={"match_field": "tax_id", "max_rejects": 2},
        counts={"records": 3, "created": 1, "rejected": 2},
        customers={"77.600.001-1": {"name": "Con clave SpA"}},
        rejects=[(None, "missing_key"), (None, "missing_key")], last_state=3, writes=1),
    "invalid_email": Case(
        config={"match_field": "tax_id", "max_rejects": 1},
        counts={"records": 2, "created": 1, "rejected": 1},
        customers={"77.700.002-2": {"email": "bueno@example.com"}},
        rejects=[("77.700.001-1", "invalid")], absent=["77.700.001-1"], last_state=2),
    "update_only_miss": Case(
        config={"match_field": "tax_id", "mode": "update_only", "max_rejects": 1},
        given=[{"id": "cus_gold_upd", "name": "Actualizar SpA", "tax_id": "76.800.000-8"}],
        counts={"records": 2, "updated": 1, "rejected": 1},
        customers={"76.800.000-8": {"address": "Av. Siempre Viva 742"}},
        rejects=[("77.800.001-1", "not_found")], absent=["77.800.001-1"], last_state=2,
        writes=1),
    "state_between_batches": Case(
        config={"match_field": "tax_id", "batch_size_rows": 2},
        counts={"records": 5, "created": 4, "updated": 1},
        customers={"77.900.001-1": {"name": "Lote uno A (again)"},
                   "77.900.004-4": {"name": "Lote tres A"}},
        last_state=5),
}


def test_every_golden_file_has_a_case_and_a_readme_entry():
    files = {path.stem for path in DATA.glob("*.singer")}
    assert files == set(CASES)
    readme = (DATA / "README.md").read_text()
    assert all(f"`{name}.singer`" in readme for name in files)


def value_at(customer: dict, name: str) -> object:
    """An attribute in write shape: country and state as codes, ``metadata.x`` allowed."""
    if name.startswith("metadata."):
        return (customer.get("metadata") or {}).get(name.split(".", 1)[1])
    value = customer.get(name)
    return value["id"] if name in ("country", "state") and isinstance(value, dict) else value


def run_golden(sandbox, tmp_path: Path, name: str, config: dict) -> tuple[int, str, str]:
    """Pipe tests/data/<name>.singer into target-piriod; return exit code, stdout, stderr."""
    path = write_config(tmp_path, target_config(sandbox, tmp_path, **config))
    with (DATA / f"{name}.singer").open("rb") as singer:
        done = subprocess.run([*TARGET, "--config", str(path)], stdin=singer,
                              capture_output=True, timeout=120, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_file(sandbox, tmp_path, name):
    case = CASES[name]
    sandbox.reset(0)
    for customer in case.given:
        sandbox.insert({k: v for k, v in customer.items() if k != "id"},
                       customer_id=customer["id"])
    sandbox.reset_stats()

    code, stdout, stderr = run_golden(sandbox, tmp_path, name, case.config)
    assert code == 0, stderr[-3000:]
    summary = dict(part.split("=", 1) for part in SUMMARY.findall(stderr)[-1].split()
                   if "=" in part)
    assert {n: int(summary[n]) for n in COUNTS} == {n: case.counts.get(n, 0) for n in COUNTS}

    letters = tmp_path / "rejects.jsonl"
    lines = [json.loads(line) for line in letters.read_text().splitlines()] \
        if letters.exists() else []
    got = sorted(((line["key"] or {}).get("value"), line["reason"]) for line in lines)
    assert got == sorted(case.rejects, key=lambda r: (r[0] or "", r[1]))

    customers = sandbox.customers()
    held = Counter(value_at(customer, case.by) for customer in customers)
    assert all(count == 1 for count in held.values()), f"duplicated: {held}"
    assert len(customers) == len(case.given) + case.counts.get("created", 0)
    final = {value_at(customer, case.by): customer for customer in customers}
    for key, attributes in case.customers.items():
        assert key in final, f"no customer has {case.by}={key!r}"
        assert {n: value_at(final[key], n) for n in attributes} == attributes, key
    assert not set(case.absent) & set(final)
    if case.writes is not None:
        assert sandbox.stats()["writes"] == case.writes

    states = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert {} not in states  # an empty STATE would wipe the orchestrator's saved state
    positions = [state["bookmarks"]["customers"]["position"] for state in states]
    assert positions == sorted(positions) and positions[-1] == case.last_state
