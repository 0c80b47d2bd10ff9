"""target-piriod's settings: declared once for the SDK, and read once into ``Settings``.

``CONFIG_SCHEMA`` is what ``--about``, Meltano and the SDK's validation see.
``Settings.parse`` checks what that schema cannot say, with each setting's name and a
fix (a bad ``match_field``, an unusable token or ``api_url``), and turns the config into
typed values with their defaults: the target parses it once (``TargetPiriod.settings``)
and the ``Loader`` and the rest read the result, never the raw config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from singer_sdk import typing as th

from piriod.settings import DEFAULT_API_URL, check_api_url, clean_token, setting, user_agent
from target_piriod.keys import KeySpec
from target_piriod.plan import MODES
from target_piriod.records import EMPTY_VALUES

CONFIG_SCHEMA = th.PropertiesList(
    th.Property("auth_token", th.StringType, required=True, secret=True,
                title="Auth token",
                description="Piriod API token, sent as 'Authorization: Bearer <token>'. "
                            "Never logged, nor written to the dead-letter file."),
    th.Property("api_url", th.StringType, default=DEFAULT_API_URL,
                title="API URL", description="Base URL of the Piriod API."),
    th.Property("match_field", th.StringType, default="id", title="Match field",
                description="How records without a Piriod 'id' are matched to customers: "
                            "'id' (records without an id are rejected), an attribute "
                            "such as 'tax_id' or 'email', or 'metadata.<key>' for an "
                            "external id kept in the customer's metadata. A record "
                            "with an 'id' is always matched by it."),
    th.Property("mode", th.StringType, default="upsert", allowed_values=list(MODES),
                title="Mode",
                description="'upsert' creates unmatched records and patches matched "
                            "ones; 'create_only' never patches (matched records are "
                            "skipped); 'update_only' never creates (unmatched records "
                            "are rejected)."),
    th.Property("dry_run", th.BooleanType, default=False, title="Dry run",
                description="Read and match, but send no writes and emit no STATE (so "
                            "the orchestrator keeps its bookmark and the real run after "
                            "it sends every record): report what would be created, "
                            "updated, left unchanged and rejected."),
    th.Property("empty_values", th.StringType, default="ignore",
                allowed_values=list(EMPTY_VALUES), title="Empty values",
                description="What an empty string (a blank CSV cell) in an attribute "
                            "means: 'ignore' leaves the attribute as Piriod holds it; "
                            "'clear' sets it to null. Never an invalid value."),
    th.Property("plan_path", th.StringType, title="Plan path",
                description="JSONL file of the customers created or updated, one line "
                            "each: key, id and, per attribute, the value before and "
                            "after. With dry_run it is the plan to review (the file is "
                            "replaced); without, an audit log of the writes Piriod "
                            "accepted (appended to). Not set: no file."),
    th.Property("dead_letter_path", th.StringType,
                default="target-piriod-rejects.jsonl", title="Dead-letter path",
                description="JSONL file that rejected records are appended to, each "
                            "with its key, the reason and what the API answered."),
    th.Property("max_rejects", th.IntegerType(minimum=0), default=0,
                title="Max rejects",
                description="The run exits non-zero if more records than this were "
                            "rejected (they are in the dead-letter file either way)."),
    th.Property("max_workers", th.IntegerType(minimum=1, maximum=64), default=4,
                title="Max workers",
                description="Concurrent write requests (threads over pooled keep-alive "
                            "connections)."),
    # The SDK annotates NumberType's minimum as int; JSON Schema's minimum is any number.
    th.Property("request_timeout", th.NumberType(minimum=0.1),  # type: ignore[arg-type]
                default=30,
                title="Request timeout", description="Seconds to wait for a response."),
    th.Property("max_retries", th.IntegerType(minimum=0), default=5,
                title="Max retries",
                description="Retries of a request failing with 5xx, a timeout or a "
                            "dropped connection (429s get a larger budget and honour "
                            "Retry-After) before the run fails."),
    th.Property("user_agent", th.StringType, title="User agent",
                description="User-Agent header of every request (default: "
                            "target-piriod/<version>)."),
).to_dict()


@dataclass(frozen=True)
class Settings:
    """The target's settings, checked, with their defaults (see ``CONFIG_SCHEMA``)."""

    spec: KeySpec  # match_field
    auth_token: str = field(repr=False)  # never in a log or an error
    api_url: str
    mode: str
    dry_run: bool
    empty_values: str
    plan_path: str | None
    dead_letter_path: str
    max_rejects: int
    max_workers: int
    request_timeout: float
    max_retries: int
    user_agent: str
    batch_size_rows: int | None  # the SDK's built-in setting (None: the sink's default)

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> Settings:
        """Check and read a config; a bad setting raises ConfigError naming it and a fix."""
        spec = KeySpec.parse(config.get("match_field") or "id")
        token = clean_token(config.get("auth_token"), "target-piriod")
        api_url = check_api_url(config.get("api_url") or DEFAULT_API_URL)
        return cls(
            spec=spec, auth_token=token, api_url=api_url,
            mode=config.get("mode") or "upsert",
            dry_run=bool(config.get("dry_run")),
            empty_values=config.get("empty_values") or "ignore",
            plan_path=config.get("plan_path") or None,
            dead_letter_path=config.get("dead_letter_path") or "target-piriod-rejects.jsonl",
            max_rejects=int(config.get("max_rejects") or 0),
            max_workers=max(1, int(config.get("max_workers") or 4)),
            request_timeout=float(config.get("request_timeout") or 30),
            max_retries=int(setting(config, "max_retries", 5)),
            user_agent=config.get("user_agent") or user_agent("target-piriod"),
            batch_size_rows=int(config["batch_size_rows"]) if config.get("batch_size_rows")
            else None)
