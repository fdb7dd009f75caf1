"""The int8 GRU rewrite against ONNX Runtime's float GRU operator.

Tolerances: the same graph built with float MatMul products (`float_weights=True`) must
match the GRU operator to float32 rounding, 1e-5 over up to 1000 steps (observed about 3e-7);
this checks the gate order, biases, directions and state handling exactly. The int8 graph
adds weight and activation rounding: with per-channel weight scales its outputs stay within
0.06 of the float operator for these weights (observed 3e-3 to 4e-2). Padded steps of a
`sequence_lens` input must come out exactly 0 in Y, because the rewrite selects them with
`Where` rather than computing them.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rnnedge.cli import main
from rnnedge.quantize.gru_int8 import quantize_weight, rewrite_grus
from rnnedge.quantize.report import count_ops

FEATURES, HIDDEN = 10, 16


def make_stacked_gru(
    directions: int, layers: int, initial_state: bool, lengths: bool = False, **gru_attributes
):
    """GRU layers over a (time, batch, features) input, each fed the previous layer's output.

    With `lengths` the model has an int32 input `lens` of shape (batch,), the `sequence_lens`
    of every layer.
    """
    rng = np.random.default_rng(0)
    nodes, initializers, current = [], [], "x"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", FEATURES])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
    outputs = []
    direction = "bidirectional" if directions == 2 else "forward"
    for layer in range(layers):
        width = FEATURES if layer == 0 else HIDDEN * directions
        shapes = {"W": (directions, 3 * HIDDEN, width), "R": (directions, 3 * HIDDEN, HIDDEN)}
        for role, shape in shapes.items():
            value = rng.standard_normal(shape) / np.sqrt(shape[-1])
            initializers.append(numpy_helper.from_array(value.astype(np.float32), f"{role}{layer}"))
        bias = 0.1 * rng.standard_normal((directions, 6 * HIDDEN))
        initializers.append(numpy_helper.from_array(bias.astype(np.float32), f"B{layer}"))
        state = f"h0_{layer}" if initial_state else ""
        if initial_state:
            inputs.append(
                helper.make_tensor_value_info(state, TensorProto.FLOAT, [directions, "B", HIDDEN])
            )
        attributes = {"hidden_size": HIDDEN, "linear_before_reset": 1, "direction": direction}
        attributes.update(gru_attributes)
        nodes += [
            helper.make_node("GRU", [current, f"W{layer}", f"R{layer}", f"B{layer}",
                                     "lens" if lengths else "", state],
                             [f"Y{layer}", f"Yh{layer}"], name=f"gru{layer}", **attributes),
            helper.make_node("Transpose", [f"Y{layer}"], [f"Yt{layer}"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"Yt{layer}", "merge"], [f"X{layer + 1}"]),
        ]  # fmt: skip
        current = f"X{layer + 1}"
        outputs.append(
            helper.make_tensor_value_info(
                f"Yh{layer}", TensorProto.FLOAT, [directions, "B", HIDDEN]
            )
        )
    initializers.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "merge"))
    width = HIDDEN * directions
    outputs.insert(0, helper.make_tensor_value_info(current, TensorProto.FLOAT, ["T", "B", width]))
    graph = helper.make_graph(nodes, "stacked_gru", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _feed(directions: int, layers: int, initial_state: bool, steps: int, batch: int):
    rng = np.random.default_rng(steps * 10 + batch)
    feed = {"x": rng.standard_normal((steps, batch, FEATURES)).astype(np.float32)}
    if initial_state:
        for layer in range(layers):
            state = 0.5 * rng.standard_normal((directions, batch, HIDDEN))
            feed[f"h0_{layer}"] = state.astype(np.float32)
    return feed


def _rewritten(model: onnx.ModelProto, **options) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    rewrite_grus(copy, **options)
    onnx.checker.check_model(copy, full_check=True)
    return copy


CASES = [
    pytest.param(d, layers, state, steps, batch, id=f"{name}-{layers}layer-{sid}-T{steps}-B{batch}")
    for d, name in ((1, "forward"), (2, "bidirectional"))
    for layers in (1, 2)
    for state, sid in ((True, "h0"), (False, "zero-h0"))
    for steps, batch in ((1, 1), (7, 3), (1000, 2))
]  # fmt: skip


@pytest.mark.parametrize(("directions", "layers", "initial_state", "steps", "batch"), CASES)
def test_rewrite_matches_gru_operator(directions, layers, initial_state, steps, batch):
    model = make_stacked_gru(directions, layers, initial_state)
    feed = _feed(directions, layers, initial_state, steps, batch)
    expected = _run(model, feed)
    exact = _run(_rewritten(model, float_weights=True), feed)
    quantized = _run(_rewritten(model, per_channel=True), feed)
    for want, got_exact, got_int8 in zip(expected, exact, quantized, strict=True):
        assert got_exact.shape == want.shape
        np.testing.assert_allclose(got_exact, want, atol=1e-5)
        assert got_int8.shape == want.shape
        assert np.abs(got_int8 - want).max() < 0.06


def test_reverse_direction_matches():
    model = make_stacked_gru(1, 1, True, direction="reverse")
    feed = _feed(1, 1, True, 9, 2)
    expected = _run(model, feed)
    got = _run(_rewritten(model, float_weights=True), feed)
    np.testing.assert_allclose(got[0], expected[0], atol=1e-5)
    np.testing.assert_allclose(got[1], expected[1], atol=1e-5)


def _compare(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Check the float-product and the int8 rewrite against the GRU operator on `feed`.

    Returns the outputs of the int8 rewrite.
    """
    expected = _run(model, feed)
    exact = _run(_rewritten(model, float_weights=True), feed)
    quantized = _run(_rewritten(model, per_channel=True), feed)
    for want, got_exact, got_int8 in zip(expected, exact, quantized, strict=True):
        assert got_exact.shape == want.shape
        np.testing.assert_allclose(got_exact, want, atol=1e-5)
        assert got_int8.shape == want.shape
        assert np.abs(got_int8 - want).max() < 0.06
    return quantized


