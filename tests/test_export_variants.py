"""The recurrent variants PyTorch can express, each exported and proven at new shapes.

Every export goes through `export_model`, which compares PyTorch and ONNX Runtime at three
(batch, length) pairs that differ from the example's in both; the file is then loaded
again and passed through the ONNX checker. Tolerance: 1e-5 absolute, as in conftest.py.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnedge.export import export_model
from rnnedge.export.exporters import FlatOutputs
from rnnedge.export.graph_dims import fix_output_dims, rename_input_symbols
from rnnedge.export.inputs import BATCH, SEQUENCE, InputRole, InputSpec
from rnnedge.export.parity import ParityCase, check_graph_parity, summarize_ort_error

F = 6  # features
EXAMPLE = "1x10x6"


class Recurrent(nn.Module):
    """An nn.LSTM / nn.GRU followed by a linear head on every step."""

    def __init__(self, cell: str = "lstm", batch_first: bool = True, **options) -> None:
        super().__init__()
        rnn_class = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_class(F, 12, batch_first=batch_first, **options)
        width = options.get("proj_size") or 12
        self.head = nn.Linear(width * (2 if options.get("bidirectional") else 1), 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)


class Stacked(nn.Module):
    """An LSTM of 16 feeding a GRU of 8: stacked modules with different hidden sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.lower = nn.LSTM(F, 16, batch_first=True)
        self.upper = nn.GRU(16, 8, batch_first=True)

    def forward(self, x):
        return self.upper(self.lower(x)[0])[0]


class ConvFront(nn.Module):
    """A 1-D convolution over time, then an LSTM and the last step."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(F, 8, kernel_size=3, padding=1)
        self.rnn = nn.LSTM(8, 12, batch_first=True)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        features = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        out, _ = self.rnn(features)
        return self.head(out[:, -1])


class AttentionPool(nn.Module):
    """A GRU whose steps are pooled by learned attention weights."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(F, 12, batch_first=True, num_layers=2)
        self.score = nn.Linear(12, 1)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        out, _ = self.rnn(x)
        weights = torch.softmax(self.score(out), dim=1)
        return self.head((weights * out).sum(dim=1))


class MultiHead(nn.Module):
    """Mean pooling into two heads, and the final hidden state as a third output."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(F, 12, batch_first=True)
        self.classes = nn.Linear(12, 4)
        self.value = nn.Linear(12, 1)

    def forward(self, x):
        out, (h, _) = self.rnn(x)
        pooled = out.mean(dim=1)
        return self.classes(pooled), self.value(pooled), h


class WithState(nn.Module):
    """Initial state given as inputs: forward(x, h0[, c0])."""

    def __init__(self, cell: str, features: int = F, hidden: int = 12) -> None:
        super().__init__()
        self.is_lstm = cell == "lstm"
        rnn = nn.LSTM if self.is_lstm else nn.GRU
        self.rnn = rnn(features, hidden, num_layers=2, batch_first=True)

    def forward(self, x, h0, c0=None):
        if self.is_lstm:
            out, (h, c) = self.rnn(x, (h0, c0))
            return out, h, c
        out, h = self.rnn(x, h0)
        return out, h


class LstmWithCellState(WithState):
    def __init__(self, features: int = F, hidden: int = 12) -> None:
        super().__init__("lstm", features, hidden)

    def forward(self, x, h0, c0):
        return super().forward(x, h0, c0)


class LstmCellLoop(nn.Module):
    """A Python loop over LSTMCell steps written in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(F, 10)
        self.head = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.size(0), 10, dtype=x.dtype)
        c = torch.zeros(x.size(0), 10, dtype=x.dtype)
        for t in range(x.size(1)):
            h, c = self.cell(x[:, t], (h, c))
        return self.head(h)


