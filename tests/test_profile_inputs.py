"""The synthetic input of `rnnedge profile` and `convert --ort` on models from torch.onnx.export.

The models carry no rnnedge metadata: one with fixed input shapes, and ones with inputs
beside the sequence and the state (an int32 sample rate, a boolean flag, a float gain),
which the synthetic input cannot make up.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from rnnedge.cli import main

torch = pytest.importorskip("torch")

FEATURES = 8
HIDDEN = 16
QUICK = ["--runs", "5", "--warmup", "1", "--operators", "0", "--provider", "cpu"]


class _Gru(torch.nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.rnn = torch.nn.GRU(FEATURES, HIDDEN, batch_first=batch_first)

    def forward(self, x, h0):
        return self.rnn(x, h0)


class _GruWithRate(_Gru):
    def forward(self, x, h0, rate, flag):
        return self.rnn(x * (rate.float() / 16000.0) * flag.float(), h0)


class _GruWithGain(_Gru):
    def forward(self, x, h0, gain):
        return self.rnn(x * gain, h0)


def _export(module, args, path: Path, names: list[str], dynamic: dict | None) -> Path:
    torch.manual_seed(0)
    torch.onnx.export(module.eval(), args, str(path), input_names=names,
                      output_names=["y", "hn"], dynamic_axes=dynamic, dynamo=False)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("foreign")
    batch_major = {"x": {0: "batch", 1: "time"}, "h0": {1: "batch"},
                   "y": {0: "batch", 1: "time"}, "hn": {1: "batch"}}  # fmt: skip
    x, h0 = torch.randn(3, 5, FEATURES), torch.zeros(1, 3, HIDDEN)
    rate, flag = torch.tensor([16000], dtype=torch.int32), torch.tensor(True)
    return {
        # time-major with every shape fixed: x [5, 3, 8], h0 [1, 3, 16]
        "static": _export(_Gru(False), (torch.randn(5, 3, FEATURES), h0),
                          root / "static.onnx", ["x", "h0"], None),
        "rate": _export(_GruWithRate(True), (x, h0, rate, flag), root / "rate.onnx",
                        ["x", "h0", "rate", "flag"], batch_major),
        "gain": _export(_GruWithGain(True), (x, h0, torch.tensor([0.5])), root / "gain.onnx",
                        ["x", "h0", "gain"], batch_major),
        "plain": _export(_Gru(True), (x, h0), root / "plain.onnx", ["x", "h0"], batch_major),
    }  # fmt: skip


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("WARNING: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_fixed_sizes_replace_defaults(capsys, models, tmp_path):
    code, out, err = run_cli(capsys, "-v", "profile", models["static"], "--state", "h0=hn",
                             "--devices-dir", tmp_path, "--json", *QUICK)  # fmt: skip
    document = json.loads(out)
    assert code == 0, err
    assert (document["batch"], document["seq_len"]) == (3, 5)
    # The stored mean is rounded, so the throughput agrees to its precision only.
    expected = 3 * 1e3 / document["latency_ms"]["mean_ms"]
    assert document["throughput_seq_per_s"] == pytest.approx(expected, rel=1e-3)
    assert "has batch size 3 and sequence length 5 instead of the defaults 1 and 100" in err
    (path,) = tmp_path.glob("*.yaml")
    (stored,) = yaml.safe_load(path.read_text())["measurements"]
    assert (stored["batch"], stored["seq_len"]) == (3, 5)


def test_sweep_log_names_resolved_sizes(capsys, models):
    code, _, err = run_cli(capsys, "-v", "profile", models["static"], "--state", "h0=hn",
                           "--sweep", "threads=1,2", "--no-store", *QUICK)  # fmt: skip
    logged = [line for line in err.splitlines() if line.startswith("INFO: sweep point")]
    assert code == 0, err
    assert logged == [
        "INFO: sweep point 1/2: static.onnx batch 3 seq_len 5 threads 1",
        "INFO: sweep point 2/2: static.onnx batch 3 seq_len 5 threads 2",
    ]
    code, _, err = run_cli(capsys, "-v", "profile", models["plain"], "--state", "h0=hn",
                           "--no-store", *QUICK)  # fmt: skip
    logged = [line for line in err.splitlines() if line.startswith("INFO: sweep point")]
    assert code == 0, err
    assert len(logged) == 1, err
    assert re.fullmatch(
        r"INFO: sweep point 1/1: plain\.onnx batch 1 seq_len 100 threads \d+", logged[0]
    )


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        pytest.param(["--batch", "4"], ["--batch 4 does not fit static.onnx: input 'x' has "
                     "the fixed shape [5, 3, 8] (time-major), so every run has batch size 3",
                     "pass --batch 3, or leave --batch out"], id="batch"),
        pytest.param(["--seq-len", "100"], ["--seq-len 100 does not fit static.onnx",
                     "every run has sequence length 5"], id="seq-len"),
        pytest.param(["--sweep", "batch=3,8"], ["batch size 8 of --sweep batch=3,8 does not "
                     "fit static.onnx", "remove --sweep batch=3,8"], id="sweep"),
    ],
)  # fmt: skip
def test_fixed_size_contradiction_rejected(capsys, models, tmp_path, options, fragments):
    devices = tmp_path / "devices"
    code, out, err = run_cli(capsys, "profile", models["static"], "--state", "h0=hn",
                             "--devices-dir", devices, *options, *QUICK)  # fmt: skip
    line = _error_line(err)
    assert code == 2
    for fragment in fragments:
        assert fragment in line
    assert out == ""
    assert not devices.exists()  # the sweep stored none of its points


def test_convert_fixed_size_model(capsys, models, tmp_path):
    target = tmp_path / "static.ort"
    code, out, err = run_cli(capsys, "convert", models["static"], "--ort", "--state", "h0=hn",
                             "-o", target)  # fmt: skip
    assert code == 0, err
    assert "outputs match the .onnx model" in out
    assert target.is_file()


@pytest.mark.parametrize(
    ("model", "feeds", "message"),
    [
        pytest.param("rate", [], "inputs 'rate' (int32 [1]) and 'flag' (bool []) need values",
                     id="int-and-bool"),
        pytest.param("rate", ["--feed", "flag=1"], "input 'rate' (int32 [1]) needs a value",
                     id="rank-1-int-not-lengths"),
        pytest.param("gain", [], "input 'gain' (float32 [1]) needs a value", id="float-gain"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["profile", "convert"])
def test_unfillable_inputs_need_feed(capsys, models, tmp_path, model, feeds, message, command):
    if command == "profile":
        args = ["profile", models[model], "--no-store", *QUICK]
    else:
        args = ["convert", models[model], "--ort", "-o", tmp_path / "m.ort"]
    code, out, err = run_cli(capsys, *args, "--state", "h0=hn", *feeds)
    line = _error_line(err)
    missing = [name for name in ("rate", "flag", "gain") if f"'{name}' (" in message]
    assert code == 2
    assert line.startswith(f"error: {message}")
    assert line.endswith("with " + " ".join(f"--feed {name}=VALUE" for name in missing))
    assert out == ""
    assert list(tmp_path.iterdir()) == []


def test_fed_inputs_profile(capsys, models):
    code, out, err = run_cli(capsys, "profile", models["rate"], "--state", "h0=hn", "--feed",
                             "rate=16000", "--feed", "flag=1", "--no-store", "--json",
                             *QUICK)  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["batch"] == 1


def test_feed_batch_fix_names_sweep(capsys, models, tmp_path):
    state = np.zeros((1, 3, HIDDEN), dtype=np.float32)
    np.save(tmp_path / "h3.npy", state)
    feed = f"h0={tmp_path / 'h3.npy'}"
    code, _, err = run_cli(capsys, "profile", models["plain"], "--feed", feed, "--sweep",
                           "batch=1,8", "--no-store", *QUICK)  # fmt: skip
    line = _error_line(err)
    assert code == 2
    assert "--feed h0 has shape [1, 3, 16], for a batch of 3" in line
    assert line.endswith("or remove --sweep batch=1,8 and profile with --batch 3")
    code, _, err = run_cli(capsys, "profile", models["plain"], "--feed", feed, "--no-store",
                           *QUICK)  # fmt: skip
    assert code == 2
    assert _error_line(err).endswith("or profile with --batch 3")
