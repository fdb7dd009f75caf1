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
from rnnedge.errors import InputError
from rnnedge.export import export_checkpoint
from rnnedge.host import cpu_info
from rnnedge.profiling.catalog import DeviceProfile, catalog_names, read_profile
from rnnedge.profiling.compare import check_regression
from rnnedge.profiling.plot import latency_series
from rnnedge.profiling.predict import (
    TERMS,
    Architecture,
    Sample,
    fit,
    group_samples,
    held_out_errors,
    predict_from,
    work_terms,
)
from rnnedge.profiling.profile import file_sha256
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


def test_show_and_compare_mark_host_mismatch(capsys, exported, swept):
    code, _, err = run_cli(
        capsys, "profile", exported["lstm"], "--device", "raspberry-pi-4", "--force-device",
        "--seq-len", "5", "--devices-dir", swept, *FAST,
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = run_cli(capsys, "devices", "compare", "--devices-dir", swept)
    header, _, *lines = out.splitlines()
    rows = [line for line in lines if line.startswith(("raspberry-pi-4", "x86-64"))]
    assert code == 0
    assert header.split()[-1] == "host_mismatch"
    marks = sorted((row.split()[0], row.split()[-1]) for row in rows)
    assert marks == [("raspberry-pi-4", "yes"), ("x86-64", "-"), ("x86-64", "-"), ("x86-64", "-")]
    assert "host_mismatch yes: recorded with --force-device" in out
    code, out, _ = run_cli(capsys, "devices", "compare", "--devices-dir", swept, "--json")
    assert code == 0
    flags = {(r["device"], r["seq_len"]): r["host_mismatch"] for r in json.loads(out)}
    assert flags == {("raspberry-pi-4", 5): True, ("x86-64", 1): False, ("x86-64", 10): False,
                     ("x86-64", 40): False}  # fmt: skip
    code, out, _ = run_cli(capsys, "devices", "show", "raspberry-pi-4", "--devices-dir", swept)
    assert code == 0
    assert "1 measurement, 1 configuration" in out
    assert "host_mismatch yes: recorded with --force-device" in out
    code, out, _ = run_cli(capsys, "devices", "show", "x86-64", "--devices-dir", swept)
    assert code == 0
    assert "host_mismatch" not in out


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


def _synthetic_samples(truth, noise=0.0):
    rng = np.random.default_rng(0)
    return [
        Sample(
            arch,
            batch,
            seq_len,
            float(work_terms(arch, batch, seq_len) @ truth) * rng.uniform(1 - noise, 1 + noise),
        )
        for arch in ARCHITECTURES
        for batch in (1, 4)
        for seq_len in (1, 20, 100)
    ]


# Coefficients in ms, in TERMS order, of the same order as a fit to a 2-core x86-64 host.
# The per-step term is zero, as in that fit, so the solver has to find a boundary solution.
TRUTH = np.array([0.005, 0.003, 0.0, 1e-4, 5e-7, 0.005, 0.028, 0.024])


def test_fit_recovers_exact_formula():
    samples = _synthetic_samples(TRUTH)
    coefficients = fit(samples)
    assert coefficients == pytest.approx(TRUTH, rel=1e-6, abs=1e-9)
    errors = [abs(e) for e in held_out_errors(samples)]
    assert max(errors) < 0.01


def test_fit_recovers_linear_law():
    samples = _synthetic_samples(TRUTH, noise=0.03)
    coefficients = fit(samples)
    assert (coefficients >= 0).all()
    errors = [abs(e) for e in held_out_errors(samples)]
    # 3% multiplicative noise: a correct fit predicts held-out points within about that.
    assert max(errors) < 0.08
    assert coefficients[TERMS.index("per_step_million_recurrent_weights")] == pytest.approx(
        TRUTH[TERMS.index("per_step_million_recurrent_weights")], rel=0.1
    )


def test_batch_one_recurrent_weights_term():
    # A device whose steps cost only the read of the recurrent weights takes as long at
    # batch 4 as at batch 1, which the multiply-accumulate term alone cannot express.
    truth = np.zeros(len(TERMS))
    truth[TERMS.index("per_call")] = 0.01
    truth[TERMS.index("per_step_million_recurrent_weights")] = 0.03
    samples = _synthetic_samples(truth)
    coefficients = fit(samples)
    assert coefficients[TERMS.index("per_million_macs")] == pytest.approx(0, abs=1e-9)
    arch = Architecture("lstm", 12, 96, 2, True)
    one, four = (predict_from(coefficients, arch, batch, 50) for batch in (1, 4))
    assert four == pytest.approx(one, rel=1e-6)
    assert one == pytest.approx(float(work_terms(arch, 1, 50) @ truth), rel=1e-6)


def test_work_terms_count_weights():
    arch = Architecture("gru", 12, 32, num_layers=2, bidirectional=True)
    terms = dict(zip(TERMS, work_terms(arch, batch=4, seq_len=10), strict=True))
    # Layer 1: (12 + 32) * 32, layer 2: (64 + 32) * 32, times 3 gates and 2 directions.
    weights = 2 * 3 * ((12 + 32) * 32 + (64 + 32) * 32)
    recurrent = 2 * 2 * 3 * 32 * 32
    assert terms["per_recurrence"] == 4
    assert terms["per_step"] == 40
    assert terms["per_step_batch_row"] == 160
    assert terms["per_step_element"] == 160 * 32
    assert terms["per_million_macs"] == pytest.approx(10 * 4 * weights / 1e6)
    assert terms["per_step_million_recurrent_weights"] == pytest.approx(10 * recurrent / 1e6)
    assert terms["per_call_million_weights"] == pytest.approx(weights / 1e6)


def _stored(p50_ms, sha="a" * 64, runtime="1.32.0", batch=1):
    return {
        "model": "lstm.onnx",
        "model_sha256": sha,
        "precision": "fp32",
        "architecture": {
            "cell": "lstm",
            "features": 12,
            "hidden_size": 16,
            "num_layers": 1,
            "bidirectional": False,
        },
        "provider": "CPUExecutionProvider",
        "batch": batch,
        "seq_len": 10,
        "threads": 1,
        "latency_ms": {"p50_ms": p50_ms},
        "host": {"onnxruntime": runtime},
    }


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        pytest.param([_stored(2.0), _stored(1.0), _stored(1.5)], 1.0, id="repeats-lowest"),
        pytest.param([_stored(1.0), _stored(2.0, sha="b" * 64)], 2.0, id="new-export-latest"),
        pytest.param([_stored(1.0), _stored(2.0, runtime="1.33.0")], 2.0, id="new-runtime-latest"),
        pytest.param(
            [_stored(1.0), _stored(3.0, sha="b" * 64), _stored(2.0)], 1.0, id="same-export-again"
        ),
    ],
)
def test_group_samples_repeats(entries, expected):
    profile = DeviceProfile(name="x86-64", data={}, measurements=[*entries, _stored(5.0, batch=4)])
    samples, group = group_samples(profile, "lstm", "fp32")
    by_batch = {s.batch: s.p50_ms for s in samples}
    assert len(samples) == 2
    assert by_batch[1] == expected
    assert by_batch[4] == 5.0
    assert group["threads"] == 1