class GruCellLoop(nn.Module):
    """A Python loop over GRUCell steps written in forward, returning every step."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(F, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros((x.size(0), 10))
        steps: list[torch.Tensor] = []
        for t in range(x.size(1)):
            h = self.cell(x[:, t], h)
            steps.append(h)
        return torch.stack(steps, 1)


class StackedGruCells(nn.Module):
    """Two GRUCells without bias, the first started from a zero state it creates itself."""

    def __init__(self) -> None:
        super().__init__()
        self.cells = nn.ModuleList([nn.GRUCell(F, 9, bias=False), nn.GRUCell(9, 7, bias=False)])
        self.head = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = torch.zeros(x.size(0), 9, dtype=x.dtype)
        high = torch.zeros(x.size(0), 7, dtype=x.dtype)
        for t in range(x.size(1)):
            low = self.cells[0](x[:, t], low)
            high = self.cells[1](low, high)
        return self.head(high)


class Packed(nn.Module):
    """Padded batches of variable-length sequences through pack_padded_sequence."""

    def __init__(self, enforce_sorted: bool) -> None:
        super().__init__()
        self.enforce_sorted = enforce_sorted
        self.rnn = nn.LSTM(F, 12, num_layers=2, batch_first=True)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(
            x, lengths, batch_first=True, enforce_sorted=self.enforce_sorted
        )
        out, _ = self.rnn(packed)
        padded, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return padded


class PackedProjected(nn.Module):
    """A projected, bidirectional 2-layer LSTM over a packed batch, returning its states."""

    def __init__(self, enforce_sorted: bool) -> None:
        super().__init__()
        self.enforce_sorted = enforce_sorted
        self.rnn = nn.LSTM(F, 12, num_layers=2, batch_first=True, bidirectional=True, proj_size=4)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(
            x, lengths, batch_first=True, enforce_sorted=self.enforce_sorted
        )
        out, (h, c) = self.rnn(packed)
        padded, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return padded, h, c


class PackedProjectedHead(nn.Module):
    """A one-layer, one-direction projected LSTM over a packed batch, with a linear head on
    the padded output."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(F, 32, proj_size=8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        padded, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return self.head(padded)


class PackedFinalState(nn.Module):
    """A classifier on the final state h_n of a recurrent layer run over a packed batch,
    which no exporter of torch 2.13 converts."""

    def __init__(self, cell: str, bidirectional: bool = False) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(
            F, 12, batch_first=True, bidirectional=bidirectional
        )
        self.head = nn.Linear(24 if bidirectional else 12, 3)
        self.bidirectional = bidirectional

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state
        last = torch.cat([h[-2], h[-1]], dim=1) if self.bidirectional else h[-1]
        return self.head(last)


class PackedLastStep(PackedFinalState):
    """The same classifier reading h_n from the padded output, as docs/export.md shows: the
    forward direction ends at each sequence's last valid step, the backward one at step 0."""

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        steps = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))
        last = out.gather(1, steps).squeeze(1)
        if self.bidirectional:
            last = torch.cat([last[:, :12], out[:, 0, 12:]], dim=1)
        return self.head(last)


