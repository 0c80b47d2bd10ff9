"""target-piriod fed hostile input (issue 11, the input items), as a real process.

Each test runs ``python -m target_piriod`` on raw Singer lines against a real sandbox:
numbers JSON cannot carry, bytes that are not UTF-8, records that are not objects, lines
that are not JSON or not Singer messages, a dead-letter file that cannot be written, and
values of megabytes. A bad record is dead-lettered (``invalid``, before any request) and
the load goes on; a bad line stops the run with its line number, after the writes in
flight and the summary, without a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from target_helpers import (
    by_field,
    new_customer,
    record_message,
    run_target,
    run_target_lines,
    schema_message,
    state_message,
)

SCHEMA = json.dumps(schema_message())


def record_line(record: object) -> str:
    return json.dumps(record_message(record))  # type: ignore[arg-type]


def raw_record(body: str) -> str:
    """A RECORD line whose record is ``body`` verbatim (NaN, Infinity... are not JSON)."""
    return '{"type": "RECORD", "stream": "customers", "record": ' + body + "}"


def strict_json(line: str) -> dict:
    """Parse a dead-letter line as JSON proper (no NaN/Infinity)."""
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON: {line[:200]}")
    return json.loads(line, parse_constant=refuse)


def assert_no_traceback(run) -> None:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]


def posts(sandbox) -> int:
    return sandbox.stats()["by_method"].get("POST", 0)


# -- item 3: NaN and Infinity ----------------------------------------------------------------

def test_nan_and_infinity_are_rejected_before_any_request(sandbox, tmp_path):
    seeded = sandbox.customers()[0]
    lines = [
        SCHEMA,
        raw_record('{"name": "NaN SpA", "tax_id": "71.001.000-K", "metadata": {"x": NaN}}'),
        raw_record('{"name": "Inf SpA", "tax_id": "71.002.000-K", '
                   '"metadata": {"deep": [1, {"y": [Infinity]}]}}'),
        raw_record('{"name": "-Inf SpA", "tax_id": "71.003.000-K", "metadata": {"z": -Infinity}}'),
        raw_record('{"name": "Huge SpA", "tax_id": "71.004.000-K", "metadata": {"h": 1e400}}'),
        raw_record('{"id": "' + seeded["id"] + '", "metadata": {"x": NaN}}'),  # a PATCH
        record_line(new_customer(1)),
        json.dumps(state_message({"done": 1})),
    ]
    run = run_target_lines(sandbox, tmp_path, lines, match_field="tax_id", max_rejects=5)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_no_traceback(run)
    assert (run.count("created"), run.count("updated"), run.count("rejected")) == (1, 0, 5)
    stats = sandbox.stats()
    assert posts(sandbox) == 1 and "PATCH" not in stats["by_method"], stats
    assert run.states == [{"done": 1}]

    letters = [strict_json(line) for line in run.dead_letter_path.read_text().splitlines()]
    by_name = {letter["record"].get("name"): letter for letter in letters}
    assert {letter["reason"] for letter in letters} == {"invalid"}
    assert "metadata.x" in by_name["NaN SpA"]["message"] and \
        "NaN" in by_name["NaN SpA"]["message"]
    assert "metadata.deep.1.y.0" in by_name["Inf SpA"]["message"]
    assert "-Infinity" in by_name["-Inf SpA"]["message"]
    assert "metadata.h" in by_name["Huge SpA"]["message"]
    assert by_name[None]["key"] == {"field": "id", "value": seeded["id"]}
    # The record as received, the numbers JSON cannot hold spelled as strings.
    assert by_name["NaN SpA"]["record"]["metadata"] == {"x": "NaN"}
    assert by_name["Inf SpA"]["record"]["metadata"] == {"deep": [1, {"y": ["Infinity"]}]}


def test_fractional_numbers_in_metadata_are_loaded(sandbox, tmp_path):
    # The SDK reads JSON numbers with a fraction as Decimal, which json cannot encode: the
    # POST crashed the run. They are sent as JSON numbers, and a re-run writes nothing.
    record = new_customer(1, metadata={"ratio": 1.5, "tiny": 1e-7, "big": 12345678901234567890})
    messages = [schema_message(), record_message(record), state_message({"n": 1})]
    run = run_target(sandbox, tmp_path, messages, match_field="tax_id")
    assert run.returncode == 0, run.stderr[-3000:]
    assert by_field(sandbox, "tax_id")[record["tax_id"]]["metadata"] == record["metadata"]
    again = run_target(sandbox, tmp_path, messages, match_field="tax_id")
    assert again.returncode == 0 and again.count("unchanged") == 1, again.stderr[-3000:]


# -- item 4: bytes that are not UTF-8 ----------------------------------------------------------

@pytest.mark.parametrize("source", ["stdin", "strict_stdin", "latin1_stdin", "input_file"])
def test_bytes_that_are_not_utf8_are_dead_lettered_readably(sandbox, tmp_path, source):
    env = dict(os.environ)
    if source == "strict_stdin":  # as under a UTF-8 locale: stdin refuses bad bytes
        env["PYTHONIOENCODING"] = "utf-8:strict"
    if source == "latin1_stdin":  # as under a Latin-1 locale: UTF-8 would read as mojibake
        env["PYTHONIOENCODING"] = "latin-1"
    latin1 = b'{"type":"RECORD","stream":"customers","record":' \
             b'{"name":"Caf\xe9 \xff","tax_id":"71.001.000-K"}}'
    lines: list[str | bytes] = [
        SCHEMA,
        latin1,
        raw_record(r'{"name": "lone \ud800 surrogate", "tax_id": "71.002.000-K"}'),
        # No key: refused for that, its bad bytes only in an attribute never sent.
        b'{"type":"RECORD","stream":"customers","record":{"note":"\xfe\xff"}}',
        # JSON lets NEL and U+2028 stand in a string; splitlines() would cut the line.
        record_line({"note": "a\x85b\u2028c\u2029"}),
        record_line(new_customer(1, name="Caf\u00e9 \u200f\u05d0 SpA")),  # fine unicode
        json.dumps(state_message({"done": 1})),
    ]
    run = run_target_lines(sandbox, tmp_path, lines, env=env, match_field="tax_id",
                           max_rejects=4, input_file=source == "input_file")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_no_traceback(run)
    assert (run.count("created"), run.count("rejected")) == (1, 4)
    assert posts(sandbox) == 1
    assert run.states == [{"done": 1}]

    text = run.dead_letter_path.read_bytes().decode("utf-8")  # the file is UTF-8 proper
    letters = [strict_json(line) for line in text.splitlines()]
    assert len(letters) == 4
    latin, lone, keyless, breaks = letters
    assert latin["reason"] == "invalid" and "UTF-8" in latin["message"]
    assert "name" in latin["message"]
    # Preserved: each undecodable byte is the escape \udcXX (Python's surrogateescape).
    assert latin["record"]["name"].encode("utf-8", "surrogateescape") == b"Caf\xe9 \xff"
    assert lone["reason"] == "invalid" and "surrogate" in lone["message"]
    assert lone["record"]["name"] == "lone \ud800 surrogate"
    assert keyless["reason"] == "missing_key"
    assert keyless["record"]["note"].encode("utf-8", "surrogateescape") == b"\xfe\xff"
    assert breaks["record"]["note"] == "a\x85b\u2028c\u2029"
    assert by_field(sandbox, "tax_id")[new_customer(1)["tax_id"]]["name"] == \
        "Caf\u00e9 \u200f\u05d0 SpA"


# -- item 5: records that are not objects, RECORDs missing keys, unknown types ---------------

def test_records_that_are_not_objects_are_rejected_and_the_load_goes_on(sandbox, tmp_path):
    lines = [
        SCHEMA,
        record_line([1]),
        record_line("x"),
        record_line(None),
        record_line(5),
        '{"type": "RECORD", "stream": "customers"}',                     # no record
        '{"type": "RECORD", "record": {"name": "No stream"}}',           # no stream
        '{"type": "RECORD", "stream": 5, "record": {"name": "Odd"}}',    # stream not a name
        '{"type": "FUTURE_MESSAGE", "stream": "customers"}',             # skipped, warned
        record_line(new_customer(1)),
        json.dumps(state_message({"done": 1})),
    ]
    run = run_target_lines(sandbox, tmp_path, lines, match_field="tax_id", max_rejects=7)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_no_traceback(run)
    assert (run.count("records"), run.count("created"), run.count("rejected")) == (8, 1, 7)
    assert run.states == [{"done": 1}]
    letters = run.rejects
    assert [letter["reason"] for letter in letters] == ["invalid"] * 7
    assert [letter["record"] for letter in letters[:4]] == [[1], "x", None, 5]
    assert letters[0]["message"] == "line 2: the record is an array, not an object"
    assert "no 'record'" in letters[4]["message"]
    assert letters[5]["record"] == {"name": "No stream"} and "'stream'" in letters[5]["message"]
    assert "FUTURE_MESSAGE" in run.stderr and "line 9" in run.stderr


def test_default_max_rejects_fails_a_run_with_a_record_that_is_not_an_object(sandbox, tmp_path):
    lines = [SCHEMA, record_line([1]), record_line(new_customer(1)),
             json.dumps(state_message({"done": 1}))]
    run = run_target_lines(sandbox, tmp_path, lines, match_field="tax_id")
    assert run.returncode == 1
    assert_no_traceback(run)
    assert "1 record(s) rejected" in run.stderr and run.count("created") == 1


def test_a_record_nested_too_deeply_is_rejected_and_kept_whole(sandbox, tmp_path):
    # Nested 900 levels (JSON parses it): preparing the payload recursed past Python's
    # limit and the run died with RecursionError; writing its dead letter would too.
    deep = "[" * 900 + "]" * 900
    lines = [SCHEMA, raw_record('{"name": "Deep SpA", "tax_id": "71.001.000-K", '
                                '"metadata": {"x": ' + deep + "}}"),
             record_line(new_customer(1)), json.dumps(state_message({"done": 1}))]
    run = run_target_lines(sandbox, tmp_path, lines, match_field="tax_id", max_rejects=1)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_no_traceback(run)
    assert (run.count("created"), run.count("rejected")) == (1, 1)
    [letter] = run.rejects
    assert letter["reason"] == "invalid" and "nested more than 64 levels" in letter["message"]
    assert json.dumps(letter["record"]["metadata"]["x"]).replace(" ", "") == deep


# -- item 6: lines that are not Singer messages -----------------------------------------------

def test_a_line_that_is_not_json_stops_the_run_after_the_writes_in_flight(sandbox, tmp_path):
    sandbox.set_faults(latency_ms=300)
    customers = [record_line(new_customer(n)) for n in range(1, 7)]
    lines = [SCHEMA, *customers[:2], json.dumps(state_message({"n": 2})), *customers[2:],
             '{"type": "RECORD", "stream": "customers", "record": {"name": "cut off' + "x" * 10000,
             record_line(new_customer(7))]
    run = run_target_lines(sandbox, tmp_path, lines, match_field="tax_id", batch_size_rows=2)
    assert run.returncode == 1
    assert_no_traceback(run)
    assert "line 9 is not JSON" in run.stderr
    assert "x" * 500 not in run.stderr  # the line is quoted, not repeated whole
    # Records 5 and 6 were being written when line 9 came: finished, then the summary.
    assert run.count("created") == 6 and "(run failed)" in run.stderr
    assert len(sandbox.customers()) == 250 + 6
    assert run.states == [{"n": 2}]  # written before records 3-6; nothing later


@pytest.mark.parametrize(("line", "phrase"), [
    ("[1, 2]", "line 3 is not a Singer message"),
    ('{"stream": "customers"}', "line 3 is not a Singer message"),
    ('{"type": ["RECORD"]}', "line 3 is not a Singer message"),
    ('{"type": "STATE"}', "line 3: a STATE message without 'value'"),
    ('{"type": "SCHEMA", "stream": "customers"}', "line 3: a SCHEMA message without 'schema'"),
    ('{"type": "RECORD", "stream": "orders", "record": {}}',
     "line 3: a RECORD for stream 'orders' before its SCHEMA"),
    ("", "line 3 is not JSON"),
    ("[" * 5000 + "]" * 5000, "line 3 is not JSON this reader can read (nested too deeply)"),
])
def test_a_line_that_is_not_a_singer_message_is_a_clear_error(sandbox, tmp_path, line, phrase):
    lines = [SCHEMA, record_line(new_customer(1)), line, record_line(new_customer(2))]
    run = run_target_lines(sandbox, tmp_path, lines, match_field="tax_id")
    assert run.returncode == 1
    assert_no_traceback(run)
    assert phrase in run.stderr, run.stderr[-3000:]
    assert "summary" in run.stderr and run.states == []


# -- item 14: a dead-letter file that cannot be written -----------------------------------------

def unwritable(tmp_path: Path, kind: str) -> tuple[str, str]:
    if kind == "directory":
        return str(tmp_path), "Is a directory"
    if kind == "under_a_file":
        (tmp_path / "file").write_text("")
        return str(tmp_path / "file" / "rejects.jsonl"), "Not a directory"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if not os.access(locked, os.W_OK):
        return str(locked / "rejects.jsonl"), "Permission denied"
    # As root, permissions do not stop a write; sysfs does (a read-only file system).
    try:
        Path("/sys/target-piriod-rejects.jsonl").open("ab").close()
    except OSError as error:
        return "/sys/target-piriod-rejects.jsonl", error.strerror
    pytest.skip("running as root, and /sys is writable: no read-only directory")


@pytest.mark.parametrize("kind", ["directory", "under_a_file", "read_only"])
def test_an_unwritable_dead_letter_path_fails_at_start_up(sandbox, tmp_path, kind):
    path, why = unwritable(tmp_path, kind)
    records = [new_customer(1), new_customer(2, email="bad")]
    messages = [schema_message(), *map(record_message, records), state_message({"n": 2})]
    run = run_target(sandbox, tmp_path, messages, match_field="tax_id", dead_letter_path=path)
    assert run.returncode == 1
    assert_no_traceback(run)
    assert path in run.stderr and why in run.stderr, run.stderr[-3000:]
    assert sandbox.stats()["requests"] == 0  # checked before anything was read or written
    assert run.states == []


def test_no_dead_letter_file_is_left_when_nothing_was_rejected(sandbox, tmp_path):
    messages = [schema_message(), record_message(new_customer(1)), state_message({"n": 1})]
    path = tmp_path / "sub" / "rejects.jsonl"
    run = run_target(sandbox, tmp_path, messages, match_field="tax_id",
                     dead_letter_path=str(path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert not path.exists()


def test_a_dead_letter_write_failure_stops_the_run_at_the_first_reject(sandbox, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    # /dev/full opens: the file fails at the first write (ENOSPC), batch 3's reject.
    records = [new_customer(n) for n in range(1, 5)] + [new_customer(5, email="bad"),
                                                        new_customer(6)]
    messages = [schema_message(), *map(record_message, records[:2]), state_message({"n": 2}),
                *map(record_message, records[2:]), state_message({"n": 6})]
    run = run_target(sandbox, tmp_path, messages, match_field="tax_id",
                     dead_letter_path="/dev/full", max_rejects=10, batch_size_rows=2)
    assert run.returncode == 1
    assert_no_traceback(run)
    assert "/dev/full" in run.stderr and "No space left on device" in run.stderr
    assert "(run failed)" in run.stderr and run.count("rejected") == 1
    assert run.states == [{"n": 2}]  # passed on with batch 2; none past the lost reject


# -- item 18: values of megabytes ----------------------------------------------------------------

def test_a_huge_value_is_kept_once_in_the_dead_letter_and_cut_in_messages(sandbox, tmp_path):
    huge = "N" * 5_000_000
    records = [new_customer(1, name=huge), new_customer(2, tax_id="T" * 1_000_000),
               new_customer(3)]
    messages = [schema_message(), *map(record_message, records), state_message({"n": 3})]
    run = run_target(sandbox, tmp_path, messages, match_field="tax_id", max_rejects=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.count("rejected") == 2 and run.count("created") == 1
    assert max(len(line) for line in run.stderr.splitlines()) < 2000
    lines = run.dead_letter_path.read_text().splitlines()
    assert len(lines[0]) < 5_000_000 + 5000 and len(lines[1]) < 1_000_000 + 5000
    named, keyed = (json.loads(line) for line in lines)
    assert named["record"]["name"] == huge  # the record whole, once
    assert len(named["message"]) < 1000 and len(json.dumps(named["error"])) < 1000
    assert keyed["record"]["tax_id"] == "T" * 1_000_000
    assert len(keyed["key"]["value"]) < 1000 and len(keyed["message"]) < 1000


def test_a_huge_id_is_not_repeated_whole_in_the_error(sandbox, tmp_path):
    # GET /customers/<200 KB>/ is answered 414 (piriod/client.py sends it; it could call
    # such an id no customer's, as it does ".."): the run stops, its message abridged.
    records = [{"id": "I" * 200_000, "name": "Huge id"}, new_customer(1)]
    messages = [schema_message(), *map(record_message, records), state_message({"n": 2})]
    run = run_target(sandbox, tmp_path, messages, match_field="tax_id", max_rejects=1)
    assert_no_traceback(run)
    assert max(len(line) for line in run.stderr.splitlines()) < 2000
    if run.returncode:
        assert "answered 414" in run.stderr and "characters)" in run.stderr
    else:
        assert run.rejects[0]["reason"] == "not_found"
