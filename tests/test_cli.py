"""The command line: real commands on real files, exact exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnedge.cli import main
from rnnedge.runtime.session import MAX_THREADS_PER_CORE
from tests.conftest import FEATURES, LABELS


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_prints_parity(capsys, exported, tmp_path):
    code, out, err = run_cli(capsys, "export", exported["lstm.pt"], "-o", tmp_path / "m.onnx")
    assert code == 0, err
    assert "max abs error" in out
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_export_json(capsys, exported, tmp_path):
    code, out, _ = run_cli(
        capsys, "export", exported["gru.pt"], "-o", tmp_path / "m.onnx", "--json"
    )
    report = json.loads(out)
    assert code == 0
    assert report["max_abs_error"] <= 1e-5
    assert all(case["max_abs_error"] <= 1e-5 for case in report["parity"])
    assert report["metadata"]["rnnedge.cell"] == "gru"


def test_export_parity_failure_exit_3(capsys, exported, tmp_path):
    output = tmp_path / "m.onnx"
    code, _, err = run_cli(capsys, "export", exported["lstm.pt"], "-o", output, "--atol", "1e-15")
    assert code == 3
    assert err.startswith("error: parity check failed")
    assert not output.exists()


def test_quantize_report(capsys, exported, tmp_path):
    output = tmp_path / "q.onnx"
    code, out, err = run_cli(
        capsys, "quantize", exported["lstm"], "-o", output, "--mode", "dynamic-int8"
    )
    assert code == 0, err
    assert "quantized ops: DynamicQuantizeLSTM x2" in out
    assert "size: " in out
    assert "drift vs float" in out


def test_quantize_json_lists_float_gru(capsys, exported, tmp_path):
    code, out, _ = run_cli(capsys, "quantize", exported["gru"], "-o", tmp_path / "q.onnx", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["float_compute_ops"] == {"GRU": 2}
    assert report["size_before"] > 0


def test_run_writes_output_and_labels(capsys, exported, tmp_path, rng):
    x = rng.standard_normal((3, 25, FEATURES)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(capsys, "run", exported["lstm"], "--input", tmp_path / "x.npy",
                             "--output", tmp_path / "y.npy", "--provider", "cpu")  # fmt: skip
    assert code == 0, err
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (3, len(LABELS))
    assert "providers: CPUExecutionProvider" in out
    predictions = out.split("predictions: ")[1].split("\n")[0].split(", ")
    assert predictions == [LABELS[i] for i in y.argmax(-1)]


def test_run_csv_input(capsys, exported, tmp_path, rng):
    np.savetxt(tmp_path / "x.csv", rng.standard_normal((30, FEATURES)), delimiter=",")
    code, out, _ = run_cli(capsys, "run", exported["gru"], "--input", tmp_path / "x.csv", "--json")
    assert code == 0
    assert json.loads(out)["outputs"]["output"] == [1, len(LABELS)]


def test_profile_writes_device_file(capsys, exported, tmp_path):
    devices = tmp_path / "devices"
    for _ in range(2):
        code, out, err = run_cli(capsys, "profile", exported["lstm"], "--device", "raspberry-pi-4",
                                 "--runs", "10", "--warmup", "1", "--seq-len", "20",
                                 "--provider", "cpu", "--devices-dir", devices,
                                 "--force-device")  # fmt: skip
        assert code == 0, err
    assert "p50" in out
    import yaml

    stored = yaml.safe_load((devices / "raspberry-pi-4.yaml").read_text())
    assert len(stored["measurements"]) == 2
    assert stored["measurements"][0]["seq_len"] == 20


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# (arguments, expected exit code, a fragment of the one-line message); "{m}" is a float
# model, "{x}" a valid input, "{tmp}" the test's folder.
BAD_INPUT = [
    pytest.param(
        ["run", "{tmp}/missing.onnx", "-i", "{x}"], 2, "not found", id="run-missing-model"
    ),
    pytest.param(["run", "{junk}", "-i", "{x}"], 2, "not a valid ONNX model", id="run-not-onnx"),
    pytest.param(
        ["run", "{m}", "-i", "{tmp}/missing.npy"], 2, "input file", id="run-missing-input"
    ),
    pytest.param(
        ["run", "{m}", "-i", "{wrong_features}"], 2, "axis 2 must be 6", id="run-features"
    ),
    pytest.param(["run", "{m}", "-i", "{int_input}"], 2, "dtype int64", id="run-dtype"),
    pytest.param(
        ["run", "{m}", "-i", "{x}", "--provider", "tpu"],
        2,
        "unknown provider 'tpu'",
        id="run-provider",
    ),
    pytest.param(
        ["run", "{m}", "-i", "{x}", "--device", "pi9"], 2, "unknown device 'pi9'", id="run-device"
    ),
    pytest.param(
        ["run", "{m}", "-i", "{x}", "-o", "{tmp}/nodir/y.npy"],
        2,
        "does not exist",
        id="run-output-dir",
    ),
    pytest.param(
        ["run", "{m}", "-i", "{x}", "--provider", "cuda", "--strict-provider"],
        4,
        "CUDAExecutionProvider",
        id="run-strict-cuda",
    ),
    pytest.param(["export", "{tmp}/missing.pt"], 2, "not found", id="export-missing"),
    pytest.param(
        ["export", "{state_dict}", "-o", "{tmp}/o.onnx"],
        2,
        "has no model config",
        id="export-no-config",
    ),
    pytest.param(
        ["export", "{junk}", "-o", "{tmp}/o.onnx"],
        2,
        "was not written by torch.save",
        id="export-junk",
    ),
    pytest.param(
        ["quantize", "{junk}", "-o", "{tmp}/q.onnx"],
        2,
        "not a valid ONNX model",
        id="quantize-junk",
    ),
    pytest.param(
        ["quantize", "{m}", "-o", "{tmp}/q.onnx", "--mode", "int4"],
        2,
        "'int4' is not one of",
        id="quantize-mode",
    ),
    pytest.param(
        ["profile", "{m}", "--device", "pi9"], 2, "unknown device 'pi9'", id="profile-device"
    ),
    pytest.param(
        ["profile", "{m}", "--batch", "0"], 2, "batch must be at least 1", id="profile-batch"
    ),
    pytest.param(
        ["profile", "{m}", "--seq-len", "-3"],
        2,
        "--seq-len must be at least 1, got -3",
        id="profile-seq-len",
    ),
    pytest.param(["profile", "{junk}"], 2, "not a valid ONNX model", id="profile-not-onnx"),
    pytest.param(["frobnicate"], 2, "No such command", id="unknown-command"),
    pytest.param(["demo", "--device", "pi9"], 2, "unknown device 'pi9'", id="demo-device"),
]


@pytest.fixture
def bad_input_files(exported, tmp_path, rng):
    x = rng.standard_normal((2, 10, FEATURES)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "wrong.npy", x[..., :5])
    np.save(tmp_path / "int.npy", x.astype(np.int64))
    import torch

    torch.save(torch.nn.LSTM(FEATURES, 4).state_dict(), tmp_path / "state.pt")
    return {
        "m": exported["lstm"],
        "x": tmp_path / "x.npy",
        "tmp": tmp_path,
        "junk": _write(tmp_path / "junk.bin", b"\x08garbage" * 50),
        "wrong_features": tmp_path / "wrong.npy",
        "int_input": tmp_path / "int.npy",
        "state_dict": tmp_path / "state.pt",
    }


@pytest.mark.parametrize(("args", "code", "fragment"), BAD_INPUT)
def test_bad_input_one_line(capsys, bad_input_files, tmp_path, monkeypatch, args, code, fragment):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = [a.format(**bad_input_files) for a in args]
    status, _, err = run_cli(capsys, *argv)
    assert status == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["devices", "predict", "x86-64", "gru64.onnx"],
            "error: Missing option '--cell'. Choose from: lstm, gru; "
            "see 'rnnedge devices predict --help'",
            id="missing-choice",
        ),
        pytest.param(
            ["export", "{m}", "--exporter", "onnx"],
            "error: Invalid value for '--exporter': 'onnx' is not one of 'torchscript', "
            "'dynamo'; see 'rnnedge export --help'",
            id="invalid-choice",
        ),
    ],
)
def test_usage_error_exact_line(capsys, exported, args, expected):
    status, _, err = run_cli(capsys, *[a.format(m=exported["lstm.pt"]) for a in args])
    assert status == 2
    assert err == expected + "\n"


def test_verbose_shows_traceback(capsys, tmp_path):
    code, _, err = run_cli(capsys, "-v", "run", tmp_path / "missing.onnx", "-i", tmp_path / "x.npy")
    assert code == 2
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert "rnnedge, version" in out


NO_TORCH = """
import sys
for name in ("torch", "onnx", "sktime"):
    sys.modules[name] = None  # any import of these now raises ImportError