VARIANTS = [
    pytest.param(lambda: Recurrent("lstm"), "LSTM", id="lstm-1layer"),
    pytest.param(lambda: Recurrent("gru"), "GRU", id="gru-1layer"),
    pytest.param(lambda: Recurrent("lstm", num_layers=4), "LSTM", id="lstm-4layer"),
    pytest.param(lambda: Recurrent("gru", num_layers=4), "GRU", id="gru-4layer"),
    pytest.param(lambda: Recurrent("lstm", bidirectional=True), "LSTM", id="lstm-bidirectional"),
    pytest.param(
        lambda: Recurrent("gru", bidirectional=True, num_layers=2), "GRU", id="gru-bi-2layer"
    ),
    pytest.param(lambda: Recurrent("lstm", batch_first=False), "LSTM", id="lstm-time-major"),
    pytest.param(
        lambda: Recurrent("gru", batch_first=False, bidirectional=True),
        "GRU",
        id="gru-time-major-bi",
    ),
    pytest.param(lambda: Recurrent("lstm", bias=False), "LSTM", id="lstm-no-bias"),
    pytest.param(lambda: Recurrent("gru", bias=False, num_layers=2), "GRU", id="gru-no-bias"),
    pytest.param(
        lambda: Recurrent("lstm", num_layers=3, dropout=0.4), "LSTM", id="lstm-3layer-dropout"
    ),
    pytest.param(lambda: Recurrent("gru", num_layers=2, dropout=0.5), "GRU", id="gru-dropout"),
    pytest.param(Stacked, "GRU", id="stacked-lstm16-gru8"),
    pytest.param(ConvFront, "LSTM", id="conv-front-end"),
    pytest.param(AttentionPool, "GRU", id="attention-pooling"),
    pytest.param(MultiHead, "LSTM", id="multi-output-head"),
    pytest.param(lambda: Recurrent("lstm", proj_size=5), "Loop", id="lstm-proj"),
    pytest.param(
        lambda: Recurrent("lstm", proj_size=4, num_layers=2, bidirectional=True),
        "Loop",
        id="lstm-proj-bi-2layer",
    ),
    pytest.param(
        lambda: Recurrent("lstm", proj_size=4, batch_first=False, bias=False),
        "Loop",
        id="lstm-proj-time-major-no-bias",
    ),
    pytest.param(LstmCellLoop, "Loop", id="lstmcell-loop"),
    pytest.param(GruCellLoop, "Loop", id="grucell-loop"),
    pytest.param(StackedGruCells, "Loop", id="grucell-stacked-no-bias"),
]


def _export(tmp_path, model, example=EXAMPLE, **options):
    torch.manual_seed(0)
    return export_model(model, tmp_path / "model.onnx", example_shape=example, **options)


@pytest.mark.parametrize(("build", "operator"), VARIANTS)
def test_variant_parity_at_new_shapes(tmp_path, build, operator):
    torch.manual_seed(0)
    model = build()
    report = export_model(model, tmp_path / "model.onnx", example_shape=EXAMPLE)
    assert report.parity.max_abs_error <= 1e-5, report.format_text()
    assert all(c.batch != 1 and c.seq_len != 10 for c in report.parity.cases)
    saved = onnx.load(tmp_path / "model.onnx")
    onnx.checker.check_model(saved, full_check=True)
    assert operator in {node.op_type for node in saved.graph.node}


def test_time_major_layout_recorded(tmp_path):
    report = _export(tmp_path, Recurrent("gru", batch_first=False))
    assert report.metadata.layout.value == "time-major"
    assert report.inputs[0].shape == ("sequence", "batch", F)


def test_time_major_flag_overrides_guess(tmp_path):
    report = _export(tmp_path, Recurrent("gru", batch_first=False), batch_first=False)
    assert report.metadata.layout.value == "time-major"


def test_cell_loop_falls_back_from_trace(tmp_path):
    report = _export(tmp_path, LstmCellLoop())
    assert report.capture == "script"
    first = report.attempts[0]
    assert (first.exporter, first.capture) == ("torchscript", "trace")
    # Tracing unrolled the loop to the example's 10 steps, so other lengths fail.
    assert first.max_abs_error is None or first.max_abs_error > 1e-5


def test_grucell_loop_leaves_the_model_unchanged(tmp_path):
    model = GruCellLoop()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    report = _export(tmp_path, model)
    assert report.capture == "script"
    assert type(model.cell) is nn.GRUCell
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(LstmWithCellState, id="lstm-h0-c0"),
        pytest.param(lambda: WithState("gru"), id="gru-h0"),
    ],
)
def test_state_inputs_have_dynamic_batch(tmp_path, model):
    report = _export(tmp_path, model())
    assert report.parity.max_abs_error <= 1e-5
    states = [v for v in report.inputs if v.name in ("h0", "c0")]
    assert states
    for state in states:
        assert state.shape[1] == "batch", state


