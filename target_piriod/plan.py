"""Planning a batch: validate, key, merge, match and diff its records into actions.

Planning decides, and does nothing: it reads customers and waits for writes in flight
only through a ``Lookup`` (the Loader's ``SettledLookup``), and returns the actions and
the records it refused. So the rules of what a record means live here, testable alone:

* a record failing the write schema is refused (``invalid``), one without a key too
  (``missing_key``: creating it would duplicate it on every re-run);
* records with the same key are merged in input order, the later values winning
  (metadata key by key); two keys that resolve to one customer become one action,
  including a key that an earlier record of the batch gives to a matched customer;
* a key that matches no customer by ``id`` is ``not_found``, one that matches several
  is ``ambiguous_match`` (never guessed); an unmatched key is created, unless the mode
  is ``update_only`` (``not_found``), and a matched one is patched with only what
  differs (``unchanged`` when nothing does), unless the mode is ``create_only``
  (``skip``).

Before a key is matched, ``Lookup.wait_for_key`` / ``wait_for_customer`` let any write
in flight for that key or customer finish and be recorded, so the record is matched and
diffed against what that write wrote (see ``target_piriod.write``).
"""

from __future__ import annotations

import enum
from functools import reduce
from typing import Literal, Protocol

from target_piriod.actions import Action, Item, Kind, Plan, Refusal, Rejection
from target_piriod.diff import changes_for, merge_payloads
from target_piriod.keys import Key, KeySpec, record_key
from target_piriod.records import PayloadValidator, to_payload

MODES = ("upsert", "create_only", "update_only")


class _Refused(enum.Enum):
    """What matching returns for a key it refused (a typed sentinel: not a customer)."""

    REFUSED = enum.auto()


REFUSED = _Refused.REFUSED
Match = dict | None | Literal[_Refused.REFUSED]  # a customer, no customer, or refused


class UnverifiedMatch(Exception):
    """No one can tell now whether a customer holds the key: refuse it rather than create.

    ``Lookup.customers_with`` raises it when the customer listing kept moving under the
    index read and the key has no filter to check it by (``target_piriod.lookup``).
    """


class Lookup(Protocol):
    """What planning may ask of the world: customers, and writes in flight to wait for."""

    def customer(self, customer_id: str) -> dict | None:
        """Return a customer (write shape) by id, or None if there is none."""

    def customers_with(self, value: str) -> list[dict]:
        """Return the customers (write shape) whose match key is ``value``."""

    def wait_for_key(self, key: Key) -> None:
        """Return once no write in flight holds this match key."""

    def wait_for_customer(self, customer_id: str) -> bool:
        """Return once no write in flight holds this customer; True if one did."""


class Planner:
    """Turns batches of records into plans, for one ``match_field`` and ``mode``."""

    def __init__(self, spec: KeySpec, mode: str, empty_values: str = "ignore") -> None:
        self.spec = spec
        self.mode = mode
        self.empty_values = empty_values
        self._validator = PayloadValidator()

    def plan(self, records: list[dict], lookup: Lookup) -> Plan:
        """Validate and key records, merge them by key, match each key, and diff."""
        plan = Plan()
        items = [item for item in (self._prepare(record, plan) for record in records)
                 if item is not None]
        by_key: dict[Key, list[Item]] = {}
        for item in items:
            by_key.setdefault(item.key, []).append(item)
        by_target: dict[str, Action] = {}
        given: dict[str, str] = {}  # match key an earlier record gives a customer -> it
        for key, group in by_key.items():
            payload = reduce(merge_payloads, (item.payload for item in group))
            found = self._match_settled(key, group, payload, lookup, plan)
            if found is REFUSED:
                continue
            # Unmatched, but an earlier record of this batch gives that key to a customer
            # (the index does not know yet): that customer, not a new one.
            target = f"id:{found['id']}" if found else given.get(key[1], f"new:{key}")
            value = self.spec.match_value(payload)
            if found and value is not None:
                given.setdefault(value, target)
            if target in by_target:  # two keys, one customer: one write, later wins
                earlier = by_target[target]
                earlier.items += group
                earlier.payload = merge_payloads(earlier.payload, payload)
            else:
                by_target[target] = Action(Kind.CREATE, key, list(group), payload,
                                           found or None)  # kind: see _decide
        for action in by_target.values():
            self._decide(action, plan)
        return plan

    def _prepare(self, record: dict, plan: Plan) -> Item | None:
        """Validate a record and find its key; refuse it if either fails."""
        payload = to_payload(record, self.empty_values)  # empty cells first, then validate
        key = record_key(record, self.spec)
        errors = self._validator.errors(payload)
        if errors:
            plan.refusals.append(Refusal([record], key, Rejection(
                "invalid", "; ".join(errors), error=errors)))
            return None
        if key is None:
            wanted = "an id" if self.spec.field == "id" else f"an id or a {self.spec.label}"
            plan.refusals.append(Refusal([record], None, Rejection(
                "missing_key", f"record has neither {wanted}: it cannot be matched, and "
                "creating it would duplicate it on every re-run (set match_field)")))
            return None
        return Item(record, key, payload)

    def _match_settled(self, key: Key, group: list[Item], payload: dict, lookup: Lookup,
                       plan: Plan) -> Match:
        """Match a key once no write in flight holds it, its match key or its customer."""
        lookup.wait_for_key(key)
        value = self.spec.match_value(payload)
        if value is not None:
            lookup.wait_for_key((self.spec.label, value))
        while True:
            found = self._match(key, group, lookup, plan)
            if found is None or found is REFUSED or \
                    not lookup.wait_for_customer(found["id"]):
                return found
            # That customer was being written: match again against what was written.

    def _match(self, key: Key, group: list[Item], lookup: Lookup,
               plan: Plan) -> Match:
        """Return the customer a key matches, None for no match, REFUSED if refused."""
        records = [item.record for item in group]
        if key[0] == "id":
            found = lookup.customer(key[1])
            if found is None:
                plan.refusals.append(Refusal(records, key, Rejection(
                    "not_found", f"no customer has id {key[1]} (deleted?)", status=404)))
                return REFUSED
            return found
        try:
            matches = lookup.customers_with(key[1])
        except UnverifiedMatch as error:
            plan.refusals.append(Refusal(records, key, Rejection("unverified_match",
                                                                 str(error))))
            return REFUSED
        if len(matches) > 1:
            ids = ", ".join(customer["id"] for customer in matches)
            plan.refusals.append(Refusal(records, key, Rejection(
                "ambiguous_match", f"{len(matches)} customers have {key[0]}={key[1]!r} "
                f"({ids}); refusing to guess which one to update")))
            return REFUSED
        return matches[0] if matches else None

    def _decide(self, action: Action, plan: Plan) -> None:
        """Set the action's kind from the mode and the diff, and add it to the plan."""
        if action.current is None:
            if self.mode == "update_only":
                plan.refusals.append(Refusal(action.records, action.key, Rejection(
                    "not_found", f"no customer has {action.key[0]}={action.key[1]!r} and "
                    "mode is update_only")))
                return
            action.kind = Kind.CREATE
        elif self.mode == "create_only":
            action.kind = Kind.SKIP
        else:
            action.changes = changes_for(action.current, action.payload)
            action.kind = Kind.UPDATE if action.changes else Kind.UNCHANGED
        plan.actions.append(action)
