"""The Singer SDK's standard target tests, where they apply, run in-process on a sandbox.

The SDK's own ``.singer`` inputs use arbitrary streams (``test_duplicate_records``...)
with integer ids and made-up attributes: target-piriod loads only ``customers``, so the
file-based standard tests are re-expressed here with customers-shaped inputs of the same
intent (duplicates, several STATE messages, optional attributes, encoded strings, schema
updates, special characters, a record without the tap's key property). The standard
tests that are input-independent run as they are.
"""

from __future__ import annotations

import atexit
import json
import tempfile
from pathlib import Path

from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.target_tests import (
    TargetCliPrintsTest,
    TargetInvalidSchemaTest,
    TargetRecordBeforeSchemaTest,
)
from singer_sdk.testing.templates import TargetFileTestTemplate
from target_helpers import new_customer, record_message, schema_message, state_message

from piriod_sandbox import SandboxProcess
from target_piriod.target import TargetPiriod

# The SDK builds its test class at import time from a config, so the sandbox must be up
# before collection; it is stopped when the test process exits.
_SANDBOX = SandboxProcess(20).start()
atexit.register(_SANDBOX.stop)
_WORKDIR = Path(tempfile.mkdtemp(prefix="target-piriod-standard-"))
CONFIG = {"auth_token": _SANDBOX.token, "api_url": _SANDBOX.url, "match_field": "tax_id",
          "dead_letter_path": str(_WORKDIR / "rejects.jsonl"), "max_retries": 2}

NARROW_SCHEMA = {"type": "object", "properties": {"tax_id": {"type": "string"},
                                                  "name": {"type": "string"}}}


def by_tax_id() -> dict[str, dict]:
    return {customer["tax_id"]: customer for customer in _SANDBOX.customers()}


class CustomersFileTest(TargetFileTestTemplate):
    """A standard file test whose input is built in Python and written to a temp file."""

    messages: tuple[dict, ...] = ()

    @property
    def singer_filepath(self) -> Path:
        path = _WORKDIR / f"{self.name}.singer"
        path.write_text("".join(json.dumps(m) + "\n" for m in self.messages))
        return path

    def setup(self) -> None:
        _SANDBOX.set_faults()
        _SANDBOX.reset(20)


class CustomersDuplicateRecords(CustomersFileTest):
    """Duplicate keys in one load: one customer each, the later values win."""

    name = "customers_duplicate_records"
    messages = (schema_message(), *(record_message(new_customer(n % 2, phone=f"+{n}"))
                                    for n in range(5)), state_message({"done": 5}))

    def validate(self) -> None:
        customers = by_tax_id()
        assert len(customers) == 22 and _SANDBOX.stats()["creates"] == 2
        assert customers["77.000.000-K"]["phone"] == "+4"
        assert customers["77.001.000-K"]["phone"] == "+3"


class CustomersMultipleStateMessages(CustomersFileTest):
    """STATE messages are relayed in order, the last one after everything was written."""

    name = "customers_multiple_state_messages"
    messages = (schema_message(),
                *(m for n in range(1, 7) for m in (record_message(new_customer(n)),
                                                   state_message({"position": n}))))

    def validate(self) -> None:
        states = [s if isinstance(s, dict) else json.loads(s) for s in self.runner.state_messages]
        assert states and states[-1] == {"position": 6}
        assert len(by_tax_id()) == 26


class CustomersOptionalAttributes(CustomersFileTest):
    """Records that leave attributes out change only the attributes they have."""

    name = "customers_optional_attributes"
    messages = (schema_message(), record_message({"tax_id": "77.001.000-K", "name": "Only"}),
                record_message(new_customer(2, phone=None, website=None)))

    def validate(self) -> None:
        customers = by_tax_id()
        assert customers["77.001.000-K"]["name"] == "Only"
        assert customers["77.001.000-K"]["email"] is None
        assert customers["77.002.000-K"]["phone"] is None


class CustomersEncodedStringData(CustomersFileTest):
    """Non-ASCII, quotes, escapes and control characters survive the round trip."""

    name = "customers_encoded_string_data"
    names = ("απλή συμβολοσειρά", "简单的字串", "chaîne \"simple\"", "various \\ / \n escapes",
             "Ñuñoa Ltda.")
    messages = (schema_message(), *(record_message(new_customer(n, name=text))
                                    for n, text in enumerate(names, start=1)))

    def validate(self) -> None:
        customers = by_tax_id()
        for n, text in enumerate(self.names, start=1):
            assert customers[f"77.{n:03d}.000-K"]["name"] == text


class CustomersSchemaUpdates(CustomersFileTest):
    """A new SCHEMA mid-stream starts a new sink; the run's index and counters carry on."""

    name = "customers_schema_updates"
    messages = ({"type": "SCHEMA", "stream": "customers", "schema": NARROW_SCHEMA,
                 "key_properties": ["tax_id"]},
                record_message({"tax_id": "77.001.000-K", "name": "First"}),
                schema_message(),
                record_message(new_customer(1, name="Second")),
                record_message(new_customer(2)))

    def validate(self) -> None:
        customers = by_tax_id()
        assert len(customers) == 22 and _SANDBOX.stats()["creates"] == 2
        assert customers["77.001.000-K"]["name"] == "Second"


class CustomersSpecialCharsInAttributes(CustomersFileTest):
    """Attributes Piriod does not have (odd names included) are ignored, not sent."""

    name = "customers_special_chars_in_attributes"
    messages = (schema_message(), record_message({**new_customer(1), "_sdc_x": 1,
                                                  "Ünïcode key!": "x", "id_": 3}))

    def validate(self) -> None:
        assert "Ünïcode key!" not in by_tax_id()["77.001.000-K"]


class CustomersRecordWithoutKeyProperty(CustomersFileTest):
    """Unlike the SDK default, a record missing the tap's key property is not fatal.

    A source keyed by ``id`` legitimately sends new customers without one: they are
    matched by ``match_field``. (The SDK's ``record_missing_key_property`` expects an
    exception, so it is replaced by this test.)
    """

    name = "customers_record_without_key_property"
    messages = (schema_message(key_properties=["id"]), record_message(new_customer(1)))

    def validate(self) -> None:
        assert "77.001.000-K" in by_tax_id()


TestTargetPiriod = get_target_test_class(
    TargetPiriod,
    config=CONFIG,
    include_target_tests=False,
    custom_suites=[SingerTestSuite(kind="target", tests=[
        TargetCliPrintsTest, TargetRecordBeforeSchemaTest, TargetInvalidSchemaTest,
        CustomersDuplicateRecords, CustomersMultipleStateMessages,
        CustomersOptionalAttributes, CustomersEncodedStringData, CustomersSchemaUpdates,
        CustomersSpecialCharsInAttributes, CustomersRecordWithoutKeyProperty,
    ])],
)
