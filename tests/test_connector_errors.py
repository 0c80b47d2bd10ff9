"""Every expected failure of either connector's command line is one message, no traceback.

For each CLI path (``tap-piriod --test``, ``--discover``, a sync; ``target-piriod --test``,
a load) and each failure a newcomer meets (a wrong token, nothing listening on api_url,
a host name that does not resolve, a config file that is missing or not JSON, no token,
a 5xx that outlives the retries, a bad input line), the installed executable is run as
a user runs it, and the test asserts: a non-zero exit, no "Traceback", a message naming
the setting (and the URL where there is one) and what to do, and never the token.

The DNS failure is the one fault no local server can produce: a ``sitecustomize`` on
the child's ``PYTHONPATH`` makes ``socket.getaddrinfo`` fail for ``*.invalid`` names as
a resolver does (``EAI_NONAME``), so the test never depends on this machine's DNS.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from target_helpers import new_customer, record_message, schema_message, state_message

SANDBOX_CUSTOMERS = 20
BIN = Path(sys.executable).parent
SECRET = "tok-wrong-s3cr3t-never-printed-51c2"
DNS_FAILURE = '''
import socket
_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
'''
TAP_MODES = ["--test", "--discover", "sync"]
TARGET_MODES = ["--test", "load"]


def closed_port_url() -> str:
    """Return a loopback URL on which nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_cli(tmp_path: Path, executable: str, mode: str, config: dict | str | None, *,
            dns_failure: bool = False, stdin: str = "") -> subprocess.CompletedProcess:
    """Run an installed connector as a user would; ``config`` a dict, raw text or None."""
    path = tmp_path / "config.json"
    if isinstance(config, dict):
        path.write_text(json.dumps(config))
    elif isinstance(config, str):
        path.write_text(config)
    command = [str(BIN / executable), "--config", str(path)]
    if mode.startswith("--"):
        command.append(mode)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TAP_PIRIOD_", "TARGET_PIRIOD_"))}
    if dns_failure:
        (tmp_path / "sitecustomize.py").write_text(DNS_FAILURE)
        env["PYTHONPATH"] = str(tmp_path)
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120,
                          env=env, check=False)


def target_input(*records: dict) -> str:
    messages = [schema_message(), *(record_message(r) for r in records),
                state_message({"bookmark": 1})]
    return "".join(json.dumps(m) + "\n" for m in messages)


def assert_one_clear_message(done: subprocess.CompletedProcess, *expected: str) -> None:
    """Exit 1, no traceback, every expected fragment in stderr, the token nowhere."""
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for fragment in expected:
        assert fragment in done.stderr, (fragment, done.stderr[-3000:])
    assert SECRET not in output


def run_mode(tmp_path: Path, connector: str, mode: str, config: dict | str | None,
             **kwargs: object) -> subprocess.CompletedProcess:
    stdin = target_input(new_customer(1)) if connector == "target-piriod" else ""
    return run_cli(tmp_path, connector, mode, config, stdin=stdin, **kwargs)


ALL_PATHS = [("tap-piriod", mode) for mode in TAP_MODES] + \
            [("target-piriod", mode) for mode in TARGET_MODES]
API_PATHS = [path for path in ALL_PATHS if path[1] != "--discover"]  # discovery calls no API


@pytest.mark.parametrize(("connector", "mode"), API_PATHS)
def test_wrong_token_names_auth_token_and_the_url(sandbox, tmp_path, connector, mode):
    done = run_mode(tmp_path, connector, mode,
                    {"auth_token": SECRET, "api_url": sandbox.url, "max_retries": 1})
    assert_one_clear_message(done, "401", f"Piriod at {sandbox.url}/ rejected the credentials",
                             "check that the auth_token setting is a valid")


@pytest.mark.parametrize(("connector", "mode"), API_PATHS)
def test_nothing_listening_names_api_url_and_make_sandbox(tmp_path, connector, mode):
    url = closed_port_url()
    done = run_mode(tmp_path, connector, mode,
                    {"auth_token": SECRET, "api_url": url, "max_retries": 1})
    assert_one_clear_message(done, f"could not reach the Piriod API at {url}/",
                             "connection refused", "check the api_url setting", "make sandbox")
    assert "raise max_retries" not in done.stderr, "retrying cannot reach a closed port"


@pytest.mark.parametrize(("connector", "mode"), API_PATHS)
def test_unknown_host_names_api_url_and_dns(tmp_path, connector, mode):
    done = run_mode(tmp_path, connector, mode,
                    {"auth_token": SECRET, "api_url": "https://piriod.invalid",
                     "max_retries": 1}, dns_failure=True)
    assert_one_clear_message(done, "could not reach the Piriod API at https://piriod.invalid/",
                             "does not resolve (DNS)", "check the api_url setting")
    assert "make sandbox" not in done.stderr, "not this machine: no sandbox to start"


