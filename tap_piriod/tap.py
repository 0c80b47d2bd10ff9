"""``tap-piriod``: the Singer tap for Piriod."""

from __future__ import annotations

from singer_sdk import Tap
from singer_sdk import typing as th

from tap_piriod.output import FastSingerWriter
from tap_piriod.streams import CustomersStream


class TapPiriod(Tap):
    """Extracts Piriod customers, incrementally by their ``updated`` time."""

    name = "tap-piriod"
    package_name = "piriod-singer"
    # Same messages as the SDK's writer, encoded ~10x faster (see tap_piriod/output.py).
    message_writer_class = FastSingerWriter

    config_jsonschema = th.PropertiesList(
        th.Property("auth_token", th.StringType, required=True, secret=True,
                    title="Auth token",
                    description="Piriod API token, sent as `Authorization: Bearer <token>`."),
        th.Property("api_url", th.StringType, default="https://api.piriod.com",
                    title="API URL", description="Root of the Piriod API."),
        th.Property("start_date", th.DateTimeType, title="Start date",
                    description="Only customers updated at or after this instant on the first "
                                "run; later runs resume from the bookmark in the state."),
        th.Property("page_size", th.IntegerType(minimum=1, maximum=100), default=100,
                    title="Page size", description="Customers per list request (1 to 100)."),
        th.Property("country_name", th.StringType, title="Country name",
                    description="Only customers of this country (the API's `country__name` "
                                "filter), e.g. `Chile`."),
        th.Property("user_agent", th.StringType, default="tap-piriod/0.1.0",
                    title="User agent", description="User-Agent header sent to the API."),
        th.Property("request_timeout", th.IntegerType(minimum=1), default=60,
                    title="Request timeout",
                    description="Seconds to wait for a connection or a response before "
                                "retrying the request."),
        th.Property("max_retries", th.IntegerType(minimum=0), default=5, title="Max retries",
                    description="Retries of a request after 429, 5xx, timeouts or dropped "
                                "connections, with exponential backoff (429 waits what "
                                "`Retry-After` asks)."),
    ).to_dict()

    def discover_streams(self) -> list[CustomersStream]:
        """Return the tap's streams."""
        return [CustomersStream(self)]


if __name__ == "__main__":
    TapPiriod.cli()
