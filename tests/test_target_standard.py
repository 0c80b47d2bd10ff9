"""The Singer SDK's standard target tests, where they apply, run in-process on a sandbox.

The SDK's own ``.singer`` inputs use arbitrary streams (``test_duplicate_records``...)
with integer ids and made-up attributes: target-piriod loads only ``customers``, so the
file-based standard tests are re-expressed here with customers-shaped inputs of the same
intent (duplicates, several STATE messages, optional attributes, encoded strings, schema
updates, special characters, a record without the tap's key property). The standard
tests that are input-independent run as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pytest
from singer_sdk.testing import SuiteConfig, get_target_test_class
from singer_sdk.testing.runners import TargetTestRunner
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

SANDBOX_CUSTOMERS = 20

# The SDK builds its test class at import time from a config, and its runner keeps this
# dict: the fixture below points it at the module's sandbox and a temp dir before the first
# test, so that collection starts no process. Until then it names a port nothing listens on.
CONFIG = {"auth_token": "set-by-the-fixture", "api_url": "http://127.0.0.1:9",
          "match_field": "tax_id", "dead_letter_path": "set-by-the-fixture", "max_retries": 2}


class Live(NamedTuple):
    """The SDK's ``resource`` for these tests: the sandbox and a directory for inputs."""

    sandbox: SandboxProcess
    workdir: Path


@pytest.fixture(scope="module", autouse=True)
def _live_config(sandbox_server: SandboxProcess, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Path:
    workdir = tmp_path_factory.mktemp("target-piriod-standard")
    CONFIG.update(auth_token=sandbox_server.token, api_url=sandbox_server.url,
                  dead_letter_path=str(workdir / "rejects.jsonl"))
    return workdir


NARROW_SCHEMA = {"type": "object", "properties": {"tax_id": {"type": "string"},
                                                  "name": {"type": "string"}}}


class CustomersFileTest(TargetFileTestTemplate):
    """A standard file test whose input is built in Python and written to a temp file."""

    messages: tuple[dict, ...] = ()
    resource: Live

    def run(self, config: SuiteConfig, resource: Live, runner: TargetTestRunner) -> None:
        self.resource = resource  # the SDK sets it after it reads singer_filepath
        super().run(config, resource, runner)

    @property
    def singer_filepath(self) -> Path:
        path = self.resource.workdir / f"{self.name}.singer"
        path.write_text("".join(json.dumps(m) + "\n" for m in self.messages))
        return path

    @property
    def sandbox(self) -> SandboxProcess:
        return self.resource.sandbox

    def by_tax_id(self) -> dict[str, dict]:
        return {customer["tax_id"]: customer for customer in self.sandbox.customers()}


class CustomersDuplicateRecords(CustomersFileTest):
    """Duplicate keys in one load: one customer each, the later values win."""

    name = "customers_duplicate_records"
    messages = (schema_message(), *(record_message(new_customer(n % 2, phone=f"+{n}"))
                                    for n in range(5)), state_message({"done": 5}))

    def validate(self) -> None:
        customers = self.by_tax_id()
        assert len(customers) == 22 and self.sandbox.stats()["creates"] == 2
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
        assert len(self.by_tax_id()) == 26


class CustomersOptionalAttributes(CustomersFileTest):
    """Records that leave attributes out change only the attributes they have."""

    name = "customers_optional_attributes"
    messages = (schema_message(), record_message({"tax_id": "77.001.000-K", "name": "Only"}),
                record_message(new_customer(2, phone=None, website=None)))

    def validate(self) -> None:
        customers = self.by_tax_id()
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
        customers = self.by_tax_id()
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
        customers = self.by_tax_id()
        assert len(customers) == 22 and self.sandbox.stats()["creates"] == 2
        assert customers["77.001.000-K"]["name"] == "Second"


class CustomersSpecialCharsInAttributes(CustomersFileTest):
    """Attributes Piriod does not have (odd names included) are ignored, not sent."""

    name = "customers_special_chars_in_attributes"
    messages = (schema_message(), record_message({**new_customer(1), "_sdc_x": 1,
                                                  "Ünïcode key!": "x", "id_": 3}))

    def validate(self) -> None:
        assert "Ünïcode key!" not in self.by_tax_id()["77.001.000-K"]


class CustomersRecordWithoutKeyProperty(CustomersFileTest):
    """Unlike the SDK default, a record missing the tap's key property is not fatal.

    A source keyed by ``id`` legitimately sends new customers without one: they are
    matched by ``match_field``. (The SDK's ``record_missing_key_property`` expects an
    exception, so it is replaced by this test.)
    """

    name = "customers_record_without_key_property"
    messages = (schema_message(key_properties=["id"]), record_message(new_customer(1)))

    def validate(self) -> None:
        assert "77.001.000-K" in self.by_tax_id()


StandardTargetTests = get_target_test_class(
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


class TestTargetPiriod(StandardTargetTests):
    """The suite above, each test on the module's sandbox reset to its 20 customers."""

    @pytest.fixture
    def resource(self, sandbox: SandboxProcess, _live_config: Path) -> Live:
        return Live(sandbox, _live_config)
