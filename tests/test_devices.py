"""`rnnedge devices` and the library behind it: tables, plots, --check and predictions."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml

from rnnedge.cli import main
from rnnedge.export import export_checkpoint
from rnnedge.profiling.catalog import catalog_names, read_profile
from rnnedge.profiling.compare import check_regression
from rnnedge.profiling.predict import Architecture, Sample, fit, held_out_errors, work_terms
from tests.conftest import make_checkpoint

FAST = ["--runs", "30", "--warmup", "2", "--provider", "cpu", "--threads", "1", "--operators", "0"]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def swept(capsys, exported, tmp_path):
    """A devices folder with an LSTM measured at three sequence lengths."""
    devices = tmp_path / "devices"
    code, _, err = run_cli(
        capsys,
        "profile",
        exported["lstm"],
        "--device",
        "x86-64",
        "--sweep",
        "seq-len=1,10,40",
        "--devices-dir",
        devices,
        *FAST,
    )
    assert code == 0, err
    return devices


def test_sweep_progress_on_stderr(capsys, exported, tmp_path):
    code, out, err = run_cli(
        capsys,
        "profile",
        exported["gru"],
        "--device",
        "x86-64",
        "--sweep",
        "seq-len=1,5",
        "--sweep",
        "batch=1,2",
        "--devices-dir",
        tmp_path,
        "--json",
        *FAST,
    )
    assert code == 0, err
    documents = json.loads(out)
    assert [(d["batch"], d["seq_len"]) for d in documents] == [(1, 1), (1, 5), (2, 1), (2, 5)]
    assert "4/4" in err
    assert len(read_profile(tmp_path / "x86-64.yaml").measurements) == 4


def test_list_counts_measurements(capsys, swept):
    code, out, _ = run_cli(capsys, "devices", "list", "--devices-dir", swept, "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    assert sorted(rows) == catalog_names()
    assert rows["x86-64"]["measurements"] == 3
    assert rows["x86-64"]["source"] == "user"
    assert rows["raspberry-pi-4"]["source"] == "catalog"


def test_show_and_compare_tables(capsys, swept):
    code, out, _ = run_cli(capsys, "devices", "show", "x86-64", "--devices-dir", swept)
    assert code == 0
    assert "3 measurements, 3 configurations" in out
    code, out, _ = run_cli(capsys, "devices", "compare", "--devices-dir", swept, "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["seq_len"] for r in rows] == [1, 10, 40]
    assert all(r["device"] == "x86-64" and r["p50_ms"] > 0 for r in rows)


def test_show_unknown_device(capsys, tmp_path):
    code, _, err = run_cli(capsys, "devices", "show", "pi9", "--devices-dir", tmp_path)
    assert code == 2
    assert "unknown device 'pi9'" in err


def test_plot_writes_png(capsys, swept, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    output = tmp_path / "latency.png"
    code, _, err = run_cli(capsys, "devices", "plot", "--devices-dir", swept, "-o", output)
    assert code == 0, err
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_measurements(capsys, tmp_path):
    output = tmp_path / "latency.png"
    code, _, err = run_cli(capsys, "devices", "plot", "--devices-dir", tmp_path, "-o", output)
    assert code == 2
    assert "no measurements at batch 1" in err
    assert not output.exists()


def test_check_passes_then_fails(capsys, exported, swept):
    args = [
        "profile",
        exported["lstm"],
        "--device",
        "x86-64",
        "--seq-len",
        "10",
        "--check",
        "--tolerance",
        "1.0",
        "--devices-dir",
        swept,
        *FAST,
    ]
    # A 100% tolerance: a re-measurement on a shared machine stays within it.
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert out.startswith("ok:")
    path = swept / "x86-64.yaml"
    before = yaml.safe_load(path.read_text())
    for entry in before["measurements"]:
        if entry["seq_len"] == 10:  # pretend the baseline was 20 times faster
            for key in ("p50_ms", "p50_ci_low_ms", "p50_ci_high_ms"):
                entry["latency_ms"][key] /= 20
    path.write_text(yaml.safe_dump(before, sort_keys=False))
    code, out, err = run_cli(capsys, *args)
    assert code == 3
    assert out.startswith("REGRESSED:")
    assert "latency regressed in 1 of 1" in err
    assert yaml.safe_load(path.read_text()) == before  # --check stores nothing


def test_check_other_model_hash(capsys, exported, swept, tmp_path):
    other = tmp_path / "lstm.onnx"  # same file name, another model
    export_checkpoint(make_checkpoint(tmp_path / "other.pt", hidden_size=8), other)
    code, _, err = run_cli(
        capsys,
        "profile",
        other,
        "--device",
        "x86-64",
        "--seq-len",
        "10",
        "--check",
        "--devices-dir",
        swept,
        *FAST,
    )
    assert code == 2
    assert "only from a different model" in err


def test_check_unmeasured_configuration(capsys, exported, swept):
    code, _, err = run_cli(
        capsys,
        "profile",
        exported["lstm"],
        "--device",
        "x86-64",
        "--seq-len",
        "77",
        "--check",
        "--devices-dir",
        swept,
        *FAST,
    )
    assert code == 2
    assert "no measurement of lstm.onnx" in err


def _entry(p50: float, low: float, high: float) -> dict:
    return {"latency_ms": {"p50_ms": p50, "p50_ci_low_ms": low, "p50_ci_high_ms": high}}


@pytest.mark.parametrize(
    ("new", "baseline", "regressed"),
    [
        pytest.param(_entry(1.05, 1.0, 1.1), [_entry(1.0, 0.98, 1.02)], False, id="within-tol"),
        pytest.param(_entry(1.2, 1.19, 1.21), [_entry(1.0, 0.99, 1.01)], True, id="beyond-tol"),
        # +20%, but each median is only known to +-15%: within the noise.
        pytest.param(_entry(1.2, 1.02, 1.38), [_entry(1.0, 0.85, 1.15)], False, id="noisy"),
        # run-to-run drift of the stored p50s widens the threshold.
        pytest.param(
            _entry(1.15, 1.15, 1.15),
            [_entry(v, v, v) for v in (0.9, 1.0, 1.1)],
            False,
            id="drift",
        ),
    ],
)
def test_regression_threshold(new, baseline, regressed):
    assert check_regression(new, baseline, tolerance=0.10).regressed is regressed


ARCHITECTURES = [
    Architecture(cell, 12, hidden, layers, bidirectional)
    for cell in ("lstm",)
    for hidden in (16, 64, 128)
    for layers in (1, 2)
    for bidirectional in (False, True)
]


def test_fit_recovers_linear_law():
    truth = np.array([0.02, 0.003, 1e-5, 0.8, 0.05])
    rng = np.random.default_rng(0)
    samples = [
        Sample(
            arch,
            batch,
            seq_len,
            float(work_terms(arch, batch, seq_len) @ truth) * rng.uniform(0.97, 1.03),
        )
        for arch in ARCHITECTURES
        for batch in (1, 4)
        for seq_len in (1, 20, 100)
    ]
    coefficients = fit(samples)
    assert (coefficients >= 0).all()
    errors = [abs(e) for e in held_out_errors(samples)]
    # 3% multiplicative noise: a correct fit predicts held-out points within about that.
    assert max(errors) < 0.08
    assert coefficients[3] == pytest.approx(truth[3], rel=0.1)


def test_predict_from_measurements(capsys, exported, tmp_path):
    devices = tmp_path / "devices"
    models = [exported["lstm"]]
    for hidden, layers in ((8, 1), (24, 1)):
        path = tmp_path / f"lstm-h{hidden}.onnx"
        export_checkpoint(
            make_checkpoint(tmp_path / f"h{hidden}.pt", hidden_size=hidden, num_layers=layers), path
        )
        models.append(path)
    code, _, err = run_cli(
        capsys,
        "profile",
        *models,
        "--device",
        "x86-64",
        "--sweep",
        "seq-len=1,20,60",
        "--devices-dir",
        devices,
        *FAST,
    )
    assert code == 0, err
    code, out, err = run_cli(
        capsys,
        "devices",
        "predict",
        "x86-64",
        "--cell",
        "lstm",
        "--hidden-size",
        "16",
        "--features",
        "6",
        "--layers",
        "2",
        "--seq-len",
        "30",
        "--devices-dir",
        devices,
        "--json",
    )
    assert code == 0, err
    prediction = json.loads(out)
    assert prediction["p50_ms"] > 0
    assert prediction["architectures"] == 3
    assert prediction["samples"] == 9
    assert math.isfinite(prediction["held_out_median_abs_error"])


def test_predict_without_reference(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "devices",
        "predict",
        "x86-64",
        "--cell",
        "gru",
        "--hidden-size",
        "16",
        "--features",
        "6",
        "--devices-dir",
        tmp_path,
    )
    assert code == 2
    assert "no fp32 gru measurements" in err


def test_plot_requires_png(capsys, swept, tmp_path):
    output = tmp_path / "p.txt"
    code, out, err = run_cli(capsys, "devices", "plot", "--devices-dir", swept, "-o", output)
    assert code == 2
    assert (
        err.strip()
        == f"error: plot output {str(output)!r} must end in .png; the plot is a PNG image"
    )
    assert out == ""
    assert not output.exists()


def test_list_hides_lock_files(capsys, swept):
    assert (swept / ".x86-64.yaml.lock").is_file()  # the lock stays for the next writer
    code, out, _ = run_cli(capsys, "devices", "list", "--devices-dir", swept)
    assert code == 0
    assert ".lock" not in out
    assert [line.split()[0] for line in out.splitlines()[2:]] == catalog_names()


def _default_sigint() -> None:
    # A shell that starts the tests in the background ignores SIGINT, and the child would
    # inherit that, so the child gets the default handler back before Python starts.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_sweep_prints_measured_points(exported, tmp_path):
    """Each point is printed when it is measured, so an interrupted sweep shows its results."""
    devices = tmp_path / "devices"
    lengths = ",".join(str(n) for n in range(1, 41))
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnedge", "profile", str(exported["lstm"]), "--device",
         "x86-64", "--sweep", f"seq-len={lengths}", "--budget-s", "0.3", "--runs", "100000",
         "--warmup", "0", "--operators", "0", "--provider", "cpu", "--devices-dir",
         str(devices)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    try:
        lines = []
        while not any(line.startswith("recorded in ") for line in lines):
            line = process.stdout.readline()
            assert line, "the sweep ended before printing a point"
            lines.append(line)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    out = "".join(lines) + out
    stored = len(read_profile(devices / "x86-64.yaml").measurements)
    printed = out.count("recorded in ")
    assert process.returncode == 130, err
    assert 1 <= printed <= stored < 40
    assert out.count("latency ms: p50 ") == printed
