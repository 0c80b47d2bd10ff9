"""HTTP plumbing for Piriod streams: auth, timeouts, retries, error messages, pagination.

Where the Piriod documentation is silent we assume a Django REST Framework API
(``count``/``next``/``results`` pages, ``page_size``, ``ordering``, ``updated__gte``), and
each guess is checked against what actually comes back rather than trusted.
"""

from __future__ import annotations

import decimal
import json
import random
import time
import typing as t
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from singer_sdk import RESTStream
from singer_sdk import singerlib as singer
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.helpers._util import utc_now
from singer_sdk.pagination import BaseHATEOASPaginator

from piriod.pages import following_page
from tap_piriod.conform import RecordConformer, conform_record

if t.TYPE_CHECKING:
    from backoff.types import Details
    from singer_sdk.streams.rest import HTTPRequest, PageContext

USER_AGENT = "tap-piriod/0.1.0"
MAX_BACKOFF_SECONDS = 60.0
BODY_EXCERPT_CHARS = 300

# What to fix, by status, for errors that retrying cannot cure.
FATAL_HINTS = {
    HTTPStatus.UNAUTHORIZED: "Piriod rejected the credentials: check the auth_token setting "
                             "(TAP_PIRIOD_AUTH_TOKEN) is a valid, unexpired API token",
    HTTPStatus.FORBIDDEN: "the auth_token is valid but may not read customers: "
                          "check the token's permissions in Piriod",
    HTTPStatus.NOT_FOUND: "no such endpoint: check the api_url setting",
}


class PiriodPaginator(BaseHATEOASPaginator):
    """Follows DRF's ``next`` links; a bare JSON list (no pagination) is one page.

    An API that counts (``count``) but does not link its pages would otherwise look like
    a one-page list and lose every later page silently: while fewer records than ``count``
    have been read, such a page is followed by the same request with ``page`` one higher.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records_read = 0

    def get_next_url(self, response: requests.Response) -> str | None:
        """Return the ``next`` link of a page, or the next page number's URL if unlinked."""
        payload = payload_of(response)
        if isinstance(payload, dict):
            self.records_read += len(payload.get("results") or [])
        following = following_page(payload, self.records_read, page_number(response.url))
        if isinstance(following, int):
            return with_page_number(response.url, following)
        return following


def page_number(url: str) -> int:
    """Return the ``page`` query parameter of ``url`` (1 when absent)."""
    return int(parse_qs(urlsplit(url).query).get("page", ["1"])[0])


