"""``tap-piriod | target-piriod`` against one sandbox: a real pipe between two processes."""

from __future__ import annotations

import json
import subprocess
import sys

from target_helpers import TARGET, run_target, target_config, write_config


def tap_command(sandbox, tmp_path) -> list[str]:
    config = tmp_path / "tap-config.json"
    config.write_text(json.dumps({"auth_token": sandbox.token, "api_url": sandbox.url}))
    return [sys.executable, "-m", "tap_piriod", "--config", str(config)]


def pipe(sandbox, tmp_path, **target_settings: object) -> tuple[int, int, str]:
    """Run tap | target; return both exit codes and the target's stderr."""
    config = write_config(tmp_path, target_config(sandbox, tmp_path, **target_settings))
    tap = subprocess.Popen(tap_command(sandbox, tmp_path), stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    target = subprocess.run([*TARGET, "--config", str(config)], stdin=tap.stdout,
                            capture_output=True, text=True, timeout=120, check=False)
    tap.stdout.close()
    return tap.wait(timeout=60), target.returncode, target.stderr


def test_tap_into_target_makes_zero_writes(sandbox, tmp_path):
    tap_code, target_code, stderr = pipe(sandbox, tmp_path)
    assert (tap_code, target_code) == (0, 0), stderr[-3000:]
    assert "unchanged=250" in stderr
    stats = sandbox.stats()
    assert stats["writes"] == 0 and set(stats["by_method"]) == {"GET"}


def test_tap_into_target_matching_by_tax_id_makes_zero_writes(sandbox, tmp_path):
    tap_code, target_code, stderr = pipe(sandbox, tmp_path, match_field="tax_id",
                                         max_workers=8)
    assert (tap_code, target_code) == (0, 0), stderr[-3000:]
    assert sandbox.stats()["writes"] == 0


def test_edited_tap_output_patches_only_the_edited_customers(sandbox, tmp_path):
    """Extract, edit three records as a warehouse model would, load back: three patches."""
    done = subprocess.run(tap_command(sandbox, tmp_path), capture_output=True, text=True,
                          timeout=120, check=True)
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    records = [m for m in messages if m["type"] == "RECORD"]
    records[0]["record"]["phone"] = "+56 2 0000 0001"
    records[1]["record"]["country"] = {"id": "PE", "name": "Perú"}
    records[1]["record"]["state"] = None
    records[2]["record"]["metadata"] = {**records[2]["record"]["metadata"], "tier": "gold"}
    sandbox.reset_stats()
    run = run_target(sandbox, tmp_path, messages)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (run.count("updated"), run.count("unchanged")) == (3, 247)
    assert sandbox.stats()["by_method"].get("PATCH") == 3
    after = {c["id"]: c for c in sandbox.customers()}
    assert after[records[1]["record"]["id"]]["country"]["id"] == "PE"
    assert after[records[2]["record"]["id"]]["metadata"]["tier"] == "gold"
