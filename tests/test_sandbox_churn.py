"""The sandbox's churn control: the listing moves exactly before the list requests named."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from tap_helpers import instant

from piriod_sandbox import SandboxProcess

SANDBOX_CUSTOMERS = 60


def listing(sandbox, page: int = 1) -> dict:
    return requests.get(f"{sandbox.url}/customers/",
                        params={"ordering": "created,id", "page_size": 10, "page": page},
                        headers={"Authorization": f"Bearer {sandbox.token}"},
                        timeout=10).json()


def creation_order(sandbox) -> list[dict]:
    return sorted(sandbox.customers(), key=lambda c: (instant(c["created"]), c["id"]))


def test_churn_happens_exactly_before_the_named_list_request(sandbox):
    first_ten = {c["id"] for c in creation_order(sandbox)[:10]}
    sandbox.set_churn(at=2, deletes=3, inserts=2, within=10, rng_seed=1)
    assert listing(sandbox)["count"] == 60  # request 1: before the churn
    assert sandbox.churn()["applied"] == 0
    assert listing(sandbox, 2)["count"] == 59  # request 2: after it
    done = sandbox.churn()
    assert done["applied"] == 1 and done["list_requests"] == 2
    assert set(done["deleted"]) <= first_ten and len(done["deleted"]) == 3
    order = [c["id"] for c in creation_order(sandbox)]
    # The late inserts sit among the first rows by `created`, updated now.
    assert all(order.index(cid) < 10 for cid in done["inserted"])
    assert listing(sandbox, 3)["count"] == 59  # once only


def test_churn_repeats_every_n_requests_up_to_times(sandbox):
    sandbox.set_churn(at=1, every=2, times=3, deletes=1, within=0, rng_seed=2)
    counts = [listing(sandbox)["count"] for _ in range(8)]
    assert counts == [59, 59, 58, 58, 57, 57, 57, 57]
    assert sandbox.churn()["applied"] == 3


def test_same_seed_same_rows_and_reset_clears_the_plan(sandbox):
    sandbox.set_churn(at=1, deletes=2, rng_seed=9)
    listing(sandbox)
    first = sandbox.churn()["deleted"]
    sandbox.reset(SANDBOX_CUSTOMERS)
    assert sandbox.churn()["at"] == 0
    sandbox.set_churn(at=1, deletes=2, rng_seed=9)
    listing(sandbox)
    assert sandbox.churn()["deleted"] == first


@pytest.mark.parametrize("plan", [{"at": -1}, {"deletes": "2"}, {"sometimes": 1}])
def test_a_bad_plan_is_refused(sandbox, plan):
    with pytest.raises(RuntimeError, match="churn setting"):
        sandbox.set_churn(**plan)


def test_the_command_line_takes_a_plan():
    with SandboxProcess(20, "--churn", '{"at": 1, "deletes": 5}') as server:
        assert listing(server)["count"] == 15
    bad = subprocess.run([sys.executable, "-m", "piriod_sandbox", "--port", "0", "--churn",
                          '{"at": -1}'], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
