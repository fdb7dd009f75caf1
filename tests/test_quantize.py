from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rnnedge.errors import InputError
from rnnedge.quantize import QuantMode, quantize_model
from rnnedge.quantize.report import count_ops
from tests.conftest import FEATURES


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_dynamic_int8_lstm_uses_int8_kernel(exported, tmp_path):
    output = tmp_path / "lstm.int8.onnx"
    report = quantize_model(exported["lstm"], output, "dynamic-int8")
    ops = count_ops(onnx.load(output))
    assert ops.get("DynamicQuantizeLSTM") == 2
    assert "LSTM" not in ops
    assert report.quantized_ops["DynamicQuantizeLSTM"] == 2
    assert "LSTM" not in report.float_compute_ops
    assert report.size_after < report.size_before / 2
    assert report.size_after == output.stat().st_size


def test_dynamic_int8_reports_small_gru_float(exported, tmp_path):
    # Hidden size 32 is below the threshold where the int8 Scan path beats the float GRU.
    report = quantize_model(exported["gru"], tmp_path / "gru.int8.onnx", "dynamic-int8")
    assert report.float_compute_ops == {"GRU": 2}
    assert len(report.recurrent_left_float) == 2
    assert all("below 384" in reason for _, reason in report.recurrent_left_float)
    assert report.gru_int8_rewritten == ()
    assert any("GRU stays float" in note for note in report.notes)


def test_gru_int8_never_names_nodes_and_policy(exported, tmp_path):
    report = quantize_model(exported["gru"], tmp_path / "q.onnx", "dynamic-int8",
                            gru_int8="never", latency_runs=0)  # fmt: skip
    nodes = [node for node, _ in report.recurrent_left_float]
    assert nodes == ["/model/rnn/GRU", "/model/rnn/GRU_1"]
    for _, reason in report.recurrent_left_float:
        assert reason.startswith("--gru-int8 never keeps it in float32")
        assert "--gru-int8 auto or always rewrites it" in reason
        assert "no int8 kernel" not in reason
    entries = report.as_dict()["recurrent_left_float"]
    assert entries[0]["node"] == "/model/rnn/GRU"
    assert report.notes[0].startswith("/model/rnn/GRU stays float: --gru-int8 never")


