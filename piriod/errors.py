"""The errors of a conversation with the Piriod API, and how they are worded.

Every message says what failed (method and path, never the query or headers, which may
carry secrets) and, where retrying cannot help, what the user should fix. Bodies are
quoted as short excerpts: an API that answers with a 5 MB HTML page or echoes a whole
record must not flood the logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

EXCERPT_CHARS = 300

# What to fix, by status, for errors that retrying cannot cure. Both connectors name their
# settings alike (auth_token, api_url), so one wording serves both; {url} is the api_url.
STATUS_HINTS = {
    HTTPStatus.UNAUTHORIZED: "Piriod at {url} rejected the credentials: check that the "
                             "auth_token setting is a valid, unexpired API token of that API",
    HTTPStatus.FORBIDDEN: "the auth_token is valid at {url} but may not do this: check the "
                          "token's permissions in Piriod",
    HTTPStatus.NOT_FOUND: "no such endpoint or customer at {url}: check the api_url setting",
}


class PiriodError(Exception):
    """Base of the errors of this package; their messages never contain the token."""


class ConfigError(PiriodError, ValueError):
    """A setting that cannot work, reported before any request is sent."""


class ApiError(PiriodError):
    """A 4xx answer other than 429: the API refused the request as it was sent."""

    def __init__(self, method: str, path: str, status: int, body: Any, *,
                 api_url: str = "the api_url") -> None:
        self.method, self.path, self.status, self.body = method, path, status, body
        hint = STATUS_HINTS[HTTPStatus(status)].format(url=api_url) \
            if status in STATUS_HINTS else None
        text = f"{method} {path} answered {status}"
        super().__init__(f"{text}: {hint}. Response: {excerpt(body)}" if hint
                         else f"{text}: {excerpt(body)}")


class AuthError(ApiError):
    """401/403: nothing can be read or written with these credentials."""


class ParametersRefusedError(ApiError):
    """A 400 that names query parameters the request sent (a stricter API than DRF).

    ``refused`` holds the names the body mentions, so that a caller can drop exactly
    those optional parameters and ask again, keeping the others.
    """

    def __init__(self, method: str, path: str, status: int, body: Any,
                 refused: set[str]) -> None:
        super().__init__(method, path, status, body)
        self.refused = refused


class RedirectError(PiriodError):
    """A 3xx the client will not follow: a write, or a move to another host."""

    def __init__(self, method: str, path: str, status: int, location: str) -> None:
        self.status, self.location = status, location
        super().__init__(f"{method} {path} answered {status} redirecting to {location!r}: "
                         "writes are never redirected and the token never leaves api_url's "
                         "host; point api_url at the API's final address")


class PaginationError(PiriodError):
    """A listing that cannot be read to its end as the API describes it."""


class StoppedError(PiriodError):
    """The run was asked to stop (a signal) while a request waited or retried."""


class RetriesExhaustedError(PiriodError):
    """A request kept failing with retryable errors until its attempts ran out."""


# What a failure that never reached the API means, by the exception class the client
# names in its reason (``connection error (NewConnectionError)``...). NameResolutionError
# is a NewConnectionError, so it is looked for first.
_UNREACHABLE = (
    ("NameResolutionError", "the host name of api_url does not resolve (DNS)"),
    ("NewConnectionError", "nothing accepts connections there (connection refused)"),
    ("ConnectTimeout", "no connection could be opened within request_timeout"),
)


def retries_exhausted(where: str, attempts: int, base_url: str, reason: str, *,
                      loopback: bool) -> RetriesExhaustedError:
    """Return the error of a request whose attempts ran out, saying what to do.

    An API that was never reached (refused, unknown host, no connection) is a wrong
    api_url or a server that is not running, not a slow API: raising max_retries would
    only make the run fail later. For this machine's address the usual cause is the
    sandbox not started.
    """
    why = next((text for name, text in _UNREACHABLE if name in reason), None)
    if why is None:
        return RetriesExhaustedError(
            f"{where} still failing after {attempts} attempts at {base_url} (try again "
            "later: a re-run resumes; raise max_retries or request_timeout if the API is "
            f"only slow); last error: {reason}")
    fix = ("check the api_url setting; for the local sandbox, start it with `make sandbox` "
           "(or `piriod-sandbox --port 8765`)" if loopback else
           "check the api_url setting and this machine's network (DNS, proxy, firewall)")
    return RetriesExhaustedError(f"{where}: could not reach the Piriod API at {base_url} "
                                 f"after {attempts} attempts: {why}; {fix}")


class OutcomeUnknownError(PiriodError):
    """A POST may or may not have been committed (5xx, timeout, dropped connection).

    ``timed_out`` tells the caller the server may *still* be working on it.
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def excerpt(body: Any, limit: int = EXCERPT_CHARS) -> str:
    """Return the start of a body for a message; an HTML page is named, not quoted."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False,
                                                          default=str)
    if text.lstrip()[:1] == "<":
        return f"(an HTML page of {len(text)} characters, not the API's JSON)"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def parameters_named(body: Any, names: Iterable[str]) -> set[str]:
    """Return which of ``names`` an error body mentions (looked for in the whole body)."""
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return {name for name in names if name in text}


def secret_forms(token: str) -> list[str]:
    """Return every spelling under which ``token`` could appear in a text.

    A server may echo it raw, JSON-escaped (a quote or a backslash in the token changes its
    spelling inside a JSON body), URL-quoted, or as the Latin-1 bytes it received (which
    read as UTF-8 turn into replacement characters); longest first, so that no spelling
    is left half-replaced by a shorter one.
    """
    if not token:
        return []
    forms = {token, json.dumps(token)[1:-1], json.dumps(token, ensure_ascii=False)[1:-1],
             quote(token, safe=""), repr(token)[1:-1],
             token.encode("latin-1", "replace").decode("utf-8", "replace")}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, token: str) -> str:
    """Return ``text`` with every spelling of ``token`` blanked out."""
    for form in secret_forms(token):
        text = text.replace(form, "***")
    return text
