"""The Meltano Hub definitions of tap-piriod and target-piriod stay in sync with the code.

``plugins/extractors/tap-piriod--piriod.yml`` and ``plugins/loaders/target-piriod--piriod.yml``
are what a user submits to Meltano Hub; ``meltano.yml`` defines the same two plugins inline.
Their settings and capabilities are derived from the plugins' own ``--about`` output, and
these tests fail when the code's settings change and the YAML was not updated.

Regenerate the hub files (and print the ``settings:`` blocks for meltano.yml) with:

    .venv/bin/python tests/test_hub_definitions.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Capabilities Meltano knows (its meltano.yml schema); others a plugin prints are left out.
MELTANO_CAPABILITIES = {
    "extractors": {"properties", "catalog", "discover", "state", "about", "stream-maps",
                   "activate-version", "batch", "test", "log-based", "schema-flattening",
                   "structured-logging"},
    "loaders": {"about", "stream-maps", "activate-version", "batch", "soft-delete",
                "hard-delete", "datatype-failsafe", "schema-flattening", "structured-logging"},
}

# What the code can't tell: the Hub's descriptive fields.
HEADERS = {
    "tap-piriod": {
        "name": "tap-piriod", "variant": "piriod", "namespace": "tap_piriod",
        "label": "Piriod",
        "description": "Customers of Piriod, the billing and invoicing platform",
        "logo_url": "/assets/logos/extractors/piriod.png",
        "domain_url": "https://piriod.com",
        "repo": "https://github.com/piriod/piriod-singer",
        "pip_url": "piriod-singer", "executable": "tap-piriod",
        "keywords": ["api", "billing", "meltano_sdk"], "maintenance_status": "active",
    },
    "target-piriod": {
        "name": "target-piriod", "variant": "piriod", "namespace": "target_piriod",
        "label": "Piriod",
        "description": "Upsert customers into Piriod, the billing and invoicing platform "
                       "(reverse ETL)",
        "logo_url": "/assets/logos/loaders/piriod.png",
        "domain_url": "https://piriod.com",
        "repo": "https://github.com/piriod/piriod-singer",
        "pip_url": "piriod-singer", "executable": "target-piriod",
        "keywords": ["api", "billing", "reverse-etl", "meltano_sdk"],
        "maintenance_status": "active",
    },
}
PLUGINS = {"tap-piriod": "extractors", "target-piriod": "loaders"}
HEADER_COMMENT = ("# Meltano Hub definition (submit as _data/meltano/{kind}/{name}/piriod.yml).\n"
                  "# Generated from `{name} --about` by tests/test_hub_definitions.py: edit the\n"
                  "# code's settings, then regenerate; check `repo` before submitting.\n")


def hub_path(name: str) -> Path:
    """Return the hub definition file of a plugin."""
    return REPO / "plugins" / PLUGINS[name] / f"{name}--piriod.yml"


def about(name: str) -> dict:
    """Return the plugin's ``--about`` information, from its installed executable."""
    done = subprocess.run([str(BIN / name), "--about", "--format=json"], capture_output=True,
                          text=True, check=True, timeout=120)
    return json.loads(done.stdout)


def kind_of(schema: dict) -> str:
    """Map a setting's JSON schema to a Meltano setting kind."""
    if schema.get("enum"):
        return "options"
    types = schema.get("type", "string")
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    if types[0] == "string" and schema.get("format") == "date-time":
        return "date_iso8601"
    return {"number": "decimal"}.get(types[0], types[0])


def settings_from_about(info: dict) -> list[dict]:
    """Return the Meltano ``settings`` list that describes the plugin's config schema."""
    settings = []
    for name, schema in info["settings"]["properties"].items():
        setting: dict = {"name": name, "label": schema.get("title") or name,
                         "kind": kind_of(schema)}
        if schema.get("secret"):
            setting["sensitive"] = True
        if schema.get("default") is not None:
            setting["value"] = schema["default"]
        if schema.get("enum"):
            setting["options"] = [{"label": str(v).replace("_", " ").capitalize(), "value": v}
                                  for v in schema["enum"]]
        if schema.get("description"):
            setting["description"] = schema["description"]
        settings.append(setting)
    return settings


def expected_definition(name: str) -> dict:
    """Return the hub definition the code implies."""
    info = about(name)
    known = MELTANO_CAPABILITIES[PLUGINS[name]]
    return {
        **HEADERS[name],
        "capabilities": [c for c in info["capabilities"] if c in known],
        "settings_group_validation": [sorted(info["settings"].get("required", []))],
        "settings": settings_from_about(info),
    }


def meltano_yml_plugin(name: str) -> dict:
    """Return the inline definition of a plugin in the project's meltano.yml."""
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    plugins = project["plugins"][PLUGINS[name]]
    return next(plugin for plugin in plugins if plugin["name"] == name)


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_hub_definition_matches_the_code(name: str) -> None:
    """Settings (name, kind, default, secrecy, options, text) and capabilities match."""
    written = yaml.safe_load(hub_path(name).read_text())
    expected = expected_definition(name)
    hint = f"{hub_path(name).name} is stale: run `python tests/test_hub_definitions.py`"
    assert written["capabilities"] == expected["capabilities"], hint
    assert written["settings_group_validation"] == expected["settings_group_validation"], hint
    assert [s["name"] for s in written["settings"]] == [s["name"] for s in expected["settings"]]
    for got, want in zip(written["settings"], expected["settings"], strict=True):
        assert got == want, hint
    assert written == expected, hint


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_meltano_yml_defines_the_same_plugin(name: str) -> None:
    """meltano.yml's inline definition has the hub's settings and capabilities."""
    hub = yaml.safe_load(hub_path(name).read_text())
    inline = meltano_yml_plugin(name)
    assert inline["namespace"] == hub["namespace"]
    assert inline["executable"] == hub["executable"]
    assert inline["capabilities"] == hub["capabilities"]
    assert inline["settings_group_validation"] == hub["settings_group_validation"]
    assert inline["settings"] == hub["settings"], (
        f"meltano.yml's {name} settings differ from {hub_path(name).name}: paste the block "
        "printed by `python tests/test_hub_definitions.py`")
    auth = next(s for s in inline["settings"] if s["name"] == "auth_token")
    assert auth["sensitive"] is True


def _write_all() -> None:
    for name, kind in PLUGINS.items():
        definition = expected_definition(name)
        text = yaml.safe_dump(definition, sort_keys=False, width=92, allow_unicode=True)
        hub_path(name).parent.mkdir(parents=True, exist_ok=True)
        hub_path(name).write_text(HEADER_COMMENT.format(kind=kind, name=name) + text)
        print(f"wrote {hub_path(name).relative_to(REPO)}; meltano.yml block for {name}:")
        block = yaml.safe_dump({"settings": definition["settings"]}, sort_keys=False, width=88)
        print("\n".join("    " + line for line in block.splitlines()))


if __name__ == "__main__":
    _write_all()