@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
def test_packed_sequences_with_lengths(tmp_path, enforce_sorted):
    report = _export(tmp_path, Packed(enforce_sorted))
    assert [v.name for v in report.inputs] == ["input", "lengths"]
    assert report.inputs[1].dtype == "int64"
    assert report.parity.max_abs_error <= 1e-5


@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
def test_packed_projected_lstm(tmp_path, enforce_sorted):
    torch.manual_seed(0)
    model = PackedProjected(enforce_sorted).eval()
    report = _export(tmp_path, model)
    assert report.lowered == ("rnn",)
    assert [v.name for v in report.inputs] == ["input", "lengths"]
    assert report.parity.max_abs_error <= 1e-5
    lengths = torch.tensor([9, 7, 3, 1]) if enforce_sorted else torch.tensor([3, 9, 1, 7])
    x = torch.randn(4, 9, F)
    with torch.inference_mode():
        expected = [t.numpy() for t in model(x, lengths)]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"input": x.numpy(), "lengths": lengths.numpy()})
    for want, got in zip(expected, actual, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_sorted_packing_batch_example(tmp_path):
    # pack_padded_sequence(enforce_sorted=True) rejects the example's lengths unless they
    # are in decreasing order, which only matters when the example batch is over 1.
    report = _export(tmp_path, Packed(enforce_sorted=True), example="4x10x6")
    assert report.capture == "trace"
    assert report.parity.max_abs_error <= 1e-5, report.format_text()
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input", "lengths"]


def test_packed_projected_one_layer_head(tmp_path):
    torch.manual_seed(0)
    model = PackedProjectedHead().eval()
    report = _export(tmp_path, model, example="4x10x6")
    assert report.lowered == ("rnn",)
    assert report.parity.max_abs_error <= 1e-5, report.format_text()
    assert all(c.batch != 4 and c.seq_len != 10 for c in report.parity.cases)
    lengths = torch.tensor([3, 12, 1, 7, 12])
    x = torch.randn(5, 12, F)
    with torch.inference_mode():
        expected = model(x, lengths).numpy()
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"input": x.numpy(), "lengths": lengths.numpy()})
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("module_batch_first", "flag_batch_first", "flag"),
    [(False, True, "--batch-first"), (True, False, "--time-major")],
)
def test_layout_flag_contradicting_module_warns(
    tmp_path, caplog, module_batch_first, flag_batch_first, flag
):
    caplog.set_level(logging.WARNING, logger="rnnedge")
    model = nn.GRU(F, 16, batch_first=module_batch_first)
    _export(tmp_path, model, batch_first=flag_batch_first)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    layout = [message for message in warned if "contradicts" in message]
    assert len(layout) == 1, warned
    assert layout[0].startswith(flag)
    assert f"batch_first={module_batch_first}" in layout[0]


def test_layout_flag_matching_module_is_quiet(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="rnnedge")
    _export(tmp_path, nn.GRU(F, 16), batch_first=False)
    assert not any("contradicts" in r.getMessage() for r in caplog.records)


def test_multi_output_names_and_axes(tmp_path):
    report = _export(tmp_path, MultiHead())
    assert [v.name for v in report.outputs] == ["output", "output_1", "output_2"]
    assert report.outputs[0].shape == ("batch", 4)
    assert report.outputs[2].shape == (1, "batch", 12)


@pytest.mark.parametrize("opset", [14, 17, 20])
def test_projection_lowering_opsets(tmp_path, opset):
    report = _export(tmp_path, Recurrent("lstm", proj_size=3), opset=opset)
    assert report.opset == opset
    assert report.lowered == ("rnn",)
    assert report.parity.max_abs_error <= 1e-5


def test_dynamo_exporter_gru(tmp_path):
    report = _export(tmp_path, Recurrent("gru", num_layers=2), exporter="dynamo")
    assert report.exporter == "dynamo"
    assert report.opset == 18
    assert report.parity.max_abs_error <= 1e-5
    gru = [n for n in onnx.load(tmp_path / "model.onnx").graph.node if n.op_type == "GRU"]
    assert gru
    for node in gru:
        attributes = {a.name: a.i for a in node.attribute}
        assert attributes.get("linear_before_reset") == 1


