"""Checks of the settings both connectors share, run at start-up, before any request.

A setting that cannot work should fail the run at once with the setting's name and an
example of a good value, not as a traceback from deep inside an HTTP library halfway
through a sync. None of these messages echo the token.
"""

from __future__ import annotations

import decimal
import ipaddress
import json
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from piriod.errors import ConfigError

DEFAULT_API_URL = "https://api.piriod.com"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def package_version() -> str:
    """Return the installed version of piriod-singer (one source: the package metadata)."""
    try:
        return metadata.version("piriod-singer")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def user_agent(connector: str) -> str:
    """Return the default User-Agent of a connector, e.g. ``tap-piriod/0.1.0``."""
    return f"{connector}/{package_version()}"


def setting(config: Mapping[str, Any], name: str, default: Any) -> Any:
    """Return a setting, or its default when it is absent or null.

    A config file (or an orchestrator) may write ``null`` for a setting left unset; the
    SDK's schema lets it through, and ``int(None)`` would end the run in a traceback.
    """
    value = config.get(name)
    return default if value is None else value


def clean_token(token: object, connector: str = "") -> str:
    """Return the token without surrounding whitespace; refuse one that cannot be a header.

    A token pasted with a trailing newline is common, and an HTTP library's error for it
    quotes the whole header value: the token would end up in the log. ``connector``
    (``tap-piriod``...) names the ways to set it in the message.
    """
    if not isinstance(token, str) or not token.strip():
        if not connector:
            raise ConfigError("auth_token is empty: set it to a Piriod API token "
                              "(e.g. through the TAP_PIRIOD_AUTH_TOKEN or "
                              "TARGET_PIRIOD_AUTH_TOKEN environment variable)")
        variable = connector.upper().replace("-", "_") + "_AUTH_TOKEN"
        raise ConfigError(f"auth_token is empty: set it to a Piriod API token, in the "
                          f"--config file or as {variable} with --config ENV (with "
                          f"Meltano: `meltano config {connector} set auth_token`, or "
                          f"{variable} in .env)")
    cleaned = token.strip()
    if any(ord(char) < 0x20 or ord(char) == 0x7F or ord(char) > 0xFF for char in cleaned):
        raise ConfigError("auth_token contains control or non-Latin-1 characters, which "
                          "cannot be sent in an HTTP header: copy the token again")
    return cleaned


def check_api_url(api_url: object) -> str:
    """Return ``api_url`` without a trailing slash, or refuse it with an example.

    Plain ``http://`` is refused unless the host is this machine (the sandbox): it would
    send the Bearer token in clear over the network.
    """
    example = f"e.g. {DEFAULT_API_URL} (or http://127.0.0.1:8765 for the local sandbox)"
    if not isinstance(api_url, str) or not api_url.strip():
        raise ConfigError(f"api_url is empty; {example}")
    url = api_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"api_url {url!r} is not an http(s) URL with a host; {example}")
    if parts.query or parts.fragment:
        raise ConfigError(f"api_url {url!r} must not carry a query or fragment; {example}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"api_url {url!r} is plain http to another machine: the token "
                          f"would travel in clear; use https ({example})")
    return url


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` names this machine (127.0.0.0/8, ::1 or localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_config_files(paths: Iterable[str]) -> tuple[dict, bool]:
    """Read ``--config`` arguments: JSON files merged in order, ``ENV`` for the environment.

    Returns the merged settings and whether ``ENV`` was given. A missing file, a file
    that is not JSON or not a JSON object is refused with its path and what is wrong
    (the line and column of a syntax error), never with the file's text: it may hold
    the token.
    """
    config: dict = {}
    parse_env = False
    for path in paths:
        if path == "ENV":
            parse_env = True
            continue
        config |= _read_config_file(Path(path))
    return config, parse_env


def _read_config_file(path: Path) -> dict:
    """Return one config file's settings, or refuse it naming the file and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist: check the path "
                          "given to --config") from None
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or type(error).__name__
        raise ConfigError(f"config file {str(path)!r} cannot be read ({why})") from None
    try:
        value = json.loads(text, parse_float=decimal.Decimal)  # as the Singer SDK reads it
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid JSON ({error.msg} at "
                          f"line {error.lineno}, column {error.colno}): fix it, e.g. "
                          '{"auth_token": "...", "api_url": "https://api.piriod.com"}') from None
    if not isinstance(value, dict):
        raise ConfigError(f"config file {str(path)!r} holds JSON that is not an object: it "
                          'must look like {"auth_token": "...", "api_url": "..."}')
    return value