def with_page_number(url: str, page: int) -> str:
    """Return ``url`` with its ``page`` query parameter set to ``page``."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "page"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("page", str(page))])))


def payload_of(response: requests.Response) -> t.Any:
    """Return the response's JSON, parsed once and cached on the response.

    Numbers with a fraction are read as Decimal so that amounts pass through unrounded.
    """
    cached = getattr(response, "_piriod_payload", None)
    if cached is None:
        cached = json.loads(response.content, parse_float=decimal.Decimal)
        response._piriod_payload = cached  # type: ignore[attr-defined]
    return cached


def body_excerpt(response: requests.Response) -> str:
    """Return the start of a response body for an error message, HTML reduced to a note."""
    content_type = response.headers.get("Content-Type", "")
    if "html" in content_type or response.text.lstrip().startswith("<"):
        return f"(an HTML page of {len(response.content)} bytes, not the API's JSON)"
    text = " ".join(response.text.split())
    return text[:BODY_EXCERPT_CHARS] + ("…" if len(text) > BODY_EXCERPT_CHARS else "")


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """Return the wait a 429/503 asks for (delta-seconds or HTTP-date), if it asks."""
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class PiriodStream(RESTStream):
    """A Piriod list endpoint read page by page, with retries that say what went wrong."""

    records_jsonpath = "$.results[*]"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.retries = 0  # retries so far, reported in progress logs
        self._conformer: RecordConformer | None = None
        self._mask_seen: object = None
        self._all_selected = False

    @property
    def url_base(self) -> str:
        """Return the configured API root, without a trailing slash."""
        return str(self.config["api_url"]).rstrip("/")

    @property
    def authenticator(self) -> BearerTokenAuthenticator:
        """Send ``Authorization: Bearer <auth_token>`` on every request."""
        return BearerTokenAuthenticator(token=self.config["auth_token"])

    @property
    def user_agent(self) -> str:
        """Return the configured User-Agent."""
        return self.config.get("user_agent") or USER_AGENT

    @property
    def timeout(self) -> int:
        """Return the per-request timeout in seconds (connect and each read)."""
        return int(self.config["request_timeout"])

    def get_new_paginator(self) -> PiriodPaginator:
        """Follow ``next`` links until a page has none."""
        return PiriodPaginator()

    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        """Request the first page with our parameters, later pages by their ``next`` link.

        A ``next`` link is re-rooted on ``api_url``: a server behind a proxy often writes
        its internal host or ``http://`` there, and the token must never go to a host the
        user did not configure.
        """
        request = super().get_http_request(page=page)
        if page.next_page_token:
            link = page.next_page_token
            root = urlsplit(self.url_base)
            request.url = urlunsplit((root.scheme, root.netloc, link.path, link.query, ""))
            request.params = {}
        return request

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        """Yield the records of a page (``results``), or of a bare JSON list."""
        payload = payload_of(response)
        yield from payload["results"] if isinstance(payload, dict) else payload
        # The page's records are written: hand them to the reader before the next request.
        flush = getattr(self._tap.message_writer, "flush", None)
        if flush is not None:
            flush()

    def _generate_record_messages(self, record: dict) -> t.Iterator[singer.RecordMessage]:
        """Build RECORD messages as singer-sdk 0.54's ``Stream`` does, only faster.

        Same steps and results: drop deselected properties, conform types to the schema,
        apply stream maps. Two shortcuts (benchmarks/README.md has the figures): with every
        property selected (the default) the deselection walk, which could remove nothing,
        is skipped; conformance uses a :class:`~tap_piriod.conform.RecordConformer`
        compiled once for the schema instead of re-reading the schema for every value.
        """
        schema = self.effective_schema
        mask = self.mask
        if mask is not self._mask_seen:
            self._mask_seen, self._all_selected = mask, all(mask.values())
        if not self._all_selected:
            pop_deselected_record_properties(record, self.schema, mask)
        record, self._conformer = conform_record(
            self._conformer, record, schema, self.TYPE_CONFORMANCE_LEVEL, self.name,
            self.logger)
        for stream_map in self.stream_maps:
            mapped_record = stream_map.transform(record)
            if mapped_record is not None:  # None: filtered out by the map
                yield singer.RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped_record,
                    version=self._stream_version,
                    time_extracted=utc_now(),
                )

    # -- errors and retries --------------------------------------------------------------

    def validate_response(self, response: requests.Response) -> None:
        """Classify a response: retry 429/5xx/garbled bodies, fail fast with a hint on 4xx."""
        status = response.status_code
        if status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            raise RetriableAPIError(self.response_error_message(response), response)
        if status >= HTTPStatus.BAD_REQUEST:
            raise FatalAPIError(self.response_error_message(response))
        try:
            payload = payload_of(response)
        except ValueError as error:
            message = f"{self._where(response)} answered {status} with a body that is not JSON"
            raise RetriableAPIError(f"{message} ({body_excerpt(response)})", response) from error
        if not isinstance(payload, list) and not (
            isinstance(payload, dict) and isinstance(payload.get("results"), list)
        ):
            raise FatalAPIError(f"{self._where(response)} answered JSON without a `results` "
                                f"list; is api_url a Piriod API? ({body_excerpt(response)})")

    def response_error_message(self, response: requests.Response) -> str:
        """Say what failed and how to fix it; never echo request headers (the token)."""
        status = response.status_code
        hint = FATAL_HINTS.get(HTTPStatus(status)) if status in FATAL_HINTS else None
        message = f"{self._where(response)} failed with {status} {response.reason}"
        message += f": {hint}" if hint else ""
        return f"{message}. Response: {body_excerpt(response)}"

    def _where(self, response: requests.Response) -> str:
        url = urlsplit(response.url or self.url_base)
        return f"{response.request.method if response.request else 'GET'} {url.path}"

    def backoff_max_tries(self) -> int:
        """Return attempts per request: the first one plus ``max_retries``."""
        return int(self.config["max_retries"]) + 1

    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:
        """Wait what ``Retry-After`` asks, else exponentially (0.5 s, 1 s, 2 s...) with jitter."""
        attempt = 0
        error = yield  # primed by the backoff library with None
        while True:
            attempt += 1
            asked = retry_after_seconds(getattr(error, "response", None))
            if asked is None:
                asked = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (attempt - 1))
                asked *= 0.5 + random.random() / 2
            error = yield asked

    def backoff_jitter(self, value: float) -> float:
        """Jitter is already in the wait generator; a Retry-After is honoured exactly."""
        return value

    def backoff_handler(self, details: Details) -> None:
        """Log each retry with its reason, so a slow run explains itself."""
        self.retries += 1
        error = details.get("exception")
        reason = str(error) if isinstance(error, RetriableAPIError) else repr(error)
        self.logger.warning("Retry %d of %d in %.1f s after: %s", details.get("tries", 0),
                            self.backoff_max_tries() - 1, details.get("wait") or 0.0, reason)

    def request_decorator(self, func: t.Callable) -> t.Callable:
        """Retry as the SDK does, then turn exhaustion into one clear, fatal message."""
        retrying = super().request_decorator(func)

        def request_or_explain(prepared: requests.PreparedRequest, context: t.Any) -> t.Any:
            try:
                return retrying(prepared, context)
            except (RetriableAPIError, requests.exceptions.RequestException) as error:
                path = urlsplit(prepared.url or "").path
                raise FatalAPIError(
                    f"{prepared.method} {path} still failing after {self.backoff_max_tries()} "
                    f"attempts (raise max_retries or request_timeout if the API is slow): {error}"
                ) from error

        return request_or_explain