from rnnedge.cli import main
code = main(sys.argv[1:])
loaded = {m.split(".")[0] for m, module in sys.modules.items() if module is not None}
assert not loaded & {"torch", "onnx"}, "the runtime imported torch or onnx"
sys.exit(code)
"""


@pytest.mark.parametrize("command", ["run", "profile", "convert"])
def test_runtime_commands_need_no_torch(exported, tmp_path, rng, command):
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 10, FEATURES)).astype(np.float32))
    args = {
        "run": ["run", str(exported["lstm"]), "-i", str(tmp_path / "x.npy")],
        "profile": [
            "profile",
            str(exported["lstm"]),
            "--runs",
            "5",
            "--devices-dir",
            str(tmp_path / "d"),
        ],
        "convert": ["convert", str(exported["lstm"]), "--ort", "-o", str(tmp_path / "m.ort")],
    }[command]
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True,
                            text=True, cwd=tmp_path, env=dict(os.environ), timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_export_without_torch_names_extra(tmp_path):
    script = NO_TORCH.split("code = main")[0] + "sys.exit(main(sys.argv[1:]))"
    (tmp_path / "m.pt").write_bytes(b"")
    result = subprocess.run([sys.executable, "-c", script, "export", str(tmp_path / "m.pt")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "pip install 'rnnedge[export]'" in result.stderr
    # The CPU build first, so that the extra does not pull a CUDA build of torch.
    cpu_build = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert cpu_build in result.stderr
    assert result.stderr.index(cpu_build) < result.stderr.index("rnnedge[export]")


@pytest.fixture
def quiet_args(exported, tmp_path, rng) -> dict[str, list[str]]:
    """One successful command line per command that prints a report on stdout."""
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 10, FEATURES)).astype(np.float32))
    return {
        "run": ["run", exported["lstm"], "-i", tmp_path / "x.npy", "--provider", "cpu"],
        "export": ["export", exported["lstm.pt"], "-o", tmp_path / "e.onnx"],
        "quantize": ["quantize", exported["lstm"], "-o", tmp_path / "q.onnx"],
        "profile": ["profile", exported["lstm"], "--runs", "3", "--warmup", "0",
                    "--operators", "0", "--seq-len", "5", "--devices-dir", tmp_path / "d"],
        "doctor": ["doctor", exported["lstm"]],
    }  # fmt: skip


@pytest.mark.parametrize("command", ["run", "export", "quantize", "profile", "doctor"])
@pytest.mark.parametrize("where", ["after", "before"], ids=["q-after", "q-before"])
def test_quiet_prints_no_report(capsys, quiet_args, command, where):
    args = quiet_args[command]
    argv = [*args, "-q"] if where == "after" else ["-q", *args]
    code, out, err = run_cli(capsys, *argv)
    assert code in (0, 3), err  # doctor exits 3 where this host has an error finding
    assert out == ""
    if code == 3:
        assert err.startswith("error: doctor found ")


@pytest.mark.parametrize("command", ["run", "export", "quantize", "profile", "doctor"])
def test_quiet_keeps_json(capsys, quiet_args, command):
    code, out, err = run_cli(capsys, *quiet_args[command], "-q", "--json")
    assert code in (0, 3), err
    assert isinstance(json.loads(out), (dict, list))


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        pytest.param(["run", "{m}", "-i", "{x}"], "pass one of these names, or add", id="run"),
        pytest.param(
            ["profile", "{m}"],
            "omit --device to profile this host under its own name",
            id="profile",
        ),
        pytest.param(["devices", "show"], "pass one of these names, or add", id="devices-show"),
        pytest.param(
            ["doctor"], "omit --device to check against this host's own profile", id="doctor"
        ),
    ],
)
def test_unknown_device_fix_fits_command(capsys, bad_input_files, tmp_path, monkeypatch, args,
                                         fix):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    argv = [a.format(**bad_input_files) for a in args]
    argv += ["pi9"] if args[0] == "devices" else ["--device", "pi9"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("error: unknown device 'pi9'; known devices: ")
    assert fix in err
    if args[0] != "profile":
        assert "profile this host" not in err


def test_threads_above_logical_cores_warn(capsys, exported, tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 5, FEATURES)).astype(np.float32))
    threads = (os.cpu_count() or 1) + 1
    code, _, err = run_cli(capsys, "run", exported["lstm"], "-i", tmp_path / "x.npy",
                           "--threads", threads, "--provider", "cpu")  # fmt: skip
    assert code == 0, err
    assert f"WARNING: {threads} threads exceed the {os.cpu_count()} logical cores" in err
    assert f"pass --threads {os.cpu_count()} or fewer" in err


@pytest.mark.parametrize("command", ["run", "profile"])
def test_threads_far_above_cores_rejected(capsys, exported, tmp_path, rng, command):
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 5, FEATURES)).astype(np.float32))
    threads = MAX_THREADS_PER_CORE * (os.cpu_count() or 1) + 1
    args = ["-i", tmp_path / "x.npy"] if command == "run" else ["--no-store"]
    code, out, err = run_cli(capsys, command, exported["lstm"], *args, "--threads", threads,
                             "--provider", "cpu")  # fmt: skip
    assert code == 2
    assert out == ""
    assert err == (
        f"error: --threads {threads} is more than {MAX_THREADS_PER_CORE} times the "
        f"{os.cpu_count()} logical cores of this host; pass --threads {os.cpu_count()} or "
        "fewer\n"
    )


def test_log_handler_follows_stderr(monkeypatch):
    """Each CLI run logs to the stderr of that moment, not to the first run's."""
    import io
    import logging

    from rnnedge.commands._common import configure_logging

    configure_logging()
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("rnnedge.test").warning("to the first")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("rnnedge.test").warning("to the second")
    assert second.getvalue() == "WARNING: to the second\n"