RESET_BEFORE_CASES = [
    pytest.param(direction, state, steps, batch, id=f"{direction}-{sid}-T{steps}-B{batch}")
    for direction in ("forward", "reverse", "bidirectional")
    for state, sid in ((True, "h0"), (False, "zero-h0"))
    for steps, batch in ((1, 1), (7, 3), (300, 2))
]  # fmt: skip


@pytest.mark.parametrize(("direction", "initial_state", "steps", "batch"), RESET_BEFORE_CASES)
def test_reset_before_product_matches(direction, initial_state, steps, batch):
    directions = 2 if direction == "bidirectional" else 1
    model = make_stacked_gru(
        directions, 2, initial_state, direction=direction, linear_before_reset=0
    )
    _compare(model, _feed(directions, 2, initial_state, steps, batch))


LENGTH_CASES = [
    pytest.param(direction, reset, state, id=f"{direction}-lbr{reset}-{sid}")
    for direction in ("forward", "reverse", "bidirectional")
    for reset in (0, 1)
    for state, sid in ((True, "h0"), (False, "zero-h0"))
]  # fmt: skip


@pytest.mark.parametrize(("direction", "linear_before_reset", "initial_state"), LENGTH_CASES)
def test_sequence_lens_matches(direction, linear_before_reset, initial_state):
    directions = 2 if direction == "bidirectional" else 1
    model = make_stacked_gru(directions, 2, initial_state, lengths=True, direction=direction,
                             linear_before_reset=linear_before_reset)  # fmt: skip
    steps, lengths = 8, np.array([8, 1, 5, 3], np.int32)
    feed = _feed(directions, 2, initial_state, steps, len(lengths))
    feed["lens"] = lengths
    y, *_ = _compare(model, feed)
    for b, length in enumerate(lengths):
        assert not y[length:, b].any(), f"batch entry {b}: steps from {length} on are not 0"
        assert y[length - 1, b].any()


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_zero_length_gives_zero_state(direction):
    # onnxruntime 1.32's float GRU returns Y_h = 0 for a zero length, not the initial state.
    directions = 2 if direction == "bidirectional" else 1
    model = make_stacked_gru(directions, 1, True, lengths=True, direction=direction)
    feed = _feed(directions, 1, True, 4, 3)
    feed["lens"] = np.array([0, 4, 2], np.int32)
    y, y_h = _compare(model, feed)
    assert not y[:, 0].any()
    assert not y_h[:, 0].any()
    assert y_h[:, 1].any()


def test_padding_values_do_not_reach_outputs():
    model = _rewritten(make_stacked_gru(2, 1, False, lengths=True))
    feed = _feed(2, 1, False, 6, 3)
    feed["lens"] = np.array([6, 2, 4], np.int32)
    for b, length in enumerate(feed["lens"]):
        feed["x"][length:, b] = 0.0
    clean = _run(model, feed)
    # Unmasked, large values would widen the int8 range of the whole input. NaN would spread.
    feed["x"][2:, 1] = 1e6
    feed["x"][4:, 2] = np.nan
    padded = _run(model, feed)
    for want, got in zip(clean, padded, strict=True):
        np.testing.assert_array_equal(got, want)


def test_reset_before_product_uses_two_recurrent_products():
    model = _rewritten(make_stacked_gru(2, 1, False, linear_before_reset=0))
    ops = count_ops(model)
    assert "GRU" not in ops
    assert "MatMul" not in ops
    # One input projection, then per direction one product for z and r and one for n.
    assert ops["DynamicQuantizeMatMul"] == 1 + 2 * 2
    assert ops["Scan"] == 2


