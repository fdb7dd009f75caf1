"""Ctrl-C during `rnnedge profile --sweep`: the points measured so far are kept and reported."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

POINTS = 12


def _stored_count(devices) -> int:
    """Count the measurements in the one profile under `devices`, parsing it."""
    paths = list(devices.glob("*.yaml"))
    if not paths:
        return 0
    (path,) = paths
    return len(yaml.safe_load(path.read_text())["measurements"])


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_interrupted_sweep_reports_kept_points(exported, tmp_path, as_json):
    devices = tmp_path / "devices"
    command = shutil.which("rnnedge")
    argv = [command] if command else [sys.executable, "-m", "rnnedge"]

    lengths = ",".join(str(n) for n in range(1, POINTS + 1))
    # Each point times runs for half a second, so the sweep is still running after the
    # first point is stored, however fast the host.
    args = ["profile", str(exported["gru"]), "--sweep", f"seq-len={lengths}", "--runs",
            "100000000", "--budget-s", "0.5", "--warmup", "0", "--operators", "0",
            "--provider", "cpu", "--devices-dir", str(devices)]  # fmt: skip
    if as_json:
        args.append("--json")

    process = subprocess.Popen([*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path)  # fmt: skip
    try:
        while _stored_count(devices) == 0 and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()

    lines = err.strip().splitlines()
    stored = _stored_count(devices)  # also checks that the file still parses
    match = re.fullmatch(
        r"error: interrupted after (\d+) of (\d+) points; (that point is|those \d+ are) "
        r"stored in (.+)",
        lines[-1],
    )

    assert process.returncode == 130, err
    assert match, lines[-1]
    assert int(match.group(1)) == stored
    assert 1 <= stored < POINTS
    assert int(match.group(2)) == POINTS
    assert match.group(4) == str(next(devices.glob("*.yaml")))
    if as_json:
        documents = json.loads(out)  # one document: the list of the points measured
        assert [d["seq_len"] for d in documents] == list(range(1, stored + 1))