@pytest.mark.parametrize(("connector", "mode"), API_PATHS)
def test_an_api_url_with_a_wrong_path_names_api_url(sandbox, tmp_path, connector, mode):
    done = run_mode(tmp_path, connector, mode,
                    {"auth_token": sandbox.token, "api_url": f"{sandbox.url}/v9"})
    assert_one_clear_message(done, "answered 404", f"at {sandbox.url}/v9/",
                             "check the api_url setting")
    assert done.stderr.count("api_url") == 1, "said once, not wrapped in a second message"


@pytest.mark.parametrize(("connector", "mode"), API_PATHS)
def test_5xx_after_the_retries_names_the_url_and_what_to_do(sandbox, tmp_path, connector, mode):
    sandbox.set_faults(random={"503_html": 1.0})
    done = run_mode(tmp_path, connector, mode,
                    {"auth_token": sandbox.token, "api_url": sandbox.url, "max_retries": 1})
    assert_one_clear_message(done, f"still failing after 2 attempts at {sandbox.url}/",
                             "try again later", "HTTP 503")
    assert sandbox.token not in done.stderr


@pytest.mark.parametrize(("connector", "mode"), ALL_PATHS)
def test_config_file_that_is_not_json_is_named_with_the_line(tmp_path, connector, mode):
    done = run_mode(tmp_path, connector, mode, '{"auth_token": "' + SECRET + '",\n')
    assert_one_clear_message(done, "config file", "config.json' is not valid JSON", "line 2")


@pytest.mark.parametrize(("connector", "mode"), ALL_PATHS)
def test_missing_config_file_is_named(tmp_path, connector, mode):
    done = run_mode(tmp_path, connector, mode, None)
    assert_one_clear_message(done, "config.json' does not exist", "--config")


@pytest.mark.parametrize(("connector", "mode"), API_PATHS)
def test_missing_token_names_auth_token(sandbox, tmp_path, connector, mode):
    sandbox.reset_stats()
    done = run_mode(tmp_path, connector, mode, {"api_url": sandbox.url})
    variable = connector.upper().replace("-", "_") + "_AUTH_TOKEN"
    assert_one_clear_message(done, "auth_token is empty", f"as {variable} with --config ENV",
                             f"meltano config {connector} set auth_token")
    assert "required property" not in done.stderr
    assert sandbox.stats()["requests"] == 0, "refused before any request"


@pytest.mark.parametrize("config", [{}, {"auth_token": ""}, {"api_url": closed_port_url()}])
def test_discovery_needs_no_token_and_no_api(tmp_path, config):
    """``tap-piriod --discover`` (what ``meltano select --list`` runs) lists the stream."""
    done = run_cli(tmp_path, "tap-piriod", "--discover", config)
    assert done.returncode == 0, done.stderr[-3000:]
    catalog = json.loads(done.stdout)
    assert [entry["tap_stream_id"] for entry in catalog["streams"]] == ["customers"]
    assert "Config validation failed" not in done.stderr


def test_bad_input_line_names_the_line(sandbox, tmp_path):
    stdin = target_input(new_customer(1)) + "this is not json\n"
    done = run_cli(tmp_path, "target-piriod", "load",
                   {"auth_token": sandbox.token, "api_url": sandbox.url}, stdin=stdin)
    assert_one_clear_message(done, "line 4 is not JSON", "(run failed)")


@pytest.mark.parametrize("option", ["--state", "--catalog"])
def test_state_or_catalog_file_that_is_not_json_is_named(sandbox, tmp_path, option):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auth_token": sandbox.token, "api_url": sandbox.url}))
    done = subprocess.run([str(BIN / "tap-piriod"), "--config", str(config), option,
                           str(broken)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert_one_clear_message(done, f"{option} file", "broken.json' is not valid JSON",
                             "line 1, column 2")


@pytest.mark.parametrize(("connector", "mode"), [("tap-piriod", "sync"),
                                                 ("target-piriod", "load")])
def test_stream_map_that_cannot_be_parsed_names_stream_maps(sandbox, tmp_path, connector,
                                                            mode):
    done = run_mode(tmp_path, connector, mode, {
        "auth_token": sandbox.token, "api_url": sandbox.url,
        "stream_maps": {"customers": {"label": "name +* ("}}})
    assert_one_clear_message(done, "stream_maps: ", "name +* (", "stream_maps.html")