def _on(provider, threads, batch):
    return {**_stored(1.0, batch=batch), "provider": provider, "threads": threads}


def test_group_samples_provider_names():
    measurements = [
        *(_on("CPUExecutionProvider", 2, batch) for batch in (1, 2, 3)),
        _on("CUDAExecutionProvider", 1, 1),
        _on("XnnpackExecutionProvider", 1, 1),
    ]
    profile = DeviceProfile(name="x86-64", data={}, measurements=measurements)
    for requested, stored in [
        ("cpu", "CPUExecutionProvider"),
        ("cuda", "CUDAExecutionProvider"),
        ("CUDAEXECUTIONPROVIDER", "CUDAExecutionProvider"),
        ("arm", "XnnpackExecutionProvider"),
        ("auto", "CPUExecutionProvider"),
    ]:
        _, group = group_samples(profile, "lstm", "fp32", provider=requested)
        assert group["provider"] == stored, requested
    with pytest.raises(InputError) as raised:
        group_samples(profile, "lstm", "fp32", provider="tensorrt")
    assert str(raised.value).endswith(
        "pass --provider with a measured provider: cpu (CPUExecutionProvider), cuda "
        "(CUDAExecutionProvider), XnnpackExecutionProvider"
    )


def test_group_samples_threads_pick_provider():
    measurements = [
        *(_on("CPUExecutionProvider", 2, batch) for batch in (1, 2, 3)),
        _on("CUDAExecutionProvider", 1, 1),
    ]
    profile = DeviceProfile(name="x86-64", data={}, measurements=measurements)
    _, group = group_samples(profile, "lstm", "fp32", threads=1)
    assert group["provider"] == "CUDAExecutionProvider"
    _, group = group_samples(profile, "lstm", "fp32")
    assert group["provider"] == "CPUExecutionProvider"
    assert group["threads"] == 2


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


