"""The tap's streams: which Piriod lists it reads (how: ``tap_piriod.piriod_stream``)."""

from __future__ import annotations

from singer_sdk import SchemaDirectory, StreamSchema

from piriod.client import CUSTOMERS_PATH
from piriod.schema import schemas_dir
from tap_piriod.piriod_stream import PiriodStream, parse_instant, utc_text

__all__ = ["STREAMS", "CustomersStream", "PiriodStream", "parse_instant", "utc_text"]


class CustomersStream(PiriodStream):
    """Piriod customers (``/customers/``), incremental by ``updated``."""

    name = "customers"
    path = CUSTOMERS_PATH
    noun = "customer"
    primary_keys = ("id",)
    schema = StreamSchema(SchemaDirectory(schemas_dir()))  # schemas/customers.json

    def query(self) -> dict:
        """Add the ``country_name`` setting's filter to the shared query."""
        params = super().query()
        if self.config.get("country_name"):
            params["country__name"] = self.config["country_name"]
        return params


# The streams TapPiriod offers, in discovery order.
STREAMS: tuple[type[PiriodStream], ...] = (CustomersStream,)
