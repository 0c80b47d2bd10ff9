"""BATCH mode: the tap's files hold RECORD mode's records, in the SDK's format and layout.

tap_piriod/batches.py replaces singer-sdk's ``JSONLinesBatcher`` (for speed and flat
memory). These tests hold it to the SDK's behaviour:

* a real tap process in BATCH mode writes BATCH messages and files that hold exactly the
  records RECORD mode sends, and leaves the same bookmark;
* on random records (hypothesis), its files match the SDK batcher's: same number of
  files, same lines (as JSON values), same names but for the run's uuid;
* the SDK's own batch reader (what target-postgres runs) reads them back;
* a file is announced after its last record and before the next is read, as the SDK's.
"""

from __future__ import annotations

import decimal
import gzip
import json
import re
import signal
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from singer_sdk.contrib.batch_encoder_jsonl import JSONLinesBatcher
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
from singer_sdk.sinks import BatchSink
from singer_sdk.target_base import Target
from tap_helpers import TAP, run_tap, tap_config, write_json

from piriod_sandbox import SandboxProcess
from tap_piriod import batches
from tap_piriod.batches import write_jsonl_batches

SANDBOX_CUSTOMERS = 250
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
BATCH_SIZE = 40


def batch_config(root: Path, size: int = BATCH_SIZE, prefix: str | None = None) -> dict:
    storage: dict = {"root": root.as_uri()}
    if prefix is not None:
        storage["prefix"] = prefix
    return {"encoding": {"format": "jsonl", "compression": "gzip"}, "storage": storage,
            "batch_size": size}


def read_lines(url: str) -> list[dict]:
    with gzip.open(url.removeprefix("file://"), "rt", encoding="utf-8") as lines:
        return [json.loads(line, parse_float=decimal.Decimal) for line in lines]


def test_batch_files_hold_the_records_of_record_mode(sandbox: SandboxProcess,
                                                     tmp_path: Path) -> None:
    sandbox.touch(ids=[sandbox.customers()[3]["id"]], changes={"name": "Ñandú Ltda — 株式会社"},
                  updated="2024-05-06T07:08:09.123456Z")
    records = run_tap(sandbox, tmp_path)
    batched = run_tap(sandbox, tmp_path, batch_config=batch_config(tmp_path / "files"))
    assert records.returncode == 0 and batched.returncode == 0, batched.stderr[-2000:]

    types = [message["type"] for message in batched.messages]
    assert types[0] == "SCHEMA" and types[-1] == "STATE" and "RECORD" not in types
    batch_messages = [m for m in batched.messages if m["type"] == "BATCH"]
    assert len(batch_messages) == -(-SANDBOX_CUSTOMERS // BATCH_SIZE)  # 7 files
    for message in batch_messages:
        assert message["stream"] == "customers"
        assert message["encoding"] == {"format": "jsonl", "compression": "gzip"}
        assert len(message["manifest"]) == 1
        assert re.fullmatch(rf"file://.*/files/tap-piriod--customers-{UUID}-\d+\.json\.gz",
                            message["manifest"][0])

    lines = [read_lines(m["manifest"][0]) for m in batch_messages]
    assert [len(file) for file in lines] == [BATCH_SIZE] * 6 + [SANDBOX_CUSTOMERS % BATCH_SIZE]
    in_files = [record for file in lines for record in file]
    as_records = [json.loads(json.dumps(record), parse_float=decimal.Decimal)
                  for record in records.records]
    assert in_files == as_records  # same records, same order, same values
    assert batched.bookmark == records.bookmark


def test_the_sdk_batch_reader_reads_our_files(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """What target-postgres (and any SDK target) runs on a BATCH message gets our records."""
    run = run_tap(sandbox, tmp_path, batch_config=batch_config(tmp_path / "files"))
    loaded: list[dict] = []

    class Collect(BatchSink):
        def process_batch(self, context: dict) -> None:
            loaded.extend(context["records"])

    class CollectingTarget(Target):
        name = "collect"
        default_sink_class = Collect

    target = CollectingTarget(config={})
    sink = Collect(target, "customers", run.schema, ["id"])
    for message in run.messages:
        if message["type"] == "BATCH":
            sink.process_batch_files(BaseBatchFileEncoding.from_dict(message["encoding"]),
                                     message["manifest"])
    assert len(loaded) == SANDBOX_CUSTOMERS
    assert sorted(record["id"] for record in loaded) == sorted(c["id"] for c in sandbox.customers())
    assert loaded[0]["aggregations"]["balance"] is not None


# -- against the SDK's batcher, on random records ------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.text(max_size=6), st.floats(allow_nan=True, allow_infinity=True),
                    st.decimals(allow_nan=False, allow_infinity=False, places=3))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)
record_lists = st.lists(st.dictionaries(st.text(max_size=5), values, max_size=5), max_size=9)


def _files(root: Path, manifests: list[list[str]]) -> tuple[list[str], list[list[object]]]:
    names, contents = [], []
    for manifest in manifests:
        assert len(manifest) == 1
        url = manifest[0]
        assert url.startswith(root.as_uri() + "/")
        names.append(re.sub(UUID, "<uuid>", url.rsplit("/", 1)[1]))
        with gzip.open(url.removeprefix("file://"), "rt", encoding="utf-8") as lines:
            contents.append([json.loads(line, parse_float=decimal.Decimal) for line in lines])
    return names, contents


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=record_lists, size=st.integers(min_value=1, max_value=4),
       prefix=st.sampled_from([None, "", "run-"]))