def test_predict_needs_two_hidden_sizes(capsys, exported, tmp_path):
    code, _, err = run_cli(
        capsys, "profile", exported["lstm"], "--device", "x86-64", "--seq-len", "5",
        "--devices-dir", tmp_path, *FAST,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(
        capsys, "devices", "predict", "x86-64", "--cell", "lstm", "--hidden-size", "96",
        "--features", "6", "--devices-dir", tmp_path,
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith(
        "error: device 'x86-64' has fp32 lstm measurements of hidden size 32 only (1 "
        "measurement on CPUExecutionProvider with 1 thread), but a prediction needs two or "
        "more hidden sizes"
    )
    assert lines[0].endswith(
        "'rnnedge profile MODEL.onnx --device x86-64 --sweep seq-len=1,10,100'"
    )
    assert out == ""


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
    assert "'rnnedge profile MODEL.onnx --device x86-64 --sweep seq-len=1,10,100'" in err
    assert "benchmarks/" not in err


def test_predict_rejects_unknown_precision(capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "devices", "predict", "x86-64", "--cell", "gru", "--hidden-size", "16",
        "--features", "6", "--precision", "int4", "--devices-dir", tmp_path,
    )  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "'int4' is not one of 'fp32', 'fp16', 'int8', 'int8-weights'" in lines[0]
    assert "rnnedge quantize" not in err
    assert out == ""


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


def test_list_skips_unreadable_profiles(capsys, tmp_path):
    (tmp_path / "garbage.yaml").write_text("name: [unclosed\n")
    code, out, err = run_cli(capsys, "devices", "list", "--devices-dir", tmp_path)
    listed = [line.split()[0] for line in out.splitlines()[2:]]
    assert code == 0
    assert listed == catalog_names()
    assert f"WARNING: skipping device profile: {tmp_path / 'garbage.yaml'}: invalid YAML" in err
    code, out, err = run_cli(capsys, "devices", "list", "--devices-dir", tmp_path, "--json")
    assert code == 0
    assert [row["name"] for row in json.loads(out)] == catalog_names()
    assert "garbage.yaml: invalid YAML" in err


def test_list_skips_unreadable_catalog_override(capsys, tmp_path):
    """A broken user x86-64.yaml hides the catalog's x86-64 instead of falling back to it."""
    (tmp_path / "x86-64.yaml").write_text("name: [unclosed\n")
    code, out, err = run_cli(capsys, "devices", "list", "--devices-dir", tmp_path)
    listed = [line.split()[0] for line in out.splitlines()[2:]]
    assert code == 0
    assert listed == [name for name in catalog_names() if name != "x86-64"]
    assert f"{tmp_path / 'x86-64.yaml'}: invalid YAML at line" in err


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


@pytest.fixture
def same_name_models(capsys, exported, swept, tmp_path):
    """The swept devices folder plus a different model also named lstm.onnx, measured."""
    other = tmp_path / "other" / "lstm.onnx"
    other.parent.mkdir()
    export_checkpoint(make_checkpoint(tmp_path / "other.pt", hidden_size=8), other)
    code, _, err = run_cli(
        capsys, "profile", other, "--device", "x86-64", "--seq-len", "10", "--devices-dir",
        swept, *FAST,
    )  # fmt: skip
    assert code == 0, err
    return exported["lstm"], other


def test_compare_model_path_matches_sha256(capsys, monkeypatch, swept, same_name_models):
    first, other = same_name_models
    monkeypatch.chdir(swept)  # no file named lstm.onnx here, so the bare name is a name
    code, out, err = run_cli(
        capsys, "devices", "compare", "--model", first, "--devices-dir", swept, "--json"
    )
    rows = json.loads(out)
    assert code == 0, err
    assert [r["seq_len"] for r in rows] == [1, 10, 40]
    assert {r["model_sha256"] for r in rows} == {file_sha256(first)}
    code, out, _ = run_cli(
        capsys, "devices", "compare", "--model", other, "--devices-dir", swept, "--json"
    )
    assert [(r["seq_len"], r["model_sha256"]) for r in json.loads(out)] == [
        (10, file_sha256(other))
    ]
    code, out, _ = run_cli(
        capsys, "devices", "compare", "--model", "lstm.onnx", "--devices-dir", swept, "--json"
    )
    assert len(json.loads(out)) == 4


def test_compare_model_missing_path(capsys, swept, tmp_path):
    absent = tmp_path / "absent" / "lstm.onnx"
    code, out, err = run_cli(
        capsys, "devices", "compare", "--model", absent, "--devices-dir", swept
    )
    assert code == 2
    assert f"--model file {str(absent)!r} not found" in err
    assert out == ""


def test_compare_model_path_without_measurements(capsys, exported, tmp_path):
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(exported["gru"].read_bytes())
    code, out, err = run_cli(
        capsys, "devices", "compare", "--model", lone, "--devices-dir", tmp_path, "x86-64"
    )
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: no measurements of {lone} (sha256 {file_sha256(lone)[:8]}); ")
    assert "no model is measured yet; record measurements with rnnedge profile " in err


@pytest.mark.parametrize("json_option", [[], ["--json"]], ids=["table", "json"])
def test_compare_unknown_model_lists_stored(capsys, swept, json_option):
    code, out, err = run_cli(
        capsys, "devices", "compare", "--model", "zzz", "--devices-dir", swept, *json_option
    )
    assert code == 2
    assert out == ""
    assert err == (
        "error: no measurements of model 'zzz' (a file name or sha256 prefix); the stored "
        "models are lstm.onnx; pass one of them to --model, or record measurements with "
        "rnnedge profile MODEL\n"
    )


def test_plot_unknown_model_lists_stored(capsys, swept, tmp_path):
    output = tmp_path / "latency.png"
    code, out, err = run_cli(
        capsys, "devices", "plot", "--model", "zzz", "-o", output, "--devices-dir", swept
    )
    assert code == 2
    assert out == ""
    assert "the stored models are lstm.onnx; pass one of them to --model" in err
    assert not output.exists()


def test_tables_tell_same_name_models_apart(capsys, swept, same_name_models):
    first, other = same_name_models
    labels = {f"lstm.onnx@{file_sha256(path)[:8]}" for path in (first, other)}
    for command in (["compare"], ["show", "x86-64"]):
        code, out, _ = run_cli(capsys, "devices", *command, "--devices-dir", swept)
        column = 1 if command == ["compare"] else 0  # compare starts with the device
        rows = [line.split() for line in out.splitlines() if " CPU " in line]
        models = {row[column] for row in rows}
        assert code == 0
        assert models == labels
        assert "the text after '@' starts the file's sha256" in out


def test_plot_series_per_model_file(swept, same_name_models):
    first, other = same_name_models
    series = latency_series([read_profile(swept / "x86-64.yaml")])
    assert sorted(series) == sorted(
        f"x86-64 lstm.onnx@{file_sha256(path)[:8]} fp32 CPU 1t" for path in (first, other)
    )
    assert len(series[f"x86-64 lstm.onnx@{file_sha256(other)[:8]} fp32 CPU 1t"]) == 1
    assert len(latency_series([read_profile(swept / "x86-64.yaml")], str(other))) == 1


def test_tables_note_throughput_from_mean(capsys, swept):
    code, out, _ = run_cli(capsys, "devices", "show", "x86-64", "--devices-dir", swept)
    assert code == 0
    assert "throughput_seq_per_s: batch / mean latency" in out
    assert "@" not in out  # one file per name: no sha256 suffix


def test_sweep_threads_warning_with_its_point(capsys, exported):
    too_many = cpu_info()["logical_cores"] + 1
    code, _, err = run_cli(
        capsys, "profile", exported["gru"], "--sweep", f"threads=1,{too_many}", "--no-store",
        "--runs", "3", "--warmup", "0", "--operators", "0", "--provider", "cpu",
    )  # fmt: skip
    lines = err.splitlines()
    warnings = [i for i, line in enumerate(lines) if f"{too_many} threads exceed" in line]
    first_point = [i for i, line in enumerate(lines) if " 1/2 " in line]
    assert code == 0, err
    assert len(warnings) == 1, err
    assert len(first_point) == 1, err
    assert warnings[0] > first_point[0], err


@pytest.fixture
def two_architectures(capsys, tmp_path):
    """A devices folder with LSTMs of hidden size 8 and 16 (one layer, 6 features) measured
    at sequence lengths 1, 10 and 40, batch 1."""
    devices = tmp_path / "devices"
    models = []
    for hidden in (8, 16):
        path = tmp_path / f"lstm-h{hidden}.onnx"
        export_checkpoint(make_checkpoint(tmp_path / f"h{hidden}.pt", hidden_size=hidden), path)
        models.append(path)
    code, _, err = run_cli(
        capsys, "profile", *models, "--device", "x86-64", "--sweep", "seq-len=1,10,40",
        "--devices-dir", devices, *FAST,
    )  # fmt: skip
    assert code == 0, err
    return devices


def _predict(capsys, devices, *options):
    return run_cli(
        capsys, "devices", "predict", "x86-64", "--cell", "lstm", "--features", "6",
        "--devices-dir", devices, *options,
    )  # fmt: skip


def test_predict_warns_outside_measured_range(capsys, two_architectures):
    code, out, err = _predict(
        capsys, two_architectures, "--hidden-size", "96", "--layers", "2", "--seq-len", "150"
    )
    warnings = [line for line in err.splitlines() if "outside the measured range" in line]
    assert code == 0, err
    assert out.startswith("predicted p50 ")
    assert len(warnings) == 1
    assert warnings[0].startswith("WARNING: the query lies outside the measured range: ")
    assert "hidden size 96 (measured 8 to 16), layers 2 (measured 1)" in warnings[0]
    assert "sequence length 150 (measured 1 to 40)" in warnings[0]
    assert "--device x86-64 --sweep seq-len=1,10,40,150'" in warnings[0]
    code, _, err = _predict(capsys, two_architectures, "--hidden-size", "12", "--seq-len", "20")
    assert code == 0, err
    assert "outside the measured range" not in err
    code, _, err = _predict(capsys, two_architectures, "--hidden-size", "12", "--batch", "4")
    assert code == 0, err
    assert "batch 4 (measured 1)" in err
    assert "measure the stored models there with 'rnnedge profile MODEL.onnx --device " in err
    assert "--sweep batch=1,4'" in err


def test_predict_text_singular_counts(capsys, two_architectures):
    code, out, err = _predict(capsys, two_architectures, "--hidden-size", "12", "--seq-len", "20")
    assert code == 0, err
    assert ", 1 layer, batch 1, length 20 on x86-64 (CPUExecutionProvider, fp32, 1 thread)" in out
    assert "fitted on 6 measurements of 2 architectures; held-out |error| median " in out


def test_predict_warns_above_error_goal(capsys, two_architectures):
    path = two_architectures / "x86-64.yaml"
    data = yaml.safe_load(path.read_text())
    for entry in data["measurements"]:
        if entry["architecture"]["hidden_size"] == 16:  # ten times slower than it measured
            for key in ("p50_ms", "p50_ci_low_ms", "p50_ci_high_ms"):
                entry["latency_ms"][key] *= 10
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out, err = _predict(capsys, two_architectures, "--hidden-size", "12", "--seq-len", "10")
    warnings = [line for line in err.splitlines() if "misses the goal" in line]
    assert code == 0, err
    assert len(warnings) == 1
    assert "misses the goal of at most 15% and 35%" in warnings[0]
    assert "measure more LSTM architectures" in warnings[0]
    code, out, err = _predict(
        capsys, two_architectures, "--hidden-size", "12", "--seq-len", "10", "--json"
    )
    prediction = json.loads(out)
    assert code == 0, err
    assert prediction["held_out_max_abs_error"] > 0.35
    assert [w for w in prediction["warnings"] if "misses the goal" in w] == [
        warnings[0].removeprefix("WARNING: ")
    ]


@pytest.mark.parametrize("provider", ["cpu", "CPU", "cpuexecutionprovider", "auto", "arm"])
def test_predict_accepts_rnnedge_provider_names(capsys, two_architectures, provider):
    code, out, err = _predict(
        capsys, two_architectures, "--hidden-size", "12", "--seq-len", "20", "--provider", provider
    )
    assert code == 0, err
    assert "(CPUExecutionProvider, fp32, 1 thread)" in out


@pytest.mark.parametrize(
    ("provider", "named"),
    [
        ("cuda", "provider 'cuda' (CUDAExecutionProvider)"),
        ("CUDAExecutionProvider", "provider CUDAExecutionProvider"),
        ("tensorrt", "provider 'tensorrt' (TensorrtExecutionProvider)"),
    ],
)
def test_predict_unmeasured_provider(capsys, two_architectures, provider, named):
    code, out, err = _predict(
        capsys, two_architectures, "--hidden-size", "12", "--provider", provider
    )
    lines = err.strip().splitlines()
    assert code == 2
    assert out == ""
    assert len(lines) == 1
    assert lines[0] == (
        f"error: device 'x86-64' has no fp32 lstm measurements on {named}; pass --provider "
        "with a measured provider: cpu (CPUExecutionProvider)"
    )


def test_predict_unknown_provider(capsys, two_architectures):
    code, _, err = _predict(capsys, two_architectures, "--hidden-size", "12", "--provider", "npu")
    assert code == 2
    assert (
        err.strip()
        == "error: unknown provider 'npu'; choose one of: auto, cpu, cuda, tensorrt, arm"
    )


def test_predict_unmeasured_threads(capsys, two_architectures):
    code, out, err = _predict(capsys, two_architectures, "--hidden-size", "12", "--threads", "3")
    assert code == 2
    assert out == ""
    assert err.strip() == (
        "error: device 'x86-64' has no fp32 lstm measurements on CPUExecutionProvider with 3 "
        "threads; pass --threads with a measured thread count: 1"
    )