def test_rewrite_uses_int8_products_only():
    model = _rewritten(make_stacked_gru(2, 2, False))
    ops = count_ops(model)
    assert "GRU" not in ops
    assert "MatMul" not in ops
    # One input projection per layer, one recurrent product per direction and layer.
    assert ops["DynamicQuantizeMatMul"] == 2 + 4
    assert ops["Scan"] == 4
    names = {t.name for t in model.graph.initializer}
    assert not names & {"W0", "R0", "B0", "W1", "R1", "B1"}


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        pytest.param({"clip": 3.0}, "clip", id="clip"),
        pytest.param({"activations": ["Sigmoid", "Relu"]}, "activations", id="activations"),
        pytest.param({"layout": 1}, "layout=1", id="batch-major"),
    ],
)
def test_unsupported_gru_stays_float(attributes, reason):
    model = make_stacked_gru(1, 1, False, **attributes)
    result = rewrite_grus(model)
    assert result.rewritten == []
    assert len(result.kept_float) == 1
    assert reason in result.kept_float[0][1]
    assert count_ops(model)["GRU"] == 1


def test_hidden_threshold_keeps_small_gru_float():
    model = make_stacked_gru(1, 2, False)
    result = rewrite_grus(model, min_hidden=HIDDEN + 1)
    assert result.rewritten == []
    assert all("below" in reason for _, reason in result.kept_float)
    result = rewrite_grus(model, min_hidden=HIDDEN)
    assert result.rewritten == ["gru0", "gru1"]


def test_gru_inside_if_branch_rewritten():
    inner = make_stacked_gru(1, 1, False)
    branch = helper.make_graph(
        list(inner.graph.node), "then", [], [helper.make_tensor_value_info("X1", TensorProto.FLOAT,
                                                                           None)]
    )  # fmt: skip
    # The weights stay initializers of the main graph and reach the branch as outer-scope names.
    outer = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=branch, else_branch=branch)],
        "outer",
        [inner.graph.input[0], helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        list(inner.graph.initializer),
    )
    model = helper.make_model(outer, opset_imports=[helper.make_opsetid("", 17)])
    feed = {"x": _feed(1, 1, False, 5, 2)["x"], "flag": np.array(True)}
    expected = _run(model, feed)[0]
    result = rewrite_grus(model)
    assert len(result.rewritten) == 2
    got = _run(model, feed)[0]
    assert np.abs(got - expected).max() < 0.06


@pytest.mark.parametrize("reduce_range", [False, True], ids=["full-range", "reduced-range"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_quantize_weight_range(per_channel, reduce_range):
    matrix = np.random.default_rng(3).standard_normal((32, 48)).astype(np.float32)
    quantized, scale = quantize_weight(matrix, per_channel, reduce_range)
    limit = 63 if reduce_range else 127
    assert quantized.dtype == np.int8
    assert np.abs(quantized).max() == limit
    assert scale.shape == ((48,) if per_channel else ())
    # Rounding error of a symmetric quantizer is at most half a step.
    assert np.abs(quantized * scale - matrix).max() <= scale.max() / 2 + 1e-7


def test_packed_gru_export_quantized_by_cli(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from rnnedge.export import export_model

    class PackedGru(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(FEATURES, 12, num_layers=2, batch_first=True,
                                    bidirectional=True)  # fmt: skip

        def forward(self, x, lengths):
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            padded, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
            return padded

    torch.manual_seed(0)
    float_path, int8_path = tmp_path / "packed.onnx", tmp_path / "packed.int8.onnx"
    export_model(PackedGru(), float_path, example_shape=f"1x10x{FEATURES}")
    # The threshold at the hidden size forces the int8 path on for this small GRU.
    code = main(["quantize", str(float_path), "-o", str(int8_path), "--mode", "dynamic-int8",
                 "--gru-int8-min-hidden", "12", "--latency-runs", "0", "--json"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    assert report["recurrent_left_float"] == []
    assert len(report["gru_int8_rewritten"]) == 2
    assert "GRU" not in report["float_ops"]
    # Per layer: one input projection and one recurrent product per direction.
    assert report["quantized_ops"]["DynamicQuantizeMatMul"] == 2 * 3

    lengths = np.array([10, 1, 6, 3], np.int64)
    x = np.random.default_rng(5).standard_normal((4, 10, FEATURES)).astype(np.float32)
    feed = {"input": x, "lengths": lengths}
    expected = _run(onnx.load(float_path), feed)[0]
    got = _run(onnx.load(int8_path), feed)[0]
    assert got.shape == expected.shape
    for b, length in enumerate(lengths):
        assert np.abs(got[b, :length] - expected[b, :length]).max() < 0.06
        assert not got[b, length:].any()
