"""The int8 GRU rewrite against ONNX Runtime's float GRU operator.

Tolerances: the same graph built with float MatMul products (`float_weights=True`) must
match the GRU operator to float32 rounding, 1e-5 over up to 1000 steps (observed about 3e-7);
this checks the gate order, biases, directions and state handling exactly. The int8 graph
adds weight and activation rounding: with per-channel weight scales its outputs stay within
0.06 of the float operator for these weights (observed 3e-3 to 4e-2).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rnnedge.quantize.gru_int8 import quantize_weight, rewrite_grus
from rnnedge.quantize.report import count_ops

FEATURES, HIDDEN = 10, 16


def make_stacked_gru(directions: int, layers: int, initial_state: bool, **gru_attributes):
    """GRU layers over a (time, batch, features) input, each fed the previous layer's output."""
    rng = np.random.default_rng(0)
    nodes, initializers, current = [], [], "x"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", FEATURES])]
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
            helper.make_node("GRU", [current, f"W{layer}", f"R{layer}", f"B{layer}", "", state],
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
        pytest.param({"linear_before_reset": 0}, "linear_before_reset=0", id="reset-before"),
        pytest.param({"clip": 3.0}, "clip", id="clip"),
        pytest.param({"activations": ["Sigmoid", "Relu"]}, "activations", id="activations"),
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
