"""Shared fixtures, and the ``process`` mark that keeps ``make check`` in one process.

Fixtures: a real ``piriod-sandbox`` server process on 127.0.0.1 per test module.

The ``process`` mark: a test that starts a process (a sandbox, a connector, a hostile
server, Meltano, PostgreSQL, pip...) is marked ``process`` here, at collection, so that
``make check`` (``pytest -m "not process"``) runs only the tests that stay in this one.
Nobody writes the mark by hand: a test gets it when it, one of its fixtures, or a function
of its module that they call refers to one of ``PROCESS_NAMES`` or uses one of
``PROCESS_FIXTURES``. ``meltano`` tests are ``process`` tests too.

That inference is checked while the tests run: an audit hook refuses to start a process
from a test that is not marked (and from collection), with a message naming the test. A
new test the inference misses fails loudly in ``make check``, and ``make check`` can
never quietly become slow.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from piriod_sandbox import SandboxProcess

SEED = 250

# Names whose use starts a process: the helpers that run the connectors, the servers, and
# the modules that start anything.
PROCESS_NAMES = frozenset({
    "subprocess", "Popen", "multiprocessing", "SandboxProcess", "HostileServer",
    "PostgresServer", "start_postgres", "installed_project", "run_tap", "run_target",
    "run_target_lines",
})
# Fixtures that hand a test a running process (their own code is scanned as well).
PROCESS_FIXTURES = frozenset({"sandbox", "sandbox_server"})
# Audit events raised before a process starts (see the audit events table of the docs).
PROCESS_EVENTS = frozenset({
    "subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.exec", "os.spawn",
    "os.system",
})


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


# -- the process mark ----------------------------------------------------------------------


def _names(code: types.CodeType) -> set[str]:
    """Return the global and attribute names a code object (and its nested code) uses."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _names(constant)
    return names


def _starts_processes(function: Callable[..., Any], seen: set[Callable[..., Any]]) -> bool:
    """Say whether a function, or a function of its own module that it calls, uses one of
    PROCESS_NAMES (decorators such as ``pytest.fixture`` are looked through)."""
    function = getattr(function, "__func__", function)
    function = getattr(function, "__wrapped__", function)
    code = getattr(function, "__code__", None)
    if code is None or function in seen:
        return False
    seen.add(function)
    names = _names(code)
    if names & PROCESS_NAMES:
        return True
    module_globals = getattr(function, "__globals__", {})
    return any(_starts_processes(module_globals[name], seen) for name in names
               if getattr(module_globals.get(name), "__module__", None) == function.__module__)


def _needs_process(item: pytest.Item) -> bool:
    if item.get_closest_marker("meltano") or PROCESS_FIXTURES & set(item.fixturenames):
        return True
    seen: set[Callable[..., Any]] = set()
    if _starts_processes(getattr(item, "obj", None), seen):
        return True
    # pytest lists each test's fixture definitions only on this private attribute; a miss
    # here is still caught by the audit hook below.
    definitions = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]  # pytest private
    return any(_starts_processes(definition.func, seen)
               for name in item.fixturenames for definition in definitions.get(name, ()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a process ``process``, and group tests for xdist.

    With ``pytest -n 2 --dist loadgroup`` (``make test``) a module's tests stay on one
    worker, as they would share its sandbox in one process; the Meltano modules share one
    worker, as they share one ``meltano install`` (see meltano_helpers.installed_project).
    """
    for item in items:
        if _needs_process(item):
            item.add_marker(pytest.mark.process)
        group = "meltano" if item.get_closest_marker("meltano") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Escape lone surrogates in captured output: pytest-xdist sends reports as UTF-8.

    Tests of input that is not UTF-8 log it as lone surrogates; the worker could not send
    the report (UnicodeEncodeError) and stopped the whole run.
    """
    report = yield
    report.sections = [(title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
                       for title, text in report.sections]
    return report


class _ProcessGuard:
    """Refuses to start a process where none is expected: collection, unmarked tests."""

    def __init__(self) -> None:
        self.refusing: str | None = None  # what is running, when it must not start one

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        if self.refusing and event in PROCESS_EVENTS:
            raise RuntimeError(
                f"{self.refusing} started a process ({event}) but is not marked `process`: "
                "use the sandbox fixture or a helper named in tests/conftest.py PROCESS_NAMES "
                "(or add the name there), so that `make check` leaves it out")


_GUARD = _ProcessGuard()
sys.addaudithook(_GUARD)  # audit hooks can't be removed: the guard is switched per phase


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[None]:
    """Collection starts no process (the SDK's standard test classes included)."""
    _GUARD.refusing = "collection"
    try:
        return (yield)
    finally:
        _GUARD.refusing = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """An unmarked test (setup, call and teardown) starts no process."""
    _GUARD.refusing = None if item.get_closest_marker("process") else item.nodeid
    try:
        return (yield)
    finally:
        _GUARD.refusing = None
