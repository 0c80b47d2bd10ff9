"""Country and currency codes, checked before anything is sent (dry runs included).

Piriod refuses an unknown country as ``Invalid pk "XX" - object does not exist.``, which
a dry run cannot foresee and a newcomer cannot read. The codes come from ``pycountry``
(the ISO 3166-1 and ISO 4217 tables of Debian's iso-codes, kept up to date there), not
from a table of our own. The check is against the standard: a code that is ISO but that
an account of Piriod does not offer is still refused by the API (``api_rejected``).
"""

from __future__ import annotations

from functools import cache

import pycountry

# The write schema's patterns decide the shape (two or three capitals); a value of another
# shape is reported by the schema, not twice.
COUNTRY_LENGTH, CURRENCY_LENGTH = 2, 3


@cache
def country_codes() -> frozenset[str]:
    """Return the ISO 3166-1 alpha-2 codes (``CL``, ``PE``...)."""
    return frozenset(country.alpha_2 for country in pycountry.countries)


@cache
def currency_codes() -> frozenset[str]:
    """Return the ISO 4217 alphabetic codes (``CLP``, ``CLF``, ``USD``...)."""
    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


def code_problems(payload: dict) -> list[str]:
    """Return a message per unknown country or currency code of a write payload.

    E.g. ``country: unknown country code 'XX' (not an ISO 3166-1 alpha-2 code such as
    'CL')``; codes of another shape are left to the schema's patterns.
    """
    problems = []
    country = payload.get("country")
    if _shaped(country, COUNTRY_LENGTH) and country not in country_codes():
        problems.append(f"country: unknown country code '{country}' (not an ISO 3166-1 "
                        "alpha-2 code such as 'CL')")
    currency = payload.get("currency")
    if _shaped(currency, CURRENCY_LENGTH) and currency not in currency_codes():
        problems.append(f"currency: unknown currency code '{currency}' (not an ISO 4217 "
                        "code such as 'CLP')")
    return problems


def _shaped(value: object, length: int) -> bool:
    """Tell whether a value has a code's shape: ``length`` ASCII capitals."""
    return isinstance(value, str) and len(value) == length and value.isascii() and \
        value.isalpha() and value.isupper()