def test_dynamo_falls_back_to_torchscript(tmp_path):
    report = _export(tmp_path, LstmCellLoop(), exporter="dynamo")
    assert report.attempts[0].exporter == "dynamo"
    assert report.exporter == "torchscript"
    assert report.parity.max_abs_error <= 1e-5


class UnscriptableLoop(nn.Module):
    """A loop over time that no exporter keeps: tracing unrolls it, TorchScript rejects the
    try block, and torch.export fixes the length."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(F, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros((x.size(0), 10))
        c = x.new_zeros((x.size(0), 10))
        steps = []
        for t in range(x.size(1)):
            try:
                h, c = self.cell(x[:, t], (h, c))
            except RuntimeError:
                raise
            steps.append(h)
        return torch.stack(steps, 1)


def build_unscriptable_loop() -> nn.Module:
    torch.manual_seed(0)
    return UnscriptableLoop()


def test_unexportable_loop_exits_5_quietly(capfd, tmp_path):
    from rnnedge.cli import main

    output = tmp_path / "g.onnx"
    code = main([
        "export", "tests.test_export_variants:build_unscriptable_loop", "--example-shape", EXAMPLE,
        "-o", str(output),
    ])  # fmt: skip
    captured = capfd.readouterr()
    assert code == 5, captured.err
    # The exporter's Torch IR dump and ONNX Runtime's log go to the debug log, not the
    # terminal: stdout stays empty and stderr has only rnnedge's own lines.
    assert captured.out == ""
    assert "\x1b[" not in captured.err
    assert "Torch IR" not in captured.err
    lines = captured.err.strip().splitlines()
    assert all(line.startswith(("WARNING: ", "error: ")) for line in lines), captured.err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1
    assert "no exporter produced a graph that computes what PyTorch does" in errors[0]
    assert "output 0 has shape" in errors[0]
    assert not output.exists()


def test_rounding_difference_exits_3(tmp_path):
    from rnnedge.errors import CheckFailedError

    with pytest.raises(CheckFailedError, match="the difference is float rounding"):
        _export(tmp_path, Recurrent("gru"), atol=1e-12)
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_packed_final_state_names_fix(tmp_path, cell):
    from rnnedge.errors import ExportError

    with pytest.raises(ExportError) as failure:
        _export(tmp_path, PackedFinalState(cell).eval())
    message = str(failure.value)
    cause = (
        f"layer 'rnn' ({cell.upper()}) runs over a PackedSequence and the output uses its "
        "final state h_n, which the ONNX exporters of torch"
    )
    fix = "read each sequence's last valid step from the output of pad_packed_sequence"
    assert cause in message
    assert fix in message
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize(
    ("cell", "bidirectional"), [("lstm", False), ("gru", False), ("gru", True)],
    ids=["lstm", "gru", "gru-bidirectional"],
)  # fmt: skip
def test_packed_last_step_exports(tmp_path, cell, bidirectional):
    torch.manual_seed(0)
    final_state = PackedFinalState(cell, bidirectional).eval()
    last_step = PackedLastStep(cell, bidirectional).eval()
    last_step.load_state_dict(final_state.state_dict())
    x = torch.randn(3, 9, F)
    lengths = torch.tensor([9, 2, 5])
    with torch.no_grad():
        torch.testing.assert_close(last_step(x, lengths), final_state(x, lengths))
    report = _export(tmp_path, last_step)
    assert [v.name for v in report.inputs] == ["input", "lengths"]
    assert report.parity.max_abs_error <= 1e-5


def test_packed_state_check_ignores_padded_output():
    from rnnedge.export.diagnostics import packed_final_state_layers

    x = torch.randn(2, 7, F)
    lengths = torch.tensor([7, 3])
    assert packed_final_state_layers(PackedLastStep("gru"), [x, lengths]) == []
    assert packed_final_state_layers(PackedFinalState("gru"), [x, lengths]) == ["layer 'rnn' (GRU)"]


class ProjectedWithState(nn.Module):
    """A projected 2-layer LSTM returning its output and final h, both proj_size wide."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 32, 2, batch_first=True, proj_size=16)

    def forward(self, x):
        out, (h, _) = self.rnn(x)
        return out, h