def test_our_files_are_the_sdk_batchers_files(tmp_path_factory, rows: list[dict], size: int,
                                              prefix: str | None) -> None:
    root = tmp_path_factory.mktemp("batches")
    config = BatchConfig.from_dict(batch_config(root, size, prefix))
    sdk = list(JSONLinesBatcher("tap-piriod", "customers", config).get_batches(iter(rows)))
    ours = list(write_jsonl_batches(iter(rows), config, "tap-piriod", "customers"))
    assert _files(root, ours) == _files(root, sdk)
    assert len(ours) == -(-len(rows) // size)  # no empty file, none missing


def test_a_file_is_announced_after_its_last_record_before_the_next_is_read(
        tmp_path: Path) -> None:
    """As the SDK's lazy_chunked_generator: the BATCH (and its STATE) covers what was read."""
    pulled: list[int] = []

    def records():
        for number in range(7):
            pulled.append(number)
            yield {"id": number}

    config = BatchConfig.from_dict(batch_config(tmp_path, size=3))
    manifests = write_jsonl_batches(records(), config, "tap-piriod", "customers")
    next(manifests)
    assert pulled == [0, 1, 2]
    next(manifests)
    assert pulled == [0, 1, 2, 3, 4, 5]
    assert [read_lines(m[0]) for m in manifests] == [[{"id": 6}]]


def test_lines_are_compressed_as_they_come_not_at_the_end(tmp_path: Path,
                                                          monkeypatch) -> None:
    """Memory stays flat: no more than FLUSH_BYTES of lines wait for the compressor."""
    monkeypatch.setattr(batches, "FLUSH_BYTES", 1000)
    writes: list[int] = []
    real_write = gzip.GzipFile.write

    def counting_write(self, data):
        writes.append(len(data))
        return real_write(self, data)

    monkeypatch.setattr(gzip.GzipFile, "write", counting_write)
    config = BatchConfig.from_dict(batch_config(tmp_path, size=500))
    rows = [{"id": number, "name": "x" * 90} for number in range(500)]
    [manifest] = list(write_jsonl_batches(iter(rows), config, "tap-piriod", "customers"))
    line = max(len(json.dumps(row, separators=(",", ":"))) + 1 for row in rows)
    assert len(writes) > 40 and max(writes) < 1000 + line
    assert read_lines(manifest[0]) == rows


def test_other_formats_go_to_the_sdk(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """Only the SDK's own JSONL batcher is replaced: parquet runs the SDK's ParquetBatcher.

    (Which needs pyarrow, not installed here: the SDK's error proves the SDK's code ran;
    ours would have written JSONL.)
    """
    config = batch_config(tmp_path / "files")
    config["encoding"]["format"] = "parquet"
    run = run_tap(sandbox, tmp_path, batch_config=config)
    assert run.returncode != 0
    assert "pyarrow" in run.stderr
    assert not list((tmp_path / "files").glob("*.json.gz"))


def test_a_full_read_in_batch_mode_activates_no_version(sandbox: SandboxProcess,
                                                        tmp_path: Path) -> None:
    """BATCH records carry no table version: ACTIVATE_VERSION would retire every row.

    (target-postgres marks deleted every row whose version is older or missing.) So in
    BATCH mode the tap reads everything, says why, and activates nothing; the reconcile
    job runs in RECORD mode (tests/test_tap_converge.py covers that order).
    """
    from test_tap_converge import full_table_catalog
    from test_tap_incremental import first_catalog

    catalog = full_table_catalog(first_catalog(sandbox, tmp_path))
    run = run_tap(sandbox, tmp_path, catalog=catalog,
                  batch_config=batch_config(tmp_path / "files"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ACTIVATE_VERSION" not in {message["type"] for message in run.messages}
    assert "Not sending ACTIVATE_VERSION: this full read was written as BATCH files" \
        in run.stderr
    files = [m["manifest"][0] for m in run.messages if m["type"] == "BATCH"]
    assert sum(len(read_lines(url)) for url in files) == SANDBOX_CUSTOMERS


def test_a_signal_in_batch_mode_announces_only_whole_files(sandbox: SandboxProcess,
                                                           tmp_path: Path) -> None:
    """SIGTERM mid-run: the BATCH messages sent name whole files; no bookmark moves.

    Page 3 takes 8 s, so the signal (sent once the first BATCH is out) lands before the
    read can end; wherever it lands, a file is only announced once it holds batch_size
    records, and the file being filled when the tap stops is never announced.
    """
    sandbox.set_faults(slow_ms=8000, script=[{"nth": 3, "fault": "slow"}])
    config = write_json(tmp_path, "config.json", tap_config(
        sandbox, page_size=20, max_workers=1,
        batch_config=batch_config(tmp_path / "files", size=30)))
    process = subprocess.Popen([*TAP, "--config", config], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    lines = []
    while not any(b'"type":"BATCH"' in line for line in lines):
        line = process.stdout.readline()
        assert line, process.stderr.read().decode()[-2000:]
        lines.append(line)
    process.send_signal(signal.SIGTERM)
    lines += process.stdout.read().splitlines()
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    assert process.returncode == 143, stderr[-2000:]
    messages = [json.loads(line) for line in lines]  # every line whole
    announced = [m["manifest"][0] for m in messages if m["type"] == "BATCH"]
    files = [read_lines(url) for url in announced]
    assert files and all(len(rows) == 30 for rows in files)
    ids = [row["id"] for rows in files for row in rows]
    assert len(set(ids)) == len(ids) < SANDBOX_CUSTOMERS
    on_disk = {path.as_uri() for path in (tmp_path / "files").glob("*.json.gz")}
    assert set(announced) <= on_disk and len(on_disk - set(announced)) <= 1
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert states and all("replication_key_value" not in state["bookmarks"]["customers"]
                          for state in states)  # progress markers only: no bookmark
