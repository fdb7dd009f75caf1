"""The demo end to end on the real BasicMotions data, through the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

pytest.importorskip("sktime")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    command = shutil.which("rnnedge") or None
    argv = [command] if command else [sys.executable, "-m", "rnnedge"]
    result = subprocess.run([*argv, "demo", "--json", "--runs", "50"], cwd=workdir,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    return workdir, result


def test_demo_exit_and_json_only(demo_run):
    _, result = demo_run
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # stdout holds nothing but the document
    assert set(document) == {"device", "rows"}


def test_demo_rows(demo_run):
    rows = json.loads(demo_run[1].stdout)["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [
        ("lstm", "fp32"), ("lstm", "int8"), ("lstm", "fp16"),
        ("gru", "fp32"), ("gru", "int8"), ("gru", "fp16"),
    ]  # fmt: skip
    for row in rows:
        assert set(row) == {"model", "precision", "accuracy", "size_bytes", "p50_ms", "p99_ms"}
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["size_bytes"] > 0


def test_demo_accuracy_targets(demo_run):
    rows = {(r["model"], r["precision"]): r for r in json.loads(demo_run[1].stdout)["rows"]}
    for cell in ("lstm", "gru"):
        float_accuracy = rows[(cell, "fp32")]["accuracy"]
        assert float_accuracy >= 0.9, cell
        assert abs(rows[(cell, "int8")]["accuracy"] - float_accuracy) <= 0.02, cell
    assert rows[("lstm", "int8")]["size_bytes"] < rows[("lstm", "fp32")]["size_bytes"] / 2


def test_demo_writes_artifacts_and_profile(demo_run):
    workdir, result = demo_run
    folders = [p for p in workdir.iterdir() if p.name.startswith("rnnedge-demo-")]
    assert len(folders) == 1
    names = sorted(p.name for p in folders[0].iterdir())
    for cell in ("lstm", "gru"):
        for suffix in (".pt", ".onnx", ".int8.onnx", ".fp16.onnx"):
            assert f"{cell}{suffix}" in names
    device = json.loads(result.stdout)["device"]
    profile = yaml.safe_load((workdir / "devices" / f"{device}.yaml").read_text())
    assert len(profile["measurements"]) == 6
    assert {m["precision"] for m in profile["measurements"]} == {"fp32", "int8", "fp16"}