def _dims(values) -> dict[str, list[int | str]]:
    return {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in values
    }


def _parity_of_saved(path, model, features, output_axes):
    """Run the parity check on the written file at shapes the export did not use."""
    spec = InputSpec("input", InputRole.SEQUENCE, (BATCH, SEQUENCE, features))
    return check_graph_parity(
        FlatOutputs(model), path.read_bytes(), [spec], [(4, 23), (6, 2)], output_axes, seed=1
    )


def test_projected_output_dims_fixed(tmp_path):
    model = ProjectedWithState()
    report = _export(tmp_path, model, example="1x10x8")
    text = report.format_text()
    assert "outputs: output float32[batch, sequence, 16]; output_1 float32[2, batch, 16]" in text
    assert report.outputs[1].shape == (2, "batch", 16)
    saved = onnx.load(tmp_path / "model.onnx")
    onnx.checker.check_model(saved, full_check=True)
    assert _dims(saved.graph.output) == {
        "output": ["batch", "sequence", 16],
        "output_1": [2, "batch", 16],
    }
    metadata = {p.key: p.value for p in saved.metadata_props}
    assert metadata["rnnedge.proj_size"] == "16"
    assert metadata["rnnedge.exporter"] == "torchscript (trace)"
    parity = _parity_of_saved(
        tmp_path / "model.onnx", model, 8, [{0: BATCH, 1: SEQUENCE}, {1: BATCH}]
    )
    assert parity.passed, parity.cases


# Models for the dynamo exporter, exported by the CLI in a child process per export.
DYNAMO_MODELS = """
import torch
from torch import nn


class GruWithState(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(6, 12, num_layers=2, batch_first=True)

    def forward(self, x):
        out, h = self.rnn(x)
        return out, h


class LstmTagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(6, 12, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def gru_with_state():
    torch.manual_seed(0)
    return GruWithState()


def lstm_tagger():
    torch.manual_seed(0)
    return LstmTagger()
"""


def _export_dynamo_cli(tmp_path, factory, *options):
    """Export a factory of DYNAMO_MODELS with the CLI in a child process; return the report."""
    (tmp_path / "dynamo_models.py").write_text(DYNAMO_MODELS)
    command = [
        sys.executable, "-m", "rnnedge", "export", f"{tmp_path / 'dynamo_models.py'}:{factory}",
        "--example-shape", EXAMPLE, "--exporter", "dynamo", "-o", str(tmp_path / "model.onnx"),
        "--json", *options,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _build_dynamo_model(factory):
    namespace: dict = {}
    exec(DYNAMO_MODELS, namespace)
    return namespace[factory]()


def test_dynamo_axes_named(tmp_path):
    report = _export_dynamo_cli(tmp_path, "gru_with_state")
    assert report["exporter"] == "dynamo"
    assert report["inputs"][0]["shape"] == ["batch", "sequence", F]
    assert [v["shape"] for v in report["outputs"]] == [["batch", "sequence", 12], [2, "batch", 12]]
    saved = onnx.load(tmp_path / "model.onnx")
    onnx.checker.check_model(saved, full_check=True)
    assert _dims(saved.graph.input) == {"input": ["batch", "sequence", F]}
    assert _dims(saved.graph.output) == {
        "output": ["batch", "sequence", 12],
        "output_1": [2, "batch", 12],
    }
    symbols = [
        dim.dim_param
        for value in [*saved.graph.input, *saved.graph.output, *saved.graph.value_info]
        for dim in value.type.tensor_type.shape.dim
        if re.search(r"\bs\d+\b", dim.dim_param)
    ]
    assert symbols == []
    metadata = {p.key: p.value for p in saved.metadata_props}
    assert metadata["rnnedge.exporter"] == "dynamo (torch.export)"
    model = _build_dynamo_model("gru_with_state")
    axes = [{0: BATCH, 1: SEQUENCE}, {1: BATCH}]
    parity = _parity_of_saved(tmp_path / "model.onnx", model, F, axes)
    assert parity.passed, parity.cases


def test_dynamo_streaming_output_length_named(tmp_path):
    # torch 2.13's dynamo exporter declares the example's length (10) on this output.
    report = _export_dynamo_cli(tmp_path, "lstm_tagger", "--streaming")
    assert report["exporter"] == "dynamo"
    assert report["outputs"][0]["shape"] == ["batch", "sequence", 3]
    assert [v["shape"] for v in report["inputs"]] == [
        ["batch", "sequence", F],
        [1, "batch", 12],
        [1, "batch", 12],
    ]


def _output_graph(*shapes):
    outputs = [
        onnx.helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.FLOAT, shape)
        for i, shape in enumerate(shapes)
    ]
    return onnx.helper.make_graph([], "dims", [], outputs)


