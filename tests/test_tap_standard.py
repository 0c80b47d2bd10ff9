"""The Singer SDK's standard tap tests, run against a live sandbox."""

from __future__ import annotations

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from piriod_sandbox import SandboxProcess
from tap_piriod.tap import TapPiriod

SANDBOX_CUSTOMERS = 120

# The SDK builds its test class at import time from a config, and its runner keeps this
# dict: the fixture below points it at the module's sandbox before the first sync, so that
# collection starts no process. Until then it names a port nothing listens on.
CONFIG = {"auth_token": "set-by-the-fixture", "api_url": "http://127.0.0.1:9", "page_size": 50}


@pytest.fixture(scope="module", autouse=True)
def _live_config(sandbox_server: SandboxProcess) -> None:
    CONFIG.update(auth_token=sandbox_server.token, api_url=sandbox_server.url)


TestTapPiriod = get_tap_test_class(
    tap_class=TapPiriod,
    config=CONFIG,
    suite_config=SuiteConfig(max_records_limit=None),
)
