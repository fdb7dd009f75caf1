from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rnnedge.errors import InputError
from rnnedge.quantize import quantize_model
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


def test_dynamic_int8_reports_float_gru(exported, tmp_path):
    report = quantize_model(exported["gru"], tmp_path / "gru.int8.onnx", "dynamic-int8")
    assert report.float_compute_ops == {"GRU": 2}
    assert any("GRU stays float" in note for note in report.notes)


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
