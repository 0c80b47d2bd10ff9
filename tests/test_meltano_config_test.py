"""``meltano config test`` for tap-piriod and target-piriod, with real Meltano, against the sandbox.

Meltano 4's loader test sends a SCHEMA, a RECORD and a STATE for a stream named
``meltano_test_stream`` and warns that it writes test data. target-piriod writes no test
customer into a billing system: it recognises the stream, checks ``auth_token`` and
``api_url`` with one authenticated read, says so in one line and exits 0; refused
credentials make it exit 1 with the message naming ``auth_token``.

Meltano 4.4.1 has a bug of its own there: its loader test calls ``terminate()`` on the
loader process after it has exited (``plugin_test_service.py``, in a ``finally``), which
raises ``ProcessLookupError`` whenever asyncio has already closed the finished process's
transport, most of the time, whatever the loader did. So the loader tests run Meltano with
that one call made tolerant (``PATCHED_MELTANO``, the fix Meltano needs), and
``test_unpatched_meltano_fails_only_by_its_own_bug`` pins the bug down: when Meltano
fixes it, that test still passes (and can be simplified). ``meltano invoke target-piriod
--test`` needs no patch.

The project and its plugins are the ones the other Meltano tests installed
(tests/meltano_helpers.py); every run is checked against the sandbox's counters: no write.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from meltano_helpers import Meltano, installed_project, piriod_env

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

SEED = 250  # tests/conftest.py's sandbox fixture resets to this many customers
WRONG = "wrong-token-4f1c9a"
VERDICT = "target-piriod: Meltano's connection test: Piriod at "

# Meltano with the one call of its loader test that fails on a finished process made
# tolerant (what an upstream fix would do); everything else is Meltano's own code.
PATCHED_MELTANO = """
import asyncio.subprocess
import contextlib
import sys

terminate = asyncio.subprocess.Process.terminate

def tolerant_terminate(self):
    with contextlib.suppress(ProcessLookupError):  # the process has already exited
        terminate(self)

asyncio.subprocess.Process.terminate = tolerant_terminate
from meltano.cli import main
sys.argv[0] = "meltano"
sys.exit(main())
"""


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    """The project copy with every plugin installed (shared with the other Meltano tests)."""
    return installed_project(tmp_path_factory)


def patched(meltano: Meltano, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``meltano --environment=dev ARGS`` with the loader-test bug fixed."""
    return subprocess.run([sys.executable, "-c", PATCHED_MELTANO, "--environment=dev", *args],
                          cwd=meltano.root, env={**meltano.base_env, **env},
                          capture_output=True, text=True, timeout=600, check=False)


def output(done: subprocess.CompletedProcess) -> str:
    return done.stdout + done.stderr


def assert_nothing_written(sandbox: SandboxProcess, before: list[dict]) -> dict:
    """The sandbox saw reads only, and holds exactly the customers it held."""
    stats = sandbox.stats()
    assert stats["writes"] == 0 and set(stats["by_method"]) <= {"GET"}, stats
    assert sandbox.customers() == before
    return stats


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- tap-piriod ------------------------------------------------------------------------


def test_tap_config_test_passes_with_a_good_token(meltano, sandbox):
    before = sandbox.customers()
    sandbox.reset_stats()
    done = meltano("config", "test", "tap-piriod", env=piriod_env(sandbox), check=False)
    assert done.returncode == 0, output(done)[-4000:]
    assert "Plugin configuration is valid" in output(done)
    stats = assert_nothing_written(sandbox, before)
    assert stats["by_status"].get("200", 0) >= 1


def test_tap_config_test_fails_naming_auth_token(meltano, sandbox):
    before = sandbox.customers()
    sandbox.reset_stats()
    env = {**piriod_env(sandbox), "TAP_PIRIOD_AUTH_TOKEN": WRONG}
    done = meltano("config", "test", "tap-piriod", env=env, check=False)
    assert done.returncode == 1, output(done)[-4000:]
    text = output(done)
    assert "Plugin configuration is invalid" in text
    assert "answered 401" in text and "auth_token" in text
    assert WRONG not in text and "Traceback" not in text
    stats = assert_nothing_written(sandbox, before)
    assert stats["by_status"] == {"401": 1}


# -- target-piriod ---------------------------------------------------------------------


