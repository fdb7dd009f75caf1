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
    # Each row reports the measured p50 unrounded (the profile stores it to 1e-6 ms), so
    # the table and the progress line round the same value.
    stored = [m["latency_ms"]["p50_ms"] for m in profile["measurements"]]
    rows = [row["p50_ms"] for row in json.loads(result.stdout)["rows"]]
    assert rows == pytest.approx(stored, abs=1e-6, rel=0)


BLOCK_IMPORTS = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # any import of these now raises ImportError
from rnnedge.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("missing", ["sktime", "torch,onnx,sktime"], ids=["no-sktime", "runtime"])
def test_demo_names_demo_extra(tmp_path, missing):
    result = subprocess.run([sys.executable, "-c", BLOCK_IMPORTS, missing, "demo", "--runs", "5"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    assert "pip install 'rnnedge[demo]'" in lines[0]
    assert missing.replace(",", ", ") in lines[0]
    # The CPU build of torch is named first only where torch itself is missing.
    cpu_build = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert (cpu_build in lines[0]) is ("torch" in missing)
    if "torch" in missing:
        assert lines[0].index(cpu_build) < lines[0].index("rnnedge[demo]")
    assert list(tmp_path.iterdir()) == []


def _other_device() -> str:
    from rnnedge.profiling.catalog import catalog_names, host_matches, load_device

    return next(n for n in catalog_names() if not host_matches(load_device(n, "/nonexistent")))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--runs", "0"], "--runs must be at least 1, got 0", id="runs"),
        pytest.param(["--epochs", "0"], "--epochs must be at least 1, got 0", id="epochs"),
        pytest.param(["--device", "{other}"], "does not look like device", id="other-device"),
        pytest.param(["--devices-dir", "{catalog}"], "shipped device catalog", id="catalog"),
        pytest.param(["--output-dir", "out", "--runs", "-1"], "got -1", id="output-dir"),
    ],
)
def test_demo_checks_options_first(capsys, tmp_path, monkeypatch, args, message):
    from rnnedge.cli import main
    from rnnedge.profiling.catalog import catalog_dir

    monkeypatch.chdir(tmp_path)
    places = {"other": _other_device(), "catalog": str(catalog_dir())}
    code = main(["demo", *(a.format(**places) for a in args)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "loading BasicMotions" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("folder", ["default", "new", "existing"])
def test_early_failure_removes_demo_folder(tmp_path, monkeypatch, folder):
    """Interrupted in training, before any file is written: a folder it made is removed."""
    import rnnedge.demo.train
    from rnnedge.demo import run_demo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rnnedge.demo.train, "train_classifier", interrupted)
    monkeypatch.chdir(tmp_path)
    output_dir = {"default": None, "new": tmp_path / "new", "existing": tmp_path / "existing"}
    if folder == "existing":
        output_dir[folder].mkdir()
    with pytest.raises(KeyboardInterrupt):
        run_demo(output_dir=output_dir[folder], runs=5, user_dir=tmp_path / "devices")
    expected = ["existing"] if folder == "existing" else []
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