def test_ort_logs_only_at_vvv(capfd, exported, tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 10, FEATURES)).astype(np.float32))
    args = ["run", str(exported["gru"]), "--input", str(tmp_path / "x.npy"), "--provider", "cpu"]
    # ONNX Runtime's own log lines read "... [I:onnxruntime:, inference_session.cc:...".
    for flag, debug, ort_shown in (("-v", False, False), ("-vv", True, False),
                                   ("-vvv", True, True)):  # fmt: skip
        code = main([flag, *args])
        captured = capfd.readouterr()
        assert code == 0, captured.err
        assert ("DEBUG: " in captured.err) is debug, flag
        assert ("onnxruntime:" in captured.err) is ort_shown, flag


def test_verbose_prints_placement_once(capfd, exported, tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 10, FEATURES)).astype(np.float32))
    code = main(["-v", "run", str(exported["gru"]), "--input", str(tmp_path / "x.npy")])
    captured = capfd.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert code == 0, captured.err
    assert len([line for line in lines if "placement:" in line]) == 1


@pytest.mark.parametrize(
    ("option", "fix"),
    [("--runs", "bound a long measurement with --budget-s"),
     ("--warmup", "a few hundred untimed runs suffice")],
)  # fmt: skip
def test_profile_runs_typo_rejected(capsys, exported, option, fix):
    code, out, err = run_cli(capsys, "profile", exported["lstm"], option, "99999999999999",
                             "--no-store")  # fmt: skip
    assert code == 2
    assert out == ""
    limit = "10,000,000 without --budget-s" if option == "--runs" else "10,000,000"
    assert err == f"error: {option} must be at most {limit}, got 99,999,999,999,999; {fix}\n"