def test_cli_gru_int8_never_line(exported, tmp_path, capsys):
    from rnnedge.cli import main

    code = main(["quantize", str(exported["gru"]), "-o", str(tmp_path / "q.onnx"),
                 "--gru-int8", "never", "--latency-runs", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("FLOAT RECURRENT: ")]
    assert len(lines) == 2
    assert lines[0].startswith("FLOAT RECURRENT: /model/rnn/GRU: --gru-int8 never keeps it")
    assert "FLOAT RECURRENT: GRU x" not in out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_int8_drift_is_small(exported, tmp_path, rng, cell):
    output = tmp_path / f"{cell}.int8.onnx"
    report = quantize_model(exported[cell], output, "dynamic-int8")
    x = rng.standard_normal((8, 40, FEATURES)).astype(np.float32)
    difference = np.abs(_run(output, x) - _run(exported[cell], x)).max()
    # int8 rounding moves logits of an untrained model by about 1e-3.
    assert difference < 0.05
    assert 0 < report.drift.max_abs_error < 0.05
    assert report.drift.top1_agreement is not None
    assert report.drift.top1_agreement >= 0.9


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fp16_halves_size_keeps_float_io(exported, tmp_path, rng, cell):
    output = tmp_path / f"{cell}.fp16.onnx"
    report = quantize_model(exported[cell], output, "fp16")
    model = onnx.load(output)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert report.size_after < 0.6 * report.size_before
    x = rng.standard_normal((4, 30, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(_run(output, x), _run(exported[cell], x), atol=1e-2)


def test_quantized_metadata_kept(exported, tmp_path):
    output = tmp_path / "lstm.int8.onnx"
    quantize_model(exported["lstm"], output, "dynamic-int8")
    props = {p.key: p.value for p in onnx.load(output).metadata_props}
    assert props["rnnedge.precision"] == "int8"
    assert props["rnnedge.quantization"] == "dynamic-int8"
    assert props["rnnedge.features"] == str(FEATURES)
    assert "rnnedge.normalization" in props


def test_requantizing_rejected(exported, tmp_path):
    first = tmp_path / "lstm.int8.onnx"
    quantize_model(exported["lstm"], first, "dynamic-int8")
    with pytest.raises(InputError, match="already quantized"):
        quantize_model(first, tmp_path / "again.onnx", "dynamic-int8")
    assert not (tmp_path / "again.onnx").exists()


def test_unknown_mode_rejected(exported, tmp_path):
    with pytest.raises(InputError, match="unknown quantization mode 'int4'"):
        quantize_model(exported["lstm"], tmp_path / "x.onnx", "int4")


def test_reduce_range_setting_reported(exported, tmp_path):
    report = quantize_model(
        exported["lstm"], tmp_path / "a.onnx", "dynamic-int8", reduce_range=True
    )
    assert report.settings["reduce_range"] is True
    report = quantize_model(
        exported["lstm"], tmp_path / "b.onnx", "dynamic-int8", reduce_range=False
    )
    assert report.settings["reduce_range"] is False


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("mode", ["static-int8", "weight-int8"])
def test_int8_modes_shrink_and_keep_metadata(exported, tmp_path, rng, cell, mode):
    output = tmp_path / f"{cell}.{mode}.onnx"
    calibration = rng.standard_normal((20, 30, FEATURES)).astype(np.float32)
    report = quantize_model(exported[cell], output, mode, calibration=calibration, latency_runs=0)
    model = onnx.load(output)
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["rnnedge.quantization"] == mode
    assert props["rnnedge.precision"] == QuantMode(mode).precision
    assert props["rnnedge.features"] == str(FEATURES)
    # int8 storage of the recurrent weights: the file shrinks well past half.
    assert report.size_after < 0.45 * report.size_before
    assert report.float_compute_ops.get(cell.upper()) == 2
    nodes = [node for node, _ in report.recurrent_left_float]
    assert nodes == [f"/model/rnn/{cell.upper()}", f"/model/rnn/{cell.upper()}_1"]
    x = rng.standard_normal((4, 25, FEATURES)).astype(np.float32)
    # Weight rounding and (static) activation rounding move logits by about 1e-3.
    np.testing.assert_allclose(_run(output, x), _run(exported[cell], x), atol=0.05)


def test_static_int8_quantizes_head_as_qdq(exported, tmp_path, rng):
    calibration = rng.standard_normal((20, 30, FEATURES)).astype(np.float32)
    report = quantize_model(
        exported["lstm"], tmp_path / "q.onnx", "static-int8", calibration=calibration,
        calibration_method="percentile", latency_runs=0,
    )  # fmt: skip
    assert report.quantized_ops["Gemm (QDQ)"] == 1
    assert "Gemm" not in report.float_compute_ops
    assert report.settings["calibration_method"] == "percentile"
    assert report.settings["format"] == "QDQ"


def test_static_int8_needs_calibration(exported, tmp_path):
    with pytest.raises(InputError, match="needs calibration data"):
        quantize_model(exported["lstm"], tmp_path / "q.onnx", "static-int8")
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        pytest.param((0, 30, FEATURES), "empty axis 0", id="empty"),
        pytest.param((5, 30, FEATURES + 1), "axis 2 must be", id="wrong-features"),
        pytest.param((5, 30, FEATURES, 1), "rank 3", id="wrong-rank"),
    ],
)
def test_bad_calibration_rejected(exported, tmp_path, shape, message):
    data = np.zeros(shape, np.float32)
    with pytest.raises(InputError, match=message):
        quantize_model(exported["gru"], tmp_path / "q.onnx", "static-int8", calibration=data)
    assert not (tmp_path / "q.onnx").exists()


def test_model_without_compute_ops_rejected(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"])], "relu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", "t", 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["b", "t", 3])],
    )  # fmt: skip
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(InputError, match="no LSTM, GRU, RNN, MatMul, Gemm or Conv"):
        quantize_model(path, tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_quantized_graph_without_metadata_rejected(exported, tmp_path):
    first = tmp_path / "lstm.int8.onnx"
    quantize_model(exported["lstm"], first, latency_runs=0)
    model = onnx.load(first)
    del model.metadata_props[:]
    stripped = tmp_path / "stripped.onnx"
    onnx.save(model, stripped)
    with pytest.raises(InputError, match=r"already quantized \(it contains DynamicQuantizeLSTM"):
        quantize_model(stripped, tmp_path / "again.onnx")


def test_gru_int8_always_removes_float_gru(exported, tmp_path):
    report = quantize_model(exported["gru"], tmp_path / "g.onnx", gru_int8="always", latency_runs=0)
    assert report.float_compute_ops == {}
    assert report.quantized_ops["DynamicQuantizeMatMul"] == 4
    assert report.recurrent_left_float == ()
    assert len(report.gru_int8_rewritten) == 2
    assert report.as_dict()["gru_int8_rewritten"] == list(report.gru_int8_rewritten)
    assert report.drift.max_abs_error < 0.05


def test_eval_reports_metric_and_latency(exported, tmp_path, rng):
    x = rng.standard_normal((24, 30, FEATURES)).astype(np.float32)
    y = rng.integers(0, 4, 24)
    report = quantize_model(exported["lstm"], tmp_path / "q.onnx", eval_data=(x, y),
                            latency_runs=5)  # fmt: skip
    data = report.as_dict()
    for key in ("size_bytes_before", "size_bytes_after", "quantized_ops", "float_ops",
                "max_abs_drift", "metric_before", "metric_after", "p50_ms_before",
                "p50_ms_after"):  # fmt: skip
        assert key in data
    assert data["metric"] == "accuracy"
    assert 0.0 <= data["metric_before"] <= 1.0
    assert data["p50_ms_before"] > 0
    assert data["p50_ms_after"] > 0


def test_metric_budget_blocks_output(exported, tmp_path, rng):
    from rnnedge.errors import CheckFailedError

    x = rng.standard_normal((24, 30, FEATURES)).astype(np.float32)
    # Labels equal to the float model's own predictions: accuracy 1.0 before quantization,
    # so any flipped prediction is a drop. The budget is below zero to force a failure.
    session = ort.InferenceSession(str(exported["gru"]), providers=["CPUExecutionProvider"])
    stats = _normalization(exported["gru"])
    y = session.run(None, {"input": (x - stats[0]) / stats[1]})[0].argmax(-1)
    report = quantize_model(exported["gru"], tmp_path / "ok.onnx", eval_data=(x, y),
                            max_metric_drop=0.5, latency_runs=0)  # fmt: skip
    assert report.metric_before == 1.0
    assert (tmp_path / "ok.onnx").exists()
    with pytest.raises(CheckFailedError, match="more than --max-metric-drop"):
        quantize_model(exported["gru"], tmp_path / "no.onnx", "weight-int8", eval_data=(x, y),
                       max_metric_drop=-1.0, latency_runs=0)  # fmt: skip
    assert not (tmp_path / "no.onnx").exists()


def _normalization(path):
    import json

    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    stats = json.loads(props["rnnedge.normalization"])
    return np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)


@pytest.mark.parametrize(
    ("device", "mode", "reduce_range"),
    [
        pytest.param("raspberry-pi-4", "dynamic-int8", False, id="arm-full-range"),
        pytest.param("jetson-orin-nano", "fp16", None, id="tensorrt-fp16"),
    ],
)
def test_target_preset_settings(exported, tmp_path, device, mode, reduce_range):
    report = quantize_model(exported["lstm"], tmp_path / "t.onnx", None, target=device,
                            latency_runs=0)  # fmt: skip
    assert report.mode == mode
    assert report.settings["target"] == device
    assert report.settings.get("reduce_range") == reduce_range


def test_x86_target_follows_host_vnni(exported, tmp_path):
    from rnnedge.quantize.presets import host_needs_reduced_range

    report = quantize_model(exported["lstm"], tmp_path / "t.onnx", None, target="x86-64",
                            latency_runs=0)  # fmt: skip
    assert report.settings["reduce_range"] is host_needs_reduced_range()


def test_cli_json_keys_and_bad_input(exported, tmp_path, rng, capsys):
    import json

    from rnnedge.cli import main

    data = tmp_path / "eval.npz"
    np.savez(data, x=rng.standard_normal((8, 20, FEATURES)).astype(np.float32),
             y=rng.integers(0, 4, 8))  # fmt: skip
    output = tmp_path / "cli.onnx"
    code = main(["quantize", str(exported["gru"]), "-o", str(output), "--eval", str(data),
                 "--latency-runs", "3", "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["size_bytes_after"] == output.stat().st_size
    assert report["float_ops"] == {"GRU": 2}
    assert report["metric"] == "accuracy"
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 20, FEATURES), np.float32))
    bad = tmp_path / "bad.onnx"
    code = main(["quantize", str(exported["gru"]), "-o", str(bad), "--mode", "static-int8",
                 "--calibration", str(empty)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2
    assert "empty axis 0" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert not bad.exists()


def _export_tagger(cell: str, path):
    """Export an LSTM or GRU with a linear head on every step: output (batch, time, 3)."""
    import torch
    from torch import nn

    from rnnedge.export import export_model

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(FEATURES, 16, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    torch.manual_seed(0)
    export_model(Tagger(), path, example_shape=f"1x10x{FEATURES}")
    return path


@pytest.fixture(scope="module")
def taggers(tmp_path_factory):
    root = tmp_path_factory.mktemp("taggers")
    return {cell: _export_tagger(cell, root / f"{cell}.onnx") for cell in ("lstm", "gru")}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("mode", [m.value for m in QuantMode])
def test_tagger_every_mode(taggers, tmp_path, rng, cell, mode):
    # A (batch, time, classes) output once crashed ONNX Runtime in fp16 (a float16
    # Transpose into the head's MatMul) and left the graph out of topological order.
    output = tmp_path / f"{cell}.{mode}.onnx"
    calibration = rng.standard_normal((8, 20, FEATURES)).astype(np.float32)
    report = quantize_model(taggers[cell], output, mode, calibration=calibration, latency_runs=0)
    onnx.checker.check_model(onnx.load(output), full_check=True)
    x = rng.standard_normal((3, 17, FEATURES)).astype(np.float32)
    result = _run(output, x)
    assert result.shape == (3, 17, 3)
    # fp16 and int8 rounding move the outputs of this untrained tagger by about 1e-3.
    np.testing.assert_allclose(result, _run(taggers[cell], x), atol=0.05)
    assert report.drift.max_abs_error < 0.05


def test_checker_failure_is_one_line_error(taggers, tmp_path, monkeypatch):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from rnnedge.errors import CheckFailedError

    # The converter's own output, unsorted: its Cast nodes follow the nodes that read them.
    monkeypatch.setattr(
        "rnnedge.quantize.quantizer.convert_fp16",
        lambda model: convert_float_to_float16(model, keep_io_types=True),
    )
    with pytest.raises(CheckFailedError) as error:
        quantize_model(taggers["lstm"], tmp_path / "q.onnx", "fp16", latency_runs=0)
    message = str(error.value)
    assert "fails the ONNX checker" in message
    assert "topologically sorted" in message
    assert "\n" not in message
    assert not (tmp_path / "q.onnx").exists()


def test_bad_samples_rejected(exported, tmp_path, rng):
    wrong = rng.standard_normal((4, 20, FEATURES + 1)).astype(np.float32)
    with pytest.raises(InputError) as error:
        quantize_model(exported["lstm"], tmp_path / "q.onnx", samples=wrong, latency_runs=0)
    message = str(error.value)
    assert "--samples" in message
    assert f"(4, 20, {FEATURES + 1})" in message
    assert f"axis 2 must be {FEATURES}" in message
    nan = rng.standard_normal((4, 20, FEATURES)).astype(np.float32)
    nan[1, 3, 2] = np.nan
    with pytest.raises(InputError, match="--samples contains 1 NaN or infinite values"):
        quantize_model(exported["lstm"], tmp_path / "q.onnx", samples=nan, latency_runs=0)
    assert not (tmp_path / "q.onnx").exists()


def test_nonfinite_calibration_message(exported, tmp_path, rng):
    data = rng.standard_normal((4, 20, FEATURES)).astype(np.float32)
    data[0, 0, 0] = np.inf
    with pytest.raises(InputError) as error:
        quantize_model(exported["lstm"], tmp_path / "q.onnx", "static-int8", calibration=data)
    assert "--calibration contains 1 NaN or infinite values" in str(error.value)
    assert "--nonfinite" not in str(error.value)


def test_calibration_key_must_name_input(exported, tmp_path, rng):
    data = {"inputs": rng.standard_normal((4, 20, FEATURES)).astype(np.float32)}
    with pytest.raises(InputError, match=r"none named 'x' or 'input'"):
        quantize_model(exported["lstm"], tmp_path / "q.onnx", "static-int8", calibration=data)
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        pytest.param([0, 1, 4, 2], "range from 0 to 4", id="above"),
        pytest.param([0, -1, 3, 2], "range from -1 to 3", id="negative"),
        pytest.param([0.0, 1.5, 3.0, 2.0], "fractional", id="fractional"),
    ],
)
def test_eval_labels_outside_classes_rejected(exported, tmp_path, rng, labels, fragment):
    x = rng.standard_normal((4, 20, FEATURES)).astype(np.float32)
    with pytest.raises(InputError) as error:
        quantize_model(exported["lstm"], tmp_path / "q.onnx", eval_data=(x, np.array(labels)),
                       latency_runs=0)  # fmt: skip
    assert fragment in str(error.value)
    assert "from 0 to 3" in str(error.value)
    assert not (tmp_path / "q.onnx").exists()


def test_cli_samples_wrong_features_exit_2(exported, tmp_path, rng, capsys):
    from rnnedge.cli import main

    samples = tmp_path / "s.npy"
    np.save(samples, rng.standard_normal((4, 20, FEATURES + 2)).astype(np.float32))
    code = main(["quantize", str(exported["gru"]), "-o", str(tmp_path / "q.onnx"),
                 "--samples", str(samples), "--latency-runs", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert f"(4, 20, {FEATURES + 2})" in lines[0]
    assert f"axis 2 must be {FEATURES}" in lines[0]


def test_cli_one_sample_singular(exported, tmp_path, rng, capsys):
    from rnnedge.cli import main

    samples = tmp_path / "s.npy"
    np.save(samples, rng.standard_normal((1, 20, FEATURES)).astype(np.float32))
    code = main(["quantize", str(exported["gru"]), "-o", str(tmp_path / "q.onnx"),
                 "--samples", str(samples), "--latency-runs", "0"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "drift vs float on 1 sample: max abs " in captured.out


def test_output_over_input_rejected(exported, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(exported["lstm"].read_bytes())
    before = model.read_bytes()
    with pytest.raises(InputError, match="is the input model"):
        quantize_model(model, model, "dynamic-int8")
    assert model.read_bytes() == before


def _export_loop_models(root):
    """Export models whose recurrence rnnedge lowers to a Loop, and a conv front end.

    - `proj_packed`: a projected bidirectional LSTM over pack_padded_sequence, with a
      `lengths` input; the projected LSTM becomes a scripted Loop per direction.
    - `proj_plain`: the same LSTM without packing.
    - `grucell`: an nn.GRUCell called once per time step in forward.
    - `conv_lstm`: a Conv1d front end before a 2-layer LSTM.
    - `tiny_gru`: a GRU whose weights are all below weight_only.MIN_ELEMENTS.
    """
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from rnnedge.export import export_model

    class ProjectedPacked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(5, 16, batch_first=True, bidirectional=True, proj_size=8)
            self.head = nn.Linear(16, 3)

        def forward(self, x, lengths):
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            return self.head(out[:, -1])

    class ProjectedPlain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(5, 16, batch_first=True, bidirectional=True, proj_size=8)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    class GruCellLoop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(5, 32)
            self.head = nn.Linear(32, 3)

        def forward(self, x):
            h = torch.zeros(x.shape[0], 32)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return self.head(h)

    class ConvLstm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(5, 16, kernel_size=3, padding=1)
            self.rnn = nn.LSTM(16, 16, num_layers=2, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            features = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
            return self.head(self.rnn(features)[0][:, -1])

    class TinyGru(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(5, 2, batch_first=True)
            self.head = nn.Linear(2, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    models = {
        "proj_packed": ProjectedPacked,
        "proj_plain": ProjectedPlain,
        "grucell": GruCellLoop,
        "conv_lstm": ConvLstm,
        "tiny_gru": TinyGru,
    }
    paths = {}
    for name, model_class in models.items():
        torch.manual_seed(0)
        paths[name] = root / f"{name}.onnx"
        export_model(model_class(), paths[name], example_shape="2x10x5")
    return paths


@pytest.fixture(scope="module")
def loop_models(tmp_path_factory):
    return _export_loop_models(tmp_path_factory.mktemp("loops"))


def _loop_feed(path, rng):
    """A batch of 3 sequences of 12 steps, with lengths when the model takes them."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"input": rng.standard_normal((3, 12, 5)).astype(np.float32)}
    if len(session.get_inputs()) > 1:
        feed[session.get_inputs()[1].name] = np.array([12, 4, 9], np.int64)
    return feed


def _run_feed(path, feed):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


@pytest.mark.parametrize("name", ["proj_packed", "proj_plain"])
@pytest.mark.parametrize("mode", ["dynamic-int8", "static-int8"])
def test_projected_lstm_loop_quantizes(loop_models, tmp_path, rng, name, mode):
    # ONNX Runtime's quantizer put each Loop before the nodes that produce the values its
    # body reads from the outer scope, and the ONNX checker rejected the model.
    output = tmp_path / f"{name}.{mode}.onnx"
    calibration = rng.standard_normal((8, 10, 5)).astype(np.float32)
    report = quantize_model(loop_models[name], output, mode, calibration=calibration,
                            latency_runs=0)  # fmt: skip
    onnx.checker.check_model(onnx.load(output), full_check=True)
    feed = _loop_feed(loop_models[name], rng)
    # int8 rounding moves the outputs of this untrained model by about 1e-3.
    np.testing.assert_allclose(
        _run_feed(output, feed), _run_feed(loop_models[name], feed), atol=0.05
    )
    assert report.drift.max_abs_error < 0.05


def test_dynamic_int8_quantizes_loop_bodies(loop_models, tmp_path):
    report = quantize_model(loop_models["grucell"], tmp_path / "q.onnx", "dynamic-int8",
                            latency_runs=0)  # fmt: skip
    ops = count_ops(onnx.load(tmp_path / "q.onnx"))
    # The head's Gemm and the two MatMuls of the GRU cell in the Loop body.
    assert ops.get("MatMulInteger") == 3
    assert "MatMul" not in ops
    assert report.float_compute_ops == {}
    assert report.recurrent_left_float == ()
    assert report.size_after < 0.7 * report.size_before


@pytest.mark.parametrize("mode", ["static-int8", "weight-int8"])
def test_float_loop_body_reported(loop_models, tmp_path, rng, mode):
    calibration = rng.standard_normal((8, 10, 5)).astype(np.float32)
    report = quantize_model(loop_models["grucell"], tmp_path / "q.onnx", mode,
                            calibration=calibration, latency_runs=0)  # fmt: skip
    assert len(report.recurrent_left_float) == 1
    node, reason = report.recurrent_left_float[0]
    # ONNX Runtime's pre-processing fuses the body's MatMul and Add into Gemm.
    expected = "Gemm x2" if mode == "static-int8" else "MatMul x2"
    assert node == f"{expected} in Loop '/model/Loop'"
    assert "float32" in reason
    assert any(note.startswith(node) for note in report.notes)
    # The body's weights are initializers of the main graph, stored in int8 all the same.
    assert report.size_after < 0.7 * report.size_before


def test_static_int8_counts_no_qdq_lstm(loop_models, tmp_path, rng):
    # The conv front end leaves a DequantizeLinear in front of the first LSTM, which
    # ONNX Runtime still runs in float32.
    calibration = rng.standard_normal((8, 10, 5)).astype(np.float32)
    report = quantize_model(loop_models["conv_lstm"], tmp_path / "q.onnx", "static-int8",
                            calibration=calibration, latency_runs=0)  # fmt: skip
    assert "LSTM (QDQ)" not in report.quantized_ops
    assert report.quantized_ops["Conv (QDQ)"] == 1
    assert report.float_compute_ops["LSTM"] == 2
    assert [node for node, _ in report.recurrent_left_float] == [
        "/model/rnn/LSTM",
        "/model/rnn/LSTM_1",
    ]


def test_cli_reports_larger_file(loop_models, tmp_path, capsys):
    from rnnedge.cli import main

    code = main(["quantize", str(loop_models["tiny_gru"]), "-o", str(tmp_path / "q.onnx"),
                 "--mode", "weight-int8", "--latency-runs", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    size_line = next(line for line in out.splitlines() if line.startswith("size: "))
    # No weight reaches the int8 minimum, and the precision metadata adds bytes.
    assert size_line.endswith("x larger)")


def test_checker_message_names_unnamed_node():
    from onnx import TensorProto, helper

    from rnnedge.errors import CheckFailedError
    from rnnedge.quantize.quantizer import _check_model

    # An unnamed Identity node reads "hidden" before the Relu node that writes it.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["hidden"], ["output"]),
         helper.make_node("Relu", ["input"], ["hidden"], name="relu")],
        "unsorted",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(CheckFailedError) as error:
        _check_model(onnx, model, QuantMode.FP16, Path("m.onnx"))
    message = str(error.value)
    assert "\n" not in message
    assert "input 'hidden' of unnamed Identity node is not output" in message
    assert "nothing was written" in message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        pytest.param("--mode fp16 --gru-int8 always",
                     "--gru-int8 applies to --mode dynamic-int8, not fp16", id="fp16-gru-int8"),
        pytest.param("--mode fp16 --calibration-method entropy",
                     "--calibration-method applies to --mode static-int8, not fp16",
                     id="fp16-calibration-method"),
        pytest.param("--mode static-int8 --calibration {x} --gru-int8-min-hidden 64",
                     "--gru-int8-min-hidden applies to --mode dynamic-int8, not static-int8",
                     id="static-gru-threshold"),
        pytest.param("--mode fp16 --per-channel",
                     "--per-channel/--per-tensor applies to --mode dynamic-int8, static-int8 or "
                     "weight-int8, not fp16", id="fp16-per-channel"),
        pytest.param("--mode weight-int8 --full-range",
                     "--reduce-range/--full-range applies to --mode dynamic-int8 or static-int8, "
                     "not weight-int8", id="weight-int8-full-range"),
        pytest.param("--target jetson-orin-nano --gru-int8 never",
                     "--gru-int8 applies to --mode dynamic-int8, not fp16", id="preset-fp16"),
    ],
)  # fmt: skip
def test_cli_option_for_other_mode(exported, tmp_path, rng, capsys, options, fragment):
    from rnnedge.cli import main

    x = tmp_path / "x.npy"
    np.save(x, rng.standard_normal((4, 10, FEATURES)).astype(np.float32))
    output = tmp_path / "q.onnx"
    argv = ["quantize", str(exported["lstm"]), "-o", str(output), "--latency-runs", "0"]
    code = main(argv + options.format(x=x).split())
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert fragment in lines[0]
    assert "drop the option" in lines[0]
    assert not output.exists()


def test_model_that_onnxruntime_cannot_run_is_one_line(capfd, tmp_path):
    """fp16 of a projected LSTM: either a model that runs, or one error line and no file.

    ONNX Runtime 1.32 fails to run it: the float32 casts that it inserts inside the `Loop`
    of the lowered projection reuse a buffer of another shape.
    """
    torch = pytest.importorskip("torch")
    from rnnedge.cli import main
    from rnnedge.export import export_model

    torch.manual_seed(0)
    source, output = tmp_path / "proj.onnx", tmp_path / "proj.fp16.onnx"
    export_model(torch.nn.LSTM(6, 16, proj_size=8, batch_first=True), source,
                 example_shape="1x10x6")  # fmt: skip
    capfd.readouterr()
    code = main(["quantize", str(source), "-o", str(output), "--mode", "fp16",
                 "--latency-runs", "0"])  # fmt: skip
    err = capfd.readouterr().err
    if code == 0:
        ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        return
    assert code == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ONNX Runtime ")
    assert "nothing was written; try another --mode" in lines[0]
    assert not output.exists()


@pytest.mark.parametrize("mode", ["dynamic-int8", "static-int8"])
def test_model_with_external_data(exported, tmp_path, rng, mode):
    # As torch.onnx.export(..., external_data=True) writes them: the weights in a data
    # file beside the model.
    source = tmp_path / "lstm.onnx"
    onnx.save(onnx.load(exported["lstm"]), str(source), save_as_external_data=True,
              location="lstm.onnx.data", size_threshold=0)  # fmt: skip
    assert (tmp_path / "lstm.onnx.data").stat().st_size > source.stat().st_size
    calibration = rng.standard_normal((20, 30, FEATURES)).astype(np.float32)
    output = tmp_path / f"lstm.{mode}.onnx"
    report = quantize_model(source, output, mode, calibration=calibration, latency_runs=0)
    # The size before counts the data file, so int8 storage shows as a smaller model.
    full_size = source.stat().st_size + (tmp_path / "lstm.onnx.data").stat().st_size
    assert report.size_before == full_size
    assert report.size_after < report.size_before
    x = rng.standard_normal((4, 25, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(_run(output, x), _run(exported["lstm"], x), atol=0.05)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_json_stdout_with_histogram_calibration(exported, tmp_path, rng, capsys, method):
    # ONNX Runtime's histogram calibrators print their progress with print().
    from rnnedge.cli import main

    np.save(tmp_path / "cal.npy", rng.standard_normal((8, 20, FEATURES)).astype(np.float32))
    code = main(["quantize", str(exported["lstm"]), "-o", str(tmp_path / "q.onnx"), "--mode",
                 "static-int8", "--calibration", str(tmp_path / "cal.npy"),
                 "--calibration-method", method, "--json"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out)["mode"] == "static-int8"


@pytest.mark.parametrize("existed", [False, True], ids=["new", "existing"])
def test_cli_interrupt_says_what_was_written(exported, tmp_path, capsys, monkeypatch, existed):
    import rnnedge.quantize
    from rnnedge.cli import main

    output = tmp_path / "q.onnx"
    if existed:
        output.write_bytes(b"earlier")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rnnedge.quantize, "quantize_model", interrupted)
    code = main(["quantize", str(exported["lstm"]), "-o", str(output)])
    err = capsys.readouterr().err
    assert code == 130
    expected = f"{output} is unchanged" if existed else f"nothing was written to {output}"
    assert err == f"error: interrupted; {expected}\n"