def test_target_config_test_checks_access_and_writes_nothing(meltano, sandbox):
    before = sandbox.customers()
    sandbox.reset_stats()
    # At debug level Meltano shows the loader's lines (and fails the test if any of them,
    # the SDK's dump of the settings included, says "error").
    done = patched(meltano, "--log-level=debug", "config", "test", "target-piriod",
                   env=piriod_env(sandbox))
    text = output(done)
    assert done.returncode == 0, text[-4000:]
    assert "Plugin configuration is valid" in text
    [verdict] = [line for line in text.splitlines() if VERDICT in line]
    assert f"Piriod at {sandbox.url}/ accepted auth_token ({SEED} customer(s) readable)" \
        in verdict
    assert "its test record is not written" in verdict
    stats = assert_nothing_written(sandbox, before)
    assert stats["by_method"] == {"GET": 1}  # one authenticated read
    assert not any(c["name"] == "Meltano Test Record" for c in sandbox.customers())


def test_target_config_test_fails_naming_auth_token(meltano, sandbox):
    before = sandbox.customers()
    sandbox.reset_stats()
    env = {**piriod_env(sandbox), "TARGET_PIRIOD_AUTH_TOKEN": WRONG}
    done = patched(meltano, "config", "test", "target-piriod", env=env)
    text = output(done)
    assert done.returncode == 1, text[-4000:]
    assert "Plugin configuration is invalid" in text
    # Meltano quotes the loader's last line: the fix-it message.
    assert f"Error: GET /customers/ answered 401: Piriod at {sandbox.url}/ rejected the " \
        "credentials: check that the auth_token setting is a valid" in text
    assert WRONG not in text and "ProcessLookupError" not in text
    assert assert_nothing_written(sandbox, before)["by_status"] == {"401": 1}


def test_target_config_test_fails_naming_api_url(meltano, sandbox):
    url = closed_port_url()
    env = {**piriod_env(sandbox), "TARGET_PIRIOD_API_URL": url,
           "TARGET_PIRIOD_MAX_RETRIES": "0"}
    done = patched(meltano, "config", "test", "target-piriod", env=env)
    text = output(done)
    assert done.returncode == 1, text[-4000:]
    assert "Plugin configuration is invalid" in text
    assert f"could not reach the Piriod API at {url}/" in text
    assert "check the api_url setting" in text and "make sandbox" in text


@pytest.mark.parametrize("token", ["good", "wrong"])
def test_unpatched_meltano_fails_only_by_its_own_bug(meltano, sandbox, token):
    """Meltano 4.4.1 as installed: the outcome above, or its ProcessLookupError."""
    before = sandbox.customers()
    sandbox.reset_stats()
    env = piriod_env(sandbox) | ({"TARGET_PIRIOD_AUTH_TOKEN": WRONG} if token == "wrong" else {})
    done = meltano("config", "test", "target-piriod", env=env, check=False)
    text = output(done)
    if "ProcessLookupError" in text:  # Meltano's bug (see the module doc)
        assert done.returncode == 1, text[-4000:]
        assert "asyncio/base_subprocess.py" in text and "in terminate" in text, text[-4000:]
    elif token == "good":
        assert done.returncode == 0 and "Plugin configuration is valid" in text, text[-4000:]
    else:
        assert done.returncode == 1 and "check that the auth_token setting" in text, \
            text[-4000:]
    assert_nothing_written(sandbox, before)


def test_meltano_invoke_target_test(meltano, sandbox):
    """``target-piriod --test``, the check that reads no input, through ``meltano invoke``."""
    before = sandbox.customers()
    sandbox.reset_stats()
    done = meltano("invoke", "target-piriod", "--test", env=piriod_env(sandbox), check=False)
    assert done.returncode == 0, output(done)[-4000:]
    assert (f"target-piriod: connection test: Piriod at {sandbox.url}/ accepted auth_token "
            f"({SEED} customer(s) readable); nothing was written") in output(done)

    env = {**piriod_env(sandbox), "TARGET_PIRIOD_AUTH_TOKEN": WRONG}
    wrong = meltano("invoke", "target-piriod", "--test", env=env, check=False)
    assert wrong.returncode == 1, output(wrong)[-4000:]
    assert "check that the auth_token setting" in output(wrong)
    assert WRONG not in output(wrong)
    stats = assert_nothing_written(sandbox, before)
    assert stats["by_status"] == {"200": 1, "401": 1}
