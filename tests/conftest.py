"""Shared fixtures: a real ``piriod-sandbox`` server process on 127.0.0.1 per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from piriod_sandbox import SandboxProcess

SEED = 250


def customers_for(request: pytest.FixtureRequest) -> int:
    """Return the sandbox size of a test module: its SANDBOX_CUSTOMERS, else SEED."""
    return getattr(request.module, "SANDBOX_CUSTOMERS", SEED)


@pytest.fixture(scope="module")
def sandbox_server(request: pytest.FixtureRequest) -> Iterator[SandboxProcess]:
    """One sandbox process for a test module (starting one takes ~0.2 s)."""
    with SandboxProcess(customers_for(request)) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxProcess, request: pytest.FixtureRequest) -> SandboxProcess:
    """The module's sandbox, reset to its fresh customers, no faults, zeroed counters."""
    sandbox_server.set_faults()
    sandbox_server.reset(customers_for(request))
    return sandbox_server


@pytest.fixture(params=[1, 8], ids=["1-worker", "8-workers"])
def tap_workers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run a tap test with pages read one at a time, then eight at a time."""
    import tap_helpers

    monkeypatch.setitem(tap_helpers.WORKERS, "max_workers", request.param)
    return request.param
