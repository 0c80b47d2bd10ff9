"""The shared rules of piriod/ both connectors rely on: settings checks, Retry-After, redaction.

The process tests (tests/test_hostile_tap.py, tests/test_hostile_target.py) prove the
connectors apply them; these pin the rules themselves, value by value.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import quote

import pytest

from piriod.client import PiriodClient, customer_path
from piriod.errors import ApiError, ConfigError, redact, secret_forms
from piriod.retry import (
    RETRY_AFTER_CAP_SECONDS,
    RETRY_AFTER_DEFAULT_SECONDS,
    retry_after_seconds,
)
from piriod.settings import check_api_url, clean_token
from piriod.transport import Reply

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
MARKER = "s3cr3tMARK"


# -- api_url -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("https://api.piriod.com", "https://api.piriod.com"),
    ("https://api.piriod.com/", "https://api.piriod.com"),
    ("  https://api.piriod.com/api/v1/ ", "https://api.piriod.com/api/v1"),
    ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
    ("http://127.8.9.10:8765", "http://127.8.9.10:8765"),
    ("http://localhost:8765", "http://localhost:8765"),
    ("http://[::1]:8765", "http://[::1]:8765"),
])
def test_an_https_url_or_plain_http_to_this_machine_is_accepted(given, expected):
    assert check_api_url(given) == expected


@pytest.mark.parametrize("given", ["http://example.invalid", "http://api.piriod.com",
                                   "http://10.0.0.5:8765", "http://localhost.example.com"])
def test_plain_http_to_another_machine_is_refused(given):
    with pytest.raises(ConfigError, match=r"api_url .* plain http .* use https"):
        check_api_url(given)


@pytest.mark.parametrize("given", ["api.piriod.com", "127.0.0.1:8765", "ftp://api.piriod.com",
                                   "https://", "//api.piriod.com", "", "   ", None, 42])
def test_an_api_url_without_scheme_or_host_is_refused_with_an_example(given):
    with pytest.raises(ConfigError, match=r"api_url .*e\.g\. https://api\.piriod\.com"):
        check_api_url(given)


@pytest.mark.parametrize("given", ["https://api.piriod.com/?token=x", "https://api.piriod.com#x"])
def test_an_api_url_with_a_query_or_fragment_is_refused(given):
    with pytest.raises(ConfigError, match="query or fragment"):
        check_api_url(given)


# -- auth_token ----------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["\n", "\r\n", " ", "\t", " \n "])
def test_surrounding_whitespace_is_stripped(padding):
    assert clean_token(f"{padding}tok-{MARKER}{padding}") == f"tok-{MARKER}"


@pytest.mark.parametrize("token", [f"tok\n{MARKER}", f"tok\x00{MARKER}", f"tok\x01{MARKER}",
                                   f"tok\x7f{MARKER}", f"tok€{MARKER}", f"tok😀{MARKER}"])
def test_a_token_that_cannot_be_a_header_is_refused_without_quoting_it(token):
    with pytest.raises(ConfigError, match="auth_token") as caught:
        clean_token(token)
    assert MARKER not in str(caught.value)


@pytest.mark.parametrize("token", ["", "  \n", None, 12345])
def test_an_empty_or_non_text_token_is_refused(token):
    with pytest.raises(ConfigError, match="auth_token is empty"):
        clean_token(token)


def test_latin1_and_punctuation_are_legal_in_a_token():
    token = 'tok"\\%ñé'
    assert clean_token(token) == token


def test_the_client_strips_the_token_itself_and_refuses_what_cannot_be_sent():
    client = PiriodClient("http://127.0.0.1:9", f"tok-{MARKER}\n")
    assert client.session.headers["Authorization"] == f"Bearer tok-{MARKER}"
    with pytest.raises(ConfigError) as caught:
        PiriodClient("http://127.0.0.1:9", f"tok\x01{MARKER}")
    assert MARKER not in str(caught.value)


# -- Retry-After ---------------------------------------------------------------------------


def http_date(delta: timedelta) -> str:
    return format_datetime(NOW + delta, usegmt=True)


@pytest.mark.parametrize(("value", "expected"), [
    (None, RETRY_AFTER_DEFAULT_SECONDS), ("", RETRY_AFTER_DEFAULT_SECONDS),
    ("  ", RETRY_AFTER_DEFAULT_SECONDS), ("soon", RETRY_AFTER_DEFAULT_SECONDS),
    ("nan", RETRY_AFTER_DEFAULT_SECONDS), ("NaN", RETRY_AFTER_DEFAULT_SECONDS),
    ("0", 0.0), ("2", 2.0), ("2.5", 2.5), (" 7 ", 7.0), ("300", 300.0),
    ("-5", 0.0), ("-inf", 0.0),
    (http_date(timedelta(seconds=-60)), 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    (http_date(timedelta(seconds=30)), 30.0),
])
def test_a_retry_after_is_read_as_what_it_can_sensibly_mean(value, expected):
    assert retry_after_seconds(value, now=NOW.timestamp()) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["86400", "301", "inf", "Infinity", "+inf", "1e999",
                                   "9" * 400, http_date(timedelta(days=2)),
                                   "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_retry_after_beyond_the_cap_is_the_cap_and_is_logged(value, caplog):
    with caplog.at_level(logging.WARNING, logger="piriod"):
        assert retry_after_seconds(value, now=NOW.timestamp()) == RETRY_AFTER_CAP_SECONDS
    assert "waiting the cap of 300 s" in caplog.text
    assert RETRY_AFTER_CAP_SECONDS == 300.0


@pytest.mark.parametrize("value", ["Fri, 31 Dec 99999 23:59:59 GMT", "Mon, 99 Foo 2025",
                                   "\x00", "1e", "0x10"])
def test_a_retry_after_that_is_no_number_nor_date_is_the_default(value):
    assert retry_after_seconds(value, now=NOW.timestamp()) == RETRY_AFTER_DEFAULT_SECONDS


# -- redaction -------------------------------------------------------------------------------

TOKENS = [f"tok-{MARKER}", f'tok"{MARKER}', f"tok\\{MARKER}", f"tok%{MARKER}%41",
          f"tok-ñé-{MARKER}", f'tok"\\%ñ{MARKER}']


@pytest.mark.parametrize("token", TOKENS)
def test_every_spelling_of_the_token_is_redacted(token):
    spellings = [token, json.dumps(token)[1:-1], json.dumps(token, ensure_ascii=False)[1:-1],
                 quote(token, safe=""), repr(token)[1:-1],
                 token.encode("latin-1").decode("utf-8", "replace")]
    for spelling in spellings:
        text = redact(f"before {spelling} after", token)
        assert MARKER not in text and text == "before *** after", spelling
    assert set(spellings) <= set(secret_forms(token))


@pytest.mark.parametrize("token", TOKENS)
def test_a_json_body_quoting_the_token_is_redacted_whole(token):
    for ensure_ascii in (True, False):
        body = json.dumps({"detail": f"Bearer {token}"}, ensure_ascii=ensure_ascii)
        assert redact(body, token) == '{"detail": "Bearer ***"}'


# -- ids -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("customer_id", "path"), [
    ("cus_1", "/customers/cus_1/"), ("../invoices/inv1", "/customers/..%2Finvoices%2Finv1/"),
    ("a/b?c=1#d", "/customers/a%2Fb%3Fc%3D1%23d/"), ("%2e%2e", "/customers/%252e%252e/"),
    ("...", "/customers/.../"), ("ñ", "/customers/%C3%B1/")])
def test_an_id_is_one_quoted_path_segment(customer_id, path):
    assert customer_path(customer_id) == path


@pytest.mark.parametrize("customer_id", ["..", ".", "", " ", "a\nb", "a\x00b"])
def test_an_id_that_cannot_be_a_segment_is_no_customer(customer_id):
    client = PiriodClient("http://127.0.0.1:9", "tok")  # port 9: nothing may be sent
    assert client.get_customer(customer_id) is None
    assert client.requests_sent == 0


def _reply(status: int, body: str) -> Reply:
    return Reply(status, {}, body.encode())


@pytest.mark.parametrize("body", [
    json.dumps({"detail": "x" * 270 + " Bearer {token} and more"}),  # cut at 300 characters
    "y" * 280 + " Authorization: Bearer {token} …",  # plain text, cut at 300 characters
    "z" * 1990 + " Bearer {token}" + " " * 50,  # a long text body, kept to 2000 characters
])
def test_an_error_body_is_redacted_before_it_is_cut(body):
    """A token straddling a cut would survive as a fragment that no spelling matches."""
    token = f"tok-{MARKER}-4f9a"
    client = PiriodClient("http://127.0.0.1:9", token)
    text = body.replace("{token}", token)
    transient = client._classify("GET", "/customers/", None, _reply(503, text))
    with pytest.raises(ApiError) as refused:
        client._classify("POST", "/customers/", None, _reply(400, text))
    for found in (transient.reason, str(refused.value), json.dumps(refused.value.body)):
        assert "tok-s3" not in found and "4f9a" not in found, found


def test_a_null_setting_means_its_default_in_both_connectors():
    # A config file or an orchestrator may write null for a setting left unset: int(None)
    # used to end both connectors in a TypeError traceback.
    from piriod.settings import setting
    from tap_piriod.tap import TapPiriod
    from target_piriod.config import Settings

    assert setting({"max_retries": None}, "max_retries", 5) == 5
    assert setting({"max_retries": 0}, "max_retries", 5) == 0  # 0 is a value, not unset
    nulls = {"auth_token": "a-token", "api_url": "http://127.0.0.1:9",
             "max_retries": None, "request_timeout": None}
    client = TapPiriod(config=nulls, validate_config=False).piriod_client()
    assert (client.max_retries, client.timeout) == (5, 30.0)
    assert Settings.parse(nulls).max_retries == 5
