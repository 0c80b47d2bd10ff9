"""CSV-friendly records: an empty cell is not an invalid value; bad ISO codes never leave.

Units: ``to_payload`` with ``empty_values`` ``ignore`` (the default: the attribute is
left out, as an absent column) and ``clear`` (set to null), and the validator's country
(ISO 3166-1 alpha-2) and currency (ISO 4217) checks. Processes: the target against the
sandbox, dry run and real, with blank cells and unknown codes.
"""

from __future__ import annotations

import pytest
from target_helpers import by_field, messages_for, new_customer, run_target

from target_piriod.codes import code_problems, country_codes, currency_codes
from target_piriod.keys import KeySpec
from target_piriod.plan import Planner
from target_piriod.records import PayloadValidator, to_payload

SANDBOX_CUSTOMERS = 20
BLANK_CELLS = {"email": "", "phone": "  ", "website": "", "address": "", "country": "",
               "state": "", "currency": ""}


# -- units -------------------------------------------------------------------------------


def test_ignore_leaves_blank_attributes_out_of_the_payload():
    payload = to_payload({"name": "Uno SpA", "tax_id": "1-9", **BLANK_CELLS})
    assert payload == {"name": "Uno SpA", "tax_id": "1-9"}
    assert PayloadValidator().errors(payload) == []


def test_clear_sets_blank_attributes_to_null():
    payload = to_payload({"name": "Uno SpA", "tax_id": "1-9", **BLANK_CELLS}, "clear")
    assert payload == {"name": "Uno SpA", "tax_id": "1-9", **dict.fromkeys(BLANK_CELLS)}
    assert PayloadValidator().errors(payload) == []


def test_a_blank_name_is_never_cleared():
    assert to_payload({"tax_id": "1-9", "name": ""}, "clear") == {"tax_id": "1-9"}
    assert to_payload({"tax_id": "1-9", "name": " "}) == {"tax_id": "1-9"}


def test_blank_metadata_values_and_non_blank_text_are_kept():
    record = {"name": " Uno ", "email": "a@b.example", "metadata": {"erp_id": ""}}
    assert to_payload(record) == record
    assert to_payload(record, "clear") == record


def test_a_blank_email_used_to_be_invalid_and_is_not_any_more():
    validator = PayloadValidator()
    assert validator.errors({"email": ""}) == ["email: '' is not a 'email'"]  # as sent raw
    assert validator.errors(to_payload({"email": ""})) == []


@pytest.mark.parametrize(("payload", "message"), [
    ({"country": "XX"}, "country: unknown country code 'XX'"),
    ({"country": "UK"}, "country: unknown country code 'UK'"),  # GB is the ISO code
    ({"currency": "XXY"}, "currency: unknown currency code 'XXY'"),
    ({"currency": "CLX"}, "currency: unknown currency code 'CLX'"),
])
def test_unknown_codes_are_refused_by_name(payload, message):
    errors = PayloadValidator().errors(payload)
    assert len(errors) == 1 and errors[0].startswith(message), errors


@pytest.mark.parametrize("payload", [
    {"country": "CL", "currency": "CLP"}, {"country": "PE", "currency": "PEN"},
    {"country": "GB", "currency": "GBP"}, {"currency": "CLF"}, {"country": None},
    {"currency": None}])
def test_known_codes_pass(payload):
    assert PayloadValidator().errors(payload) == []


def test_codes_of_another_shape_are_left_to_the_schema():
    assert code_problems({"country": "Chile", "currency": "clp"}) == []
    errors = PayloadValidator().errors({"country": "CHL"})
    assert len(errors) == 1 and "does not match" in errors[0]


def test_the_tables_are_the_standard_ones():
    assert len(country_codes()) >= 249 and {"CL", "AR", "MX", "US"} <= country_codes()
    assert len(currency_codes()) >= 150 and {"CLP", "CLF", "EUR", "USD"} <= currency_codes()


class NoCustomers:
    """A Lookup in which no customer exists: every valid record becomes a create."""

    def customer(self, customer_id):
        return None

    def customers_with(self, value):
        return []

    def wait_for_key(self, key):
        return None

    def wait_for_customer(self, customer_id):
        return False


def test_planning_refuses_unknown_codes_as_invalid_and_keeps_blank_cells():
    records = [{"tax_id": "1", "name": "A", "country": "XX"},
               {"tax_id": "2", "name": "B", "currency": "ABC"},
               {"tax_id": "3", "name": "C", "email": "", "country": "cl "}]
    plan = Planner(KeySpec.parse("tax_id"), "upsert").plan(records, NoCustomers())
    assert [(r.key, r.rejection.reason) for r in plan.refusals] == [
        (("tax_id", "1"), "invalid"), (("tax_id", "2"), "invalid")]
    assert "unknown country code 'XX'" in plan.refusals[0].rejection.message
    assert "unknown currency code 'ABC'" in plan.refusals[1].rejection.message
    assert [a.payload for a in plan.actions] == [{"tax_id": "3", "name": "C", "country": "CL"}]


# -- processes against the sandbox -------------------------------------------------------


def test_blank_cells_leave_attributes_unchanged_by_default(sandbox, tmp_path):
    known = sandbox.customers()[0]
    record = {"tax_id": known["tax_id"], "name": known["name"] + " (CSV)", **BLANK_CELLS}
    new = new_customer(1, email="", phone="", website="")
    sandbox.reset_stats()
    run = run_target(sandbox, tmp_path, messages_for([record, new]), match_field="tax_id")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (run.count("created"), run.count("updated"), run.count("rejected")) == (1, 1, 0)
    after = by_field(sandbox, "tax_id")
    changed = after[known["tax_id"]]
    assert changed["name"] == known["name"] + " (CSV)"
    for name in ("email", "phone", "website", "address", "country", "state", "currency"):
        assert changed[name] == known[name], name  # the blank cells changed nothing
    assert after[new["tax_id"]]["email"] is None  # created without one


def test_blank_cells_clear_attributes_with_empty_values_clear(sandbox, tmp_path):
    known = sandbox.customers()[0]
    assert known["email"] and known["phone"]
    record = {"tax_id": known["tax_id"], "email": "", "phone": ""}
    run = run_target(sandbox, tmp_path, messages_for([record]), match_field="tax_id",
                     empty_values="clear")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.count("updated") == 1
    changed = by_field(sandbox, "tax_id")[known["tax_id"]]
    assert (changed["email"], changed["phone"]) == (None, None)


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
def test_unknown_codes_are_dead_lettered_before_any_request(sandbox, tmp_path, dry_run):
    good = new_customer(1)
    bad_country = new_customer(2, country="XX", state=None)
    bad_currency = new_customer(3, currency="XXY")
    sandbox.reset_stats()
    run = run_target(sandbox, tmp_path, messages_for([good, bad_country, bad_currency]),
                     match_field="tax_id", dry_run=dry_run, max_rejects=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (run.count("created"), run.count("rejected")) == (1, 2)
    rejects = {r["key"]["value"]: r for r in run.rejects}
    assert rejects[bad_country["tax_id"]]["reason"] == "invalid"
    assert "unknown country code 'XX'" in rejects[bad_country["tax_id"]]["message"]
    assert "unknown currency code 'XXY'" in rejects[bad_currency["tax_id"]]["message"]
    assert all(r["dry_run"] is dry_run for r in run.rejects)
    stats = sandbox.stats()
    assert stats["creates"] == (0 if dry_run else 1)  # the bad ones were never POSTed
    assert stats["by_status"].get("400", 0) == 0
