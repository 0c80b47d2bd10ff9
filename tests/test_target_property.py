"""target-piriod on random Singer streams (hypothesis), as a real process, against a sandbox.

Each example is one run of ``python -m target_piriod`` on a random stream: records that
are any JSON value (objects with customer attributes of every type, arrays, strings,
null), RECORD messages missing ``stream`` or ``record``, messages of unknown types,
STATEs, text with NUL, RTL marks, lone surrogates and bytes that are not UTF-8, very
long strings, NaN and the infinities. Whatever comes, the run ends with its summary and
no traceback, exits 0 (``max_rejects`` is high), and every record sent is either in the
sandbox or in the dead-letter file under the run's ``run_id``, once. A second property
puts a line that is not JSON somewhere in such a stream: the run then stops at it,
naming its line, with the summary and no STATE that a record after it would need.

One sandbox serves the module, reset to a few customers before each example.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from target_helpers import run_target_lines, schema_message

RUN_ID = re.compile(r'"metric":"target_piriod_summary".*?"run_id":"([0-9a-f]+)"')
SEED = 3  # customers in the sandbox before each example
ODD = ["", " ", "\x00", "a\x00b", "\u200f\u05e9\u05dc\u05d5\u05dd", "\u202eevil", "\ufeff",
       "\udcff", "x\ud800y", "\U0001f600", "e\u0301", "NaN", "null", "\\", '"', "\n"]
LONG = ["L" * 70_000, "\u00e9" * 20_000]

texts = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates included
    st.sampled_from(ODD),
    st.sampled_from(LONG),
)
fine_texts = st.one_of(  # text a customer may hold: any Unicode but surrogates, short
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
    st.sampled_from(["Acme SpA", "Ñandú Ltda", "\u200f\u05e9\u05dc\u05d5\u05dd",
                     "a\x00b", "\U0001f600 e\u0301"]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), texts)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(texts, inner, max_size=3), max_leaves=6)
TAX_IDS = [f"77.{n:03d}.000-K" for n in range(4)]
hostile = st.one_of(texts, scalars, json_values)
FIELDS = {  # each attribute: values a customer may hold, or anything at all
    "name": st.one_of(fine_texts, hostile),
    "tax_id": st.one_of(st.sampled_from([" 77.000.000-K ", "", "T" * 100]), fine_texts,
                        hostile),
    "email": st.one_of(st.sampled_from(["a@example.com", "not-an-email"]), hostile),
    "country": st.sampled_from(["CL", "cl", "XX", {"id": "AR"}, {"name": "Chile"}, None, 5]),
    "currency": st.sampled_from(["CLP", "USD", "usd", ""]),
    "metadata": st.one_of(st.dictionaries(fine_texts, fine_texts, max_size=2),
                          st.dictionaries(texts, json_values, max_size=3), json_values),
    "id": st.sampled_from(["SEEDED", "doesNotExist", "", None, 7]),
    "website": st.sampled_from(["https://example.com", "not a url", "http://\u00e9.cl"]),
    "extra": json_values,
}


@st.composite
def customers(draw: st.DrawFn) -> dict:
    """A customer record (keyed by one of a few tax ids), with up to 3 attributes changed."""
    record = {"tax_id": draw(st.sampled_from(TAX_IDS)), "name": draw(fine_texts)}
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3, unique=True)):
        record[name] = draw(FIELDS[name])
    return record


records = st.one_of(customers(), customers(), customers(), json_values)


@st.composite
def messages(draw: st.DrawFn) -> dict:
    """One message after the SCHEMA: mostly RECORDs, some broken, some STATEs."""
    kind = draw(st.sampled_from(["record"] * 8 + ["no_record", "no_stream", "odd_stream",
                                                  "unknown", "state"]))
    if kind == "record":
        return {"type": "RECORD", "stream": "customers", "record": draw(records)}
    if kind == "no_record":
        return {"type": "RECORD", "stream": "customers"}
    if kind == "no_stream":
        return {"type": "RECORD", "record": draw(records)}
    if kind == "odd_stream":
        return {"type": "RECORD", "stream": draw(st.sampled_from([None, 5, ["customers"]])),
                "record": draw(records)}
    if kind == "unknown":
        return {"type": draw(st.sampled_from(["FUTURE", "record", ""])), "stream": "customers"}
    return {"type": "STATE", "value": {"at": draw(st.integers(0, 10**6))}}


streams = st.lists(messages(), min_size=1, max_size=12)


def line_of(message: dict, raw_bytes: bool) -> bytes:
    """A message as a line: NaN as JSON's Python spelling; escaped bytes raw if asked."""
    if raw_bytes:
        try:  # \udc80-\udcff become the bytes they stand for: not UTF-8 on the wire
            return json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            pass  # another surrogate: only a JSON escape can carry it
    return json.dumps(message).encode("ascii")


