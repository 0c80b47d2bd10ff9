"""Reference data (countries, states, currencies) and the seed-customer generator."""

from __future__ import annotations

import random
import string
import unicodedata
from datetime import datetime, timedelta, timezone

COUNTRIES: dict[str, str] = {
    "AR": "Argentina",
    "BR": "Brasil",
    "CL": "Chile",
    "CO": "Colombia",
    "ES": "España",
    "MX": "México",
    "PE": "Perú",
    "US": "United States",
    "UY": "Uruguay",
}

# Piriod state codes are at most six characters; each belongs to one country.
STATES: dict[str, tuple[str, str]] = {
    "CL-RM": ("CL", "Región Metropolitana"),
    "CL-VS": ("CL", "Valparaíso"),
    "CL-BI": ("CL", "Biobío"),
    "AR-C": ("AR", "Ciudad de Buenos Aires"),
    "AR-B": ("AR", "Buenos Aires"),
    "MX-CMX": ("MX", "Ciudad de México"),
    "MX-JAL": ("MX", "Jalisco"),
    "CO-DC": ("CO", "Bogotá D.C."),
    "PE-LIM": ("PE", "Lima"),
    "US-CA": ("US", "California"),
    "US-NY": ("US", "New York"),
    "ES-MD": ("ES", "Madrid"),
    "BR-SP": ("BR", "São Paulo"),
    "UY-MO": ("UY", "Montevideo"),
}

CURRENCIES = {"ARS", "BRL", "CLF", "CLP", "COP", "EUR", "MXN", "PEN", "USD", "UYU"}
COUNTRY_CURRENCY = {
    "AR": "ARS", "BR": "BRL", "CL": "CLP", "CO": "COP", "ES": "EUR",
    "MX": "MXN", "PE": "PEN", "US": "USD", "UY": "UYU",
}

_FIRST = ["Ana", "Benjamín", "Camila", "Diego", "Elena", "Felipe", "Gabriela", "Hugo",
          "Isidora", "Joaquín", "Karla", "Lucas", "María", "Nicolás", "Olga", "Pablo"]
_LAST = ["Araya", "Bravo", "Contreras", "Díaz", "Espinoza", "Fuentes", "González",
         "Herrera", "Ibáñez", "Jara", "Muñoz", "Rojas", "Soto", "Tapia", "Vega"]
_TRADE = ["Comercial", "Inversiones", "Servicios", "Distribuidora", "Constructora",
          "Logística", "Tecnología", "Alimentos", "Consultores", "Importadora"]
_SUFFIX = ["SpA", "Ltda.", "S.A.", "EIRL", "S.R.L."]

_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(rng: random.Random) -> str:
    """Return a 12-character object id shaped like the documentation's examples."""
    return "".join(rng.choices(_ID_ALPHABET, k=12))


def seed_customer(rng: random.Random, index: int, now: datetime) -> dict:
    """Return one realistic customer (internal shape: codes, not objects) for seeding.

    ``index`` makes tax ids, emails and ERP ids unique across a seeded data set.
    """
    country = rng.choices(list(COUNTRIES), weights=[2, 1, 10, 2, 1, 2, 2, 1, 1])[0]
    states = [code for code, (owner, _) in STATES.items() if owner == country]
    trade, last = rng.choice(_TRADE), rng.choice(_LAST)
    name = f"{trade} {last} {rng.choice(_SUFFIX)}"
    folded = unicodedata.normalize("NFKD", f"{trade}{last}".lower())
    slug = folded.encode("ascii", "ignore").decode()
    created = now - timedelta(seconds=rng.randint(86_400, 2 * 365 * 86_400),
                              microseconds=rng.randint(0, 999_999))
    updated = created + (now - created) * rng.random()
    rut = 76_000_000 + index
    contacts = [
        {
            "id": new_id(rng),
            "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            "email": f"contacto{n}.{index}@{slug}.example",
            "phone": f"+56 9 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        }
        for n in range(rng.randint(0, 2))
    ]
    sources = [
        {"id": new_id(rng), "type": "card", "last4": f"{rng.randint(0, 9999):04d}",
         "created": _iso(created)}
        for _ in range(rng.randint(0, 1))
    ]
    return {
        "id": new_id(rng),
        "name": name,
        "email": f"facturacion.{index}@{slug}.example",
        "address": f"Av. {rng.choice(_LAST)} {rng.randint(100, 9999)}",
        "country": country,
        "state": rng.choice(states) if states and rng.random() < 0.8 else None,
        "currency": COUNTRY_CURRENCY[country],
        "phone": f"+56 2 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        "tax_id": f"{rut // 1000:,}".replace(",", ".") + f".{rut % 1000:03d}-{rng.randint(0, 9)}",
        "tax_settings": None,
        "website": f"https://www.{slug}.example",
        "metadata": {"erp_id": f"ERP-{index:07d}", "segment": rng.choice(["smb", "mid", "ent"])},
        "contacts": contacts,
        "sources": sources,
        "aggregations": {
            "balance": round(rng.uniform(0, 5_000_000), 2),
            "sales": round(rng.uniform(0, 50_000_000), 2),
            "sales_current_period": round(rng.uniform(0, 2_000_000), 2),
        },
        "created": created,
        "updated": updated,
    }


def plain_customer(rng: random.Random, index: int) -> dict:
    """Return a small valid customer (internal shape, no timestamps) for bulk seeding.

    A tie storm seeds up to hundreds of thousands of rows in one request; this costs a
    fraction of ``seed_customer`` and still passes the API's validation, with ``index``
    keeping tax ids, emails and ERP ids unique.
    """
    rut = 90_000_000 + index
    return {
        "id": new_id(rng),
        "name": f"Empresa Empatada {index} SpA",
        "email": f"facturacion.{index}@empatada.example",
        "address": f"Av. Empate {index}",
        "country": "CL",
        "state": None,
        "currency": "CLP",
        "phone": None,
        "tax_id": f"{rut // 1000:,}".replace(",", ".") + f".{rut % 1000:03d}-{index % 10}",
        "tax_settings": None,
        "website": None,
        "metadata": {"erp_id": f"TIE-{index:07d}"},
        "contacts": [],
        "sources": [],
        "aggregations": {"balance": 0, "sales": 0, "sales_current_period": 0},
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
