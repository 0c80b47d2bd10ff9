"""The Singer SDK's standard tap tests, run against a live sandbox."""

from __future__ import annotations

import atexit

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from piriod_sandbox import SandboxProcess
from tap_piriod.tap import TapPiriod

# The SDK builds its test class at import time from a config, so the sandbox must be up
# before collection; it is stopped when the test process exits.
_SANDBOX = SandboxProcess(120).start()
atexit.register(_SANDBOX.stop)

TestTapPiriod = get_tap_test_class(
    tap_class=TapPiriod,
    config={"auth_token": _SANDBOX.token, "api_url": _SANDBOX.url, "page_size": 50},
    suite_config=SuiteConfig(max_records_limit=None),
)
