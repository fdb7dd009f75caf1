"""Streaming graphs: state in and out, checked by feeding chunks of 1, 7 and all steps."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from rnnedge.errors import CheckFailedError, InputError
from rnnedge.export import export_checkpoint, export_model, load_checkpoint
from tests.conftest import FEATURES, make_checkpoint


class PerStep(nn.Module):
    def __init__(self, cell: str, **options) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(
            FEATURES, 12, batch_first=True, **options
        )

    def forward(self, x):
        return self.rnn(x)[0]


@pytest.mark.parametrize(
    ("model", "pairs"),
    [
        pytest.param(
            lambda: PerStep("lstm", num_layers=2), [["h0", "hn"], ["c0", "cn"]], id="lstm"
        ),
        pytest.param(lambda: PerStep("gru"), [["h0", "hn"]], id="gru"),
        pytest.param(
            lambda: PerStep("lstm", proj_size=4), [["h0", "hn"], ["c0", "cn"]], id="lstm-proj"
        ),
    ],
)
def test_streaming_chunks_match_whole(tmp_path, model, pairs):
    torch.manual_seed(0)
    report = export_model(model(), tmp_path / "s.onnx", example_shape="1x10x6", streaming=True)
    assert [c.chunk for c in report.streaming] == [1, 7, 23]
    assert all(c.max_abs_error <= 1e-5 for c in report.streaming)
    saved = onnx.load(tmp_path / "s.onnx")
    onnx.checker.check_model(saved, full_check=True)
    props = {p.key: p.value for p in saved.metadata_props}
    assert json.loads(props["rnnedge.state_pairs"]) == pairs


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_streaming_checkpoint(tmp_path, pooling):
    checkpoint = make_checkpoint(tmp_path / "m.pt", cell="gru", pooling=pooling)
    report = export_model(checkpoint, tmp_path / "s.onnx", streaming=True)
    assert max(c.max_abs_error for c in report.streaming) <= 1e-5
    if pooling == "mean":
        assert ("pool_mean0", "pool_meann") in report.metadata.state_pairs


def test_streaming_session_by_hand(tmp_path):
    """Carry the state through ONNX Runtime calls as a runtime would, at batch 2."""
    checkpoint = make_checkpoint(tmp_path / "m.pt", cell="lstm", pooling="last", num_layers=2)
    export_model(checkpoint, tmp_path / "s.onnx", streaming=True)
    model = load_checkpoint(checkpoint).model
    session = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).standard_normal((2, 30, FEATURES)).astype(np.float32)
    state = {"h0": np.zeros((2, 2, 16), np.float32), "c0": np.zeros((2, 2, 16), np.float32)}
    for start in range(0, 30, 4):
        output, hn, cn = session.run(None, {"input": x[:, start : start + 4], **state})
        state = {"h0": hn, "c0": cn}
    expected = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(output, expected, atol=1e-5, rtol=0)


def test_bidirectional_cannot_stream(tmp_path):
    with pytest.raises(InputError, match="bidirectional and cannot stream"):
        export_model(
            PerStep("gru", bidirectional=True), tmp_path / "s.onnx", example_shape="1x10x6",
            streaming=True,
        )  # fmt: skip
    assert not (tmp_path / "s.onnx").exists()


class ConvThenGru(nn.Module):
    """A convolution over time before a GRU, so each step's output depends on the next input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(FEATURES, 8, kernel_size=3, padding=1)
        self.rnn = nn.GRU(8, 12, batch_first=True)

    def forward(self, x):
        return self.rnn(self.conv(x.transpose(1, 2)).transpose(1, 2))[0]