# Three parity cases, (batch, length): the output sizes below are read per case.
DIM_CASES = ((3, 37), (2, 1), (5, 123))


@pytest.mark.parametrize(
    ("declared", "observed", "planned", "expected"),
    [
        pytest.param("Transposeoutput_dim_2", (16, 16, 16), None, 16, id="fixed-size"),
        pytest.param("unk__3", (3, 2, 5), None, "batch", id="follows-batch"),
        pytest.param("unk__4", (37, 1, 123), None, "sequence", id="follows-length"),
        pytest.param("unk__5", (4, 7, 9), None, "unk__5", id="no-name-derivable"),
        pytest.param("unk__6", (4, 7, 9), "dim1", "dim1", id="planned-name"),
        pytest.param("2*sequence", (74, 2, 246), None, "2*sequence", id="readable-expression"),
        pytest.param("batch", (3, 2, 5), None, "batch", id="axis-name-kept"),
        pytest.param(10, (37, 1, 123), "sequence", "sequence", id="contradicted-size-named"),
        pytest.param(10, (4, 7, 9), None, 0, id="contradicted-size-cleared"),
        pytest.param(8, (8, 8, 8), None, 8, id="size-kept"),
    ],
)
def test_fix_output_dims_cases(declared, observed, planned, expected):
    graph = _output_graph([declared])
    cases = [
        ParityCase(batch, seq_len, 0.0, output_shapes=((size,),))
        for (batch, seq_len), size in zip(DIM_CASES, observed, strict=True)
    ]
    output_axes = [{0: planned}] if planned else [{}]
    axis_names = {BATCH, SEQUENCE, "dim1"}
    changes = fix_output_dims(graph, cases, output_axes, axis_names)
    assert _dims(graph.output) == {"out0": [expected]}
    assert bool(changes) == (expected != declared)


def test_fix_output_dims_needs_every_case():
    graph = _output_graph(["unk__1"])
    cases = [
        ParityCase(3, 37, 0.0, output_shapes=((16,),)),
        ParityCase(2, 1, float("inf"), detail="ONNX Runtime failed"),
    ]
    assert fix_output_dims(graph, cases, [{}], {BATCH, SEQUENCE}) == []
    assert _dims(graph.output) == {"out0": ["unk__1"]}


def test_rename_input_symbols_everywhere():
    graph = onnx.helper.make_graph(
        [],
        "symbols",
        [
            onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["s2", "s4", F]),
            onnx.helper.make_tensor_value_info("h0", onnx.TensorProto.FLOAT, [1, "s2", 12]),
        ],
        [onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["s2", "s4 + 1"])],
        value_info=[onnx.helper.make_tensor_value_info("mid", onnx.TensorProto.FLOAT, ["s42"])],
    )
    specs = [
        InputSpec("input", InputRole.SEQUENCE, (BATCH, SEQUENCE, F)),
        InputSpec("h0", InputRole.STATE_H, (1, BATCH, 12)),
    ]
    assert rename_input_symbols(graph, specs) == {"s2": "batch", "s4": "sequence"}
    assert _dims(graph.input) == {"input": ["batch", "sequence", F], "h0": [1, "batch", 12]}
    assert _dims(graph.output) == {"output": ["batch", "sequence + 1"]}
    assert _dims(graph.value_info) == {"mid": ["s42"]}