def canonical(value: object) -> str:
    """A record as the dead-letter file holds it: numbers JSON lacks spelled as strings."""
    def strict(item: object) -> object:
        if isinstance(item, float) and not math.isfinite(item):
            return "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
        if isinstance(item, dict):
            return {key: strict(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [strict(inner) for inner in item]
        return item
    return json.dumps(strict(value), sort_keys=True)


def key_text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float):
        return None  # read as a Decimal: its text may differ; such a key is never sent
    return str(value).strip() or None


def is_loaded(record: object, customers_now: list[dict]) -> bool:
    """Whether a record's customer is in the sandbox (by id, else by tax_id)."""
    if not isinstance(record, dict):
        return False
    customer_id = key_text(record.get("id"))
    if customer_id:
        return any(customer["id"] == customer_id for customer in customers_now)
    tax_id = key_text(record.get("tax_id"))
    return tax_id is not None and any(
        key_text(customer.get("tax_id")) == tax_id for customer in customers_now)


def prepare(sandbox, stream: list[dict]) -> list[dict]:
    """Reset the sandbox; give records with id "SEEDED" a real customer's id."""
    sandbox.set_faults()
    sandbox.reset(SEED)
    seeded = sandbox.customers()[0]["id"]
    for message in stream:
        record = message.get("record")
        if isinstance(record, dict) and record.get("id") == "SEEDED":
            record["id"] = seeded
    return stream


def run(sandbox, lines: list[bytes]):
    directory = Path(tempfile.mkdtemp(prefix="target-property-"))
    return run_target_lines(sandbox, directory, lines, match_field="tax_id",
                            max_rejects=10**6, max_workers=2, batch_size_rows=3)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams, st.booleans())
def test_every_record_is_loaded_or_dead_lettered(sandbox_server, stream, raw_bytes):
    stream = prepare(sandbox_server, stream)
    lines = [json.dumps(schema_message()).encode(), *(line_of(m, raw_bytes) for m in stream)]
    done = run(sandbox_server, lines)

    assert "Traceback" not in done.stderr, done.stderr[-5000:]
    assert done.returncode == 0, done.stderr[-5000:]
    sent = [message.get("record") for message in stream if message["type"] == "RECORD"]
    assert done.count("records") == len(sent)

    [run_id] = RUN_ID.findall(done.stderr)  # from the summary metric
    text = done.dead_letter_path.read_text(encoding="utf-8") \
        if done.dead_letter_path.exists() else ""
    letters = [letter for letter in map(json.loads, text.splitlines())
               if letter["run_id"] == run_id]
    assert len(letters) == done.count("rejected")
    unclaimed = Counter(canonical(letter["record"]) for letter in letters)
    customers_now = sandbox_server.customers()
    for record in sent:
        form = canonical(record)
        if unclaimed[form]:
            unclaimed[form] -= 1
        else:
            assert is_loaded(record, customers_now), f"lost: {form[:500]}"
    assert not +unclaimed, "dead letters for records never sent"
    states = [message["value"] for message in stream if message["type"] == "STATE"]
    if states:
        assert done.states[-1:] == states[-1:]  # everything handled: the last STATE is out


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams, st.data())
def test_a_line_that_is_not_json_stops_the_run_where_it_is(sandbox_server, stream, data):
    stream = prepare(sandbox_server, stream)
    at = data.draw(st.integers(0, len(stream)))
    garbage = data.draw(st.sampled_from([b"{", b"not json", b"\xff\xfe", b"{\"type\": NaN"]))
    lines = [json.dumps(schema_message()).encode(), *(line_of(m, True) for m in stream)]
    lines.insert(at + 1, garbage)
    done = run(sandbox_server, lines)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-5000:]
    assert f"line {at + 2} is not" in done.stderr, done.stderr[-3000:]
    assert "(run failed)" in done.stderr and done.summary
    before = [message["value"] for message in stream[:at] if message["type"] == "STATE"]
    assert all(state in before for state in done.states)  # none from after the bad line
