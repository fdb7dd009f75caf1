from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rnnedge.errors import CheckFailedError, InputError
from rnnedge.export import export_checkpoint, load_checkpoint, save_checkpoint
from tests.conftest import FEATURES, LABELS, make_checkpoint

VARIANTS = [
    pytest.param({"cell": "lstm"}, id="lstm"),
    pytest.param({"cell": "gru"}, id="gru"),
    pytest.param({"cell": "lstm", "num_layers": 2, "dropout": 0.3}, id="lstm-2layer-dropout"),
    pytest.param({"cell": "gru", "num_layers": 3}, id="gru-3layer"),
    pytest.param({"cell": "lstm", "bidirectional": True}, id="lstm-bidirectional"),
    pytest.param({"cell": "gru", "bidirectional": True, "num_layers": 2}, id="gru-bi-2layer"),
    pytest.param({"cell": "lstm", "pooling": "last"}, id="lstm-last-step"),
    pytest.param({"cell": "gru", "task": "regression", "num_outputs": 2}, id="gru-regression"),
]


@pytest.mark.parametrize("config", VARIANTS)
def test_export_parity_at_new_shapes(tmp_path, config):
    checkpoint = make_checkpoint(tmp_path / "model.pt", **config)
    report = export_checkpoint(checkpoint, tmp_path / "model.onnx")
    assert report.parity.passed
    assert report.parity.max_abs_error <= 1e-5
    example = (1, 10)
    assert all((c.batch, c.seq_len) != example for c in report.parity.cases)
    assert {c.batch for c in report.parity.cases} != {1}
    onnx.checker.check_model(onnx.load(tmp_path / "model.onnx"), full_check=True)


@pytest.mark.parametrize("opset", [14, 17, 20])
def test_export_opsets(tmp_path, opset):
    checkpoint = make_checkpoint(tmp_path / "model.pt", cell="gru")
    report = export_checkpoint(checkpoint, tmp_path / "model.onnx", opset=opset)
    model = onnx.load(tmp_path / "model.onnx")
    assert report.opset == opset
    assert any(o.domain in ("", "ai.onnx") and o.version == opset for o in model.opset_import)


def test_export_uses_native_recurrent_ops(exported):
    ops = {n.op_type for n in onnx.load(exported["lstm"]).graph.node}
    assert "LSTM" in ops
    ops = {n.op_type for n in onnx.load(exported["gru"]).graph.node}
    assert "GRU" in ops


def test_export_dynamic_axes_match_torch(exported, rng):
    checkpoint = load_checkpoint(exported["lstm.pt"])
    session = ort.InferenceSession(str(exported["lstm"]), providers=["CPUExecutionProvider"])
    for batch, length in [(7, 3), (1, 250)]:
        x = rng.standard_normal((batch, length, FEATURES)).astype(np.float32)
        expected = checkpoint.model(torch.from_numpy(x)).detach().numpy()
        actual = session.run(None, {"input": x})[0]
        np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)


def test_export_metadata_props(exported):
    props = {p.key: p.value for p in onnx.load(exported["gru"]).metadata_props}
    assert props["rnnedge.layout"] == "batch-major"
    assert props["rnnedge.features"] == str(FEATURES)
    assert json.loads(props["rnnedge.labels"]) == LABELS
    normalization = json.loads(props["rnnedge.normalization"])
    assert normalization["mean"] == [0.5] * FEATURES
    assert normalization["std"] == [2.0] * FEATURES
    assert props["rnnedge.task"] == "classification"
    assert props["rnnedge.cell"] == "gru"
    assert props["rnnedge.precision"] == "fp32"


def test_checkpoint_loads_weights_only(exported):
    payload = torch.load(exported["lstm.pt"], weights_only=True)
    assert payload["config"]["cell"] == "lstm"
    assert payload["config"]["num_layers"] == 2
    assert "rnn.weight_ih_l0" in payload["state_dict"]


def test_parity_failure_writes_nothing(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    output = tmp_path / "model.onnx"
    with pytest.raises(CheckFailedError, match="exceeds the tolerance 1e-12"):
        export_checkpoint(checkpoint, output, atol=1e-12)
    assert not output.exists()
    assert list(tmp_path.iterdir()) == [checkpoint]


def test_checkpoint_without_config_rejected(tmp_path):
    model = torch.nn.LSTM(FEATURES, 8)
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(InputError, match="has no model config"):
        export_checkpoint(path, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_checkpoint_needing_pickle_rejected(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.GRU(FEATURES, 8), path)
    with pytest.raises(InputError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "needs full unpickling (it imports torch.nn.modules.rnn.GRU)" in message
    assert "not an rnnedge checkpoint, which loads with weights_only=True" in message
    assert "rnnedge.export.save_checkpoint" in message
    assert "PyTorch 2.6" not in message


def test_truncated_checkpoint_rejected(tmp_path):
    good = make_checkpoint(tmp_path / "good.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError) as error:
        load_checkpoint(broken)
    message = str(error.value)
    assert "cannot load checkpoint" in message
    assert "broken.pt': the file is truncated" in message
    assert "miniz" not in message


def test_mismatched_state_dict_rejected(tmp_path):
    path = make_checkpoint(tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["hidden_size"] = 99
    torch.save(payload, path)
    with pytest.raises(InputError, match="does not match its config"):
        load_checkpoint(path)


@pytest.mark.parametrize("opset", [9, 99])
def test_opset_out_of_range_rejected(tmp_path, opset):
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    with pytest.raises(InputError, match=f"opset {opset} is outside"):
        export_checkpoint(checkpoint, tmp_path / "model.onnx", opset=opset)


def test_save_checkpoint_roundtrip(tmp_path):
    path = make_checkpoint(tmp_path / "model.pt", cell="gru", num_layers=2)
    loaded = load_checkpoint(path)
    save_checkpoint(loaded.model, tmp_path / "again.pt", loaded.labels, loaded.normalization)
    again = load_checkpoint(tmp_path / "again.pt")
    assert again.config == loaded.config
    assert again.labels == LABELS
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key])