def test_convolution_front_cannot_stream(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(CheckFailedError) as error:
        export_model(ConvThenGru(), tmp_path / "s.onnx", example_shape="1x10x6", streaming=True)
    message = str(error.value)
    assert "depend on more than the carried recurrent state" in message
    assert "a convolution or pooling over time" in message
    assert "export it without --streaming" in message
    assert not (tmp_path / "s.onnx").exists()


def test_non_streaming_export_has_no_state_pairs(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "m.pt")
    report = export_checkpoint(checkpoint, tmp_path / "m.onnx")
    assert report.metadata.state_pairs == ()
    assert report.streaming == ()


class GrowingCellState(nn.Module):
    """An LSTM tagger whose input and forget gates stay open and whose cell input is near 1.

    The cell state then adds about one per step, to about 120 after 123 steps, as in a
    trained LSTM that integrates its input.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.LSTM(FEATURES, 16, batch_first=True)
        self.head = nn.Linear(16, 3)
        hidden = 16
        with torch.no_grad():
            # PyTorch's gate order: input, forget, cell, output.
            self.rnn.bias_ih_l0[: 2 * hidden] += 6.0
            self.rnn.bias_ih_l0[2 * hidden : 3 * hidden] += 4.0

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def test_streaming_large_cell_state(tmp_path):
    model = GrowingCellState().eval()
    with torch.inference_mode():
        _, (_, cell) = model.rnn(torch.randn(2, 123, FEATURES))
    assert cell.abs().max() > 50  # the case this test is about
    report = export_model(model, tmp_path / "s.onnx", example_shape="1x10x6", streaming=True)
    # The model's output keeps the absolute tolerance; the cell state is compared relative
    # to its magnitude, which float32 rounding scales with.
    assert report.parity.max_abs_error <= 1e-5
    assert max(c.max_abs_error for c in report.streaming) <= 1e-5
    session = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(7).standard_normal((2, 123, FEATURES)).astype(np.float32)
    zeros = np.zeros((1, 2, 16), np.float32)
    output, _, cn = session.run(None, {"input": x, "h0": zeros, "c0": zeros})
    with torch.inference_mode():
        expected_cn = model.rnn(torch.from_numpy(x))[1][1].numpy()
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(output, expected, atol=1e-5, rtol=0)
    # float32 rounding of a state near 120 differs by a few units in the last place.
    np.testing.assert_allclose(cn, expected_cn, rtol=1e-5, atol=1e-5)


class GruWithInitialState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(FEATURES, 12, batch_first=True)

    def forward(self, x, h0):
        return self.rnn(x, h0)


def test_state_input_rejection_names_pair(tmp_path):
    with pytest.raises(InputError) as caught:
        export_model(
            GruWithInitialState(), tmp_path / "s.onnx", example_shape="1x10x6", streaming=True
        )
    message = str(caught.value)
    assert "this one also takes h0" in message
    assert "export without --streaming" in message
    # The model's outputs are (out, h), so the export names h "output_1".
    assert "--state h0=output_1" in message
    assert not (tmp_path / "s.onnx").exists()


# Runs a streaming model at batch 3 and length 23 with ONNX Runtime's verbose log on stderr.
RUN_AT_OTHER_LENGTH = """
import sys
import numpy as np
import onnxruntime as ort

options = ort.SessionOptions()
options.log_severity_level = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
sizes = {"batch": 3, "sequence": 23}
feeds = {
    value.name: np.zeros([sizes.get(d, d) for d in value.shape], np.float32)
    for value in session.get_inputs()
}
print([output.shape for output in session.run(None, feeds)])
"""


class LstmTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(FEATURES, 12, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def test_dynamo_streaming_no_stale_length(tmp_path):
    # torch 2.13's dynamo exporter declares the example's length, 10, on the LSTM output
    # that feeds the head.
    torch.manual_seed(0)
    model = LstmTagger()
    report = export_model(
        model, tmp_path / "s.onnx", example_shape="1x10x6", streaming=True, exporter="dynamo"
    )
    assert report.exporter == "dynamo"
    saved = onnx.load(tmp_path / "s.onnx")
    onnx.checker.check_model(saved, full_check=True)
    declared = {
        value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in saved.graph.value_info
    }
    assert [name for name, dims in declared.items() if 10 in dims] == []
    result = subprocess.run(
        [sys.executable, "-c", RUN_AT_OTHER_LENGTH, str(tmp_path / "s.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "[(3, 23, 3), (1, 3, 12), (1, 3, 12)]" in result.stdout
    assert "VerifyOutputSizes" not in result.stderr