def test_rename_input_symbols_keeps_ambiguous():
    # One symbol at the batch axis of one input and the time axis of another.
    graph = onnx.helper.make_graph(
        [],
        "symbols",
        [
            onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["s0", "s0", F]),
        ],
        [],
    )
    specs = [InputSpec("input", InputRole.SEQUENCE, (BATCH, SEQUENCE, F))]
    assert rename_input_symbols(graph, specs) == {}
    assert _dims(graph.input) == {"input": ["s0", "s0", F]}


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(ProjectedWithState, id="two-layer"),
        pytest.param(
            lambda: Recurrent("lstm", proj_size=4, num_layers=2, bidirectional=True),
            id="bidirectional",
        ),
    ],
)
def test_projected_lstm_dynamo_scan(tmp_path, build):
    torch.manual_seed(0)
    model = build()
    features = 8 if isinstance(model, ProjectedWithState) else F
    report = _export(tmp_path, model, example=f"1x10x{features}", exporter="dynamo")
    assert report.exporter == "dynamo", report.attempts
    assert report.attempts == ()
    assert report.parity.max_abs_error <= 1e-5
    saved = onnx.load(tmp_path / "model.onnx")
    onnx.checker.check_model(saved, full_check=True)
    assert "Scan" in {node.op_type for node in saved.graph.node}


class TimeMajorGruHead(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(F, hidden)
        self.head = nn.Linear(hidden, 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def test_dynamo_second_export_in_process(tmp_path):
    # torch 2.13 caches the Python-loop GRU kernel during the first dynamo export. Unless
    # rnnedge clears that cache, the second export fixes the time axis and falls back.
    exporters = []
    for hidden in (12, 8):
        torch.manual_seed(0)
        model = Recurrent("gru")
        model.rnn = nn.GRU(F, hidden, batch_first=True)
        model.head = nn.Linear(hidden, 3)
        report = _export(tmp_path, model, exporter="dynamo")
        exporters.append((report.exporter, [a.error for a in report.attempts]))
    assert exporters == [("dynamo", []), ("dynamo", [])]


def test_ort_run_failure_reported(tmp_path):
    # torch 2.13's dynamo exporter fixes a Reshape of this model's time-major output to the
    # example's length, so ONNX Runtime fails at the first parity case.
    torch.manual_seed(0)
    report = _export(tmp_path, TimeMajorGruHead(16), batch_first=False, exporter="dynamo")
    first = report.attempts[0]
    assert first.exporter == "dynamo"
    assert first.error.startswith(
        "ONNX Runtime failed to run the export at batch 3, length 37: Reshape node '"
    ), first.error
    assert "The input tensor cannot be reshaped to the requested shape" in first.error
    assert "tolerance" not in first.error
    assert "onnxruntime::" not in first.error


def test_ort_error_summary_shortened():
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Reshape", ["x", "shape"], ["y"], name="fixed_reshape")],
        "reshape",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 16])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[onnx.numpy_helper.from_array(np.array([10, -1, 16]), "shape")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception) as caught:  # onnxruntime's own Fail type
        session.run(None, {"x": np.zeros((37, 16), np.float32)})
    summary = summarize_ort_error(caught.value)
    assert summary.startswith("Reshape node 'fixed_reshape': The input tensor cannot be")
    assert "requested shape:{10,-1,16}" in summary
    short = summarize_ort_error(caught.value, limit=60)
    assert len(short) <= 60
    assert short.endswith("...")
    assert summary.startswith(short.removesuffix("..."))
    assert short.removesuffix("...").split()[-1] in summary.split()
