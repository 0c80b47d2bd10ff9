"""Sending one request on a ``requests.Session``'s connection pool, without requests' layers.

``requests.Session.request`` costs about twice the CPU urllib3 needs for the same bytes
(preparing and merging settings, hooks, cookies, the adapter, building a Response), and
a run's threads share one GIL. ``Transport`` keeps everything that decides *what* is
sent and *where* from requests (the session's headers, proxies and CA settings, the
adapter's pool for the API's host, URL quoting and parameter encoding) and sends it with
the pool's ``urlopen`` directly, then turns urllib3's exceptions into the ones requests'
adapter raises, so the client classifies failures as requests users expect.

Redirects are never followed here: the client decides (a write is never redirected, and
the token never leaves the API's host). It relies on ``HTTPAdapter.
get_connection_with_tls_context`` (requests 2.32.2 and later, the declared floor).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit

import requests
import urllib3
from requests import exceptions as rex
from requests.adapters import HTTPAdapter
from requests.utils import requote_uri, select_proxy
from urllib3 import exceptions as uex

# As requests' adapter with max_retries=0: no retry at all, read errors raised as such.
_NO_RETRIES = urllib3.Retry(0, read=False)


@dataclass
class Reply:
    """What the client needs of a response."""

    status: int
    headers: Mapping[str, str]
    data: bytes


class Transport:
    """Sends requests to one API host over a ``requests.Session``'s connection pool."""

    def __init__(self, session: requests.Session, base_url: str, timeout: float) -> None:
        self.session = session
        self.timeout = timeout
        adapter = session.get_adapter(base_url)
        assert isinstance(adapter, HTTPAdapter), "PiriodClient mounts requests' HTTPAdapter"
        prepared = requests.Request("GET", base_url).prepare()
        pool = adapter.get_connection_with_tls_context(
            prepared, session.verify, proxies=session.proxies, cert=session.cert)
        assert isinstance(pool, urllib3.HTTPConnectionPool), "http(s) pools are"
        self._pool = pool
        self._absolute = _absolute_urls(base_url, session.proxies)
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._headers: dict[str, Any] = dict(session.headers)  # str or bytes: urllib3 sends both
        self._json_headers = {**self._headers, "Content-Type": "application/json"}

    def send(self, method: str, url: str, params: dict | None = None,
             json_body: Any = None) -> Reply:
        """Send once; raise the exception ``Session.request`` would raise on failure."""
        full = _with_params(url, params)
        body = None if json_body is None else _json_bytes(json_body)
        try:
            response = self._pool.urlopen(
                method, full if self._absolute else _path_of(full), body=body,
                headers=self._headers if body is None else self._json_headers,
                redirect=False, assert_same_host=False, retries=_NO_RETRIES,
                timeout=self._timeout, preload_content=False, decode_content=True)
        except Exception as error:
            _reraise(error, _as_requests_error(error))
        try:
            data = response.data  # read whole; the connection then goes back to the pool
        except Exception as error:
            _reraise(error, _as_body_error(error))
        return Reply(response.status, response.headers, data)


def _absolute_urls(base_url: str, proxies: Mapping[str, str]) -> bool:
    """Return True if requests would send the absolute URL (plain HTTP via an HTTP proxy)."""
    proxy = select_proxy(base_url, dict(proxies))
    if not proxy:
        return False
    return urlsplit(base_url).scheme != "https" and \
        not urlsplit(proxy).scheme.lower().startswith("socks")


def _with_params(url: str, params: dict | None) -> str:
    """Append query parameters and quote the URL as ``PreparedRequest.prepare_url`` does."""
    pairs = [(key, value) for key, value in (params or {}).items() if value is not None]
    if pairs:
        url = f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(pairs, doseq=True)}"
    return requote_uri(url)


def _path_of(url: str) -> str:
    """Return the path and query of a URL (what goes on the request line)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _json_bytes(value: Any) -> bytes:
    """Encode a JSON body (NaN refused, UTF-8); the caller validated it beforehand."""
    return json.dumps(value, allow_nan=False).encode("utf-8")


def _reraise(error: Exception, translated: Exception) -> NoReturn:
    """Raise ``translated`` (from ``error``), or ``error`` itself if it is the same."""
    if translated is error:
        raise error
    raise translated from error


def _as_body_error(error: Exception) -> Exception:
    """Return the exception requests' ``Response.content`` raises for a failed read."""
    if isinstance(error, uex.ProtocolError):
        return rex.ChunkedEncodingError(error)
    if isinstance(error, uex.ReadTimeoutError):
        return rex.ConnectionError(error)
    return _as_requests_error(error)  # decoding and TLS errors: as when sending


# urllib3's failures and the requests exceptions HTTPAdapter.send turns them into.
_BY_REASON = ((uex.ResponseError, rex.RetryError), (uex.ProxyError, rex.ProxyError),
              (uex.SSLError, rex.SSLError))
_BY_ERROR = ((uex.ClosedPoolError, rex.ConnectionError), (uex.ProxyError, rex.ProxyError),
             (uex.SSLError, rex.SSLError), (uex.ReadTimeoutError, rex.ReadTimeout),
             (uex.InvalidHeader, rex.InvalidHeader), (uex.DecodeError, rex.ContentDecodingError))


def _as_requests_error(error: Exception) -> Exception:
    """Return the exception requests' HTTPAdapter.send raises for a urllib3 failure."""
    if isinstance(error, uex.ProtocolError | OSError):
        return rex.ConnectionError(error)
    if isinstance(error, uex.MaxRetryError):
        reason = error.reason
        if isinstance(reason, uex.ConnectTimeoutError) and \
                not isinstance(reason, uex.NewConnectionError):
            return rex.ConnectTimeout(error)
        return _translated(reason, _BY_REASON, error) or rex.ConnectionError(error)
    return _translated(error, _BY_ERROR, error) or error


def _translated(probe: object, table: tuple, error: Exception) -> Exception | None:
    """Return the first translation in ``table`` whose urllib3 type ``probe`` is."""
    for source, target in table:
        if isinstance(probe, source):
            return target(error)
    return None
