"""The cost of a one-step streaming call, split up, and a rewritten graph that tries to cut it.

For the models of `streaming_step.py` (2-layer GRU and LSTM, 40 features, hidden size 128,
linear head, batch 1, one thread), this times through IO binding (`step_prepared`):

- whole: one 100-step call, divided by 100;
- operator: one step per call with the ONNX `GRU` / `LSTM` operators;
- cell graph: one step per call with each recurrent node rewritten as its cell equations
  (MatMul, Add, Split, Sigmoid, Tanh, Mul nodes; valid for one step only);
- fewest nodes: one step per call through the smallest graph that computes it: the
  recurrent nodes chained through their last-state outputs, the head's MatMul and Add, and
  one state input and output per layer, so no Transpose, Slice, Squeeze or Concat is left;
- node alone: one step of a single recurrent node of hidden size 8, less the bound
  Identity call, the fixed cost that each recurrent node adds to a call;
- identity: a model with one `Identity` node run through plain ONNX Runtime IO binding,
  the fixed cost of a bound call.

It also prints the multiply-accumulates of one step with and without the input projection.
A 100-step call projects the inputs of all steps with one matrix product, while a one-step
call has to do that product per step as a matrix-vector product.

Run: .venv/bin/python benchmarks/step_floor.py [--runs 3000]
Needs torch and onnx (the export extra) to build the models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import streaming_step
from onnx import TensorProto, helper, numpy_helper
from streaming_step import FEATURES, HIDDEN, LAYERS, STEPS, export

from rnnedge.profiling.timing import measure
from rnnedge.runtime import StreamingSession


class _Builder:
    """The nodes and constants of the rewritten graph, each under a fresh name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"cell_{base}_{self.count}"

    def constant(self, value: np.ndarray, base: str) -> str:
        name = self.name(base)
        self.constants.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int | list[str] = 1, **attrs) -> list[str]:
        names = outputs if isinstance(outputs, list) else [self.name(op) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, **attrs))
        return names


def _tensor(graph: onnx.GraphProto, name: str) -> np.ndarray:
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    raise KeyError(name)


def _gru_step(build: _Builder, graph, node) -> None:
    x, w_name, r_name, b_name, _, h0 = (list(node.input) + [""] * 6)[:6]
    w, r = _tensor(graph, w_name)[0], _tensor(graph, r_name)[0]
    hidden = r.shape[1]
    bias = _tensor(graph, b_name)[0] if b_name else np.zeros(6 * hidden, np.float32)
    input_bias = bias[: 3 * hidden].copy()
    input_bias[: 2 * hidden] += bias[3 * hidden : 5 * hidden]
    recurrent_bias = np.concatenate([np.zeros(2 * hidden, np.float32), bias[5 * hidden :]])
    (projected,) = build.node("MatMul", [x, build.constant(w.T, "w")])
    (gates_x,) = build.node("Add", [projected, build.constant(input_bias, "bias_x")])
    (recurrent,) = build.node("MatMul", [h0, build.constant(r.T, "r")])
    (gates_h,) = build.node("Add", [recurrent, build.constant(recurrent_bias, "bias_h")])
    sizes = build.constant(np.array([2 * hidden, hidden], np.int64), "sizes")
    x_zr, x_n = build.node("Split", [gates_x, sizes], 2, axis=-1)
    h_zr, h_n = build.node("Split", [gates_h, sizes], 2, axis=-1)
    (zr_sum,) = build.node("Add", [x_zr, h_zr])
    (zr,) = build.node("Sigmoid", [zr_sum])
    halves = build.constant(np.array([hidden, hidden], np.int64), "halves")
    z, reset = build.node("Split", [zr, halves], 2, axis=-1)
    (gated,) = build.node("Mul", [reset, h_n])
    (candidate_sum,) = build.node("Add", [x_n, gated])
    (candidate,) = build.node("Tanh", [candidate_sum])
    (difference,) = build.node("Sub", [h0, candidate])
    (kept,) = build.node("Mul", [z, difference])
    y, h_n_name = [*node.output, "", ""][:2]
    (h_new,) = build.node("Add", [candidate, kept], [h_n_name or build.name("hn")])
    if y:
        build.node("Unsqueeze", [h_new, build.constant(np.array([1], np.int64), "axis")], [y])


def _lstm_step(build: _Builder, graph, node) -> None:
    inputs = (list(node.input) + [""] * 7)[:7]
    x, w_name, r_name, b_name, h0, c0 = inputs[0], inputs[1], inputs[2], inputs[3], *inputs[5:7]
    w, r = _tensor(graph, w_name)[0], _tensor(graph, r_name)[0]
    hidden = r.shape[1]
    bias = _tensor(graph, b_name)[0] if b_name else np.zeros(8 * hidden, np.float32)
    (projected,) = build.node("MatMul", [x, build.constant(w.T, "w")])
    summed_bias = bias[: 4 * hidden] + bias[4 * hidden :]
    (biased,) = build.node("Add", [projected, build.constant(summed_bias, "bias")])
    (recurrent,) = build.node("MatMul", [h0, build.constant(r.T, "r")])
    (gates,) = build.node("Add", [biased, recurrent])
    # ONNX orders the gates i, o, f, c, so the three sigmoid gates are contiguous.
    sizes = build.constant(np.array([3 * hidden, hidden], np.int64), "sizes")
    sigmoid_part, cell_part = build.node("Split", [gates, sizes], 2, axis=-1)
    (sigmoids,) = build.node("Sigmoid", [sigmoid_part])
    thirds = build.constant(np.array([hidden] * 3, np.int64), "thirds")
    i, o, f = build.node("Split", [sigmoids, thirds], 3, axis=-1)
    (candidate,) = build.node("Tanh", [cell_part])
    (forgotten,) = build.node("Mul", [f, c0])
    (written,) = build.node("Mul", [i, candidate])
    y, h_n_name, c_n_name = [*node.output, "", "", ""][:3]
    (c_new,) = build.node("Add", [forgotten, written], [c_n_name or build.name("cn")])
    (squashed,) = build.node("Tanh", [c_new])
    (h_new,) = build.node("Mul", [o, squashed], [h_n_name or build.name("hn")])
    if y:
        build.node("Unsqueeze", [h_new, build.constant(np.array([1], np.int64), "axis")], [y])


def cell_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return `model` with each forward GRU / LSTM node written as one step of its cell."""
    graph = model.graph
    build = _Builder()
    for node in graph.node:
        if node.op_type == "GRU":
            _gru_step(build, graph, node)
        elif node.op_type == "LSTM":
            _lstm_step(build, graph, node)
        else:
            build.nodes.append(node)
    del graph.node[:]
    graph.node.extend(build.nodes)
    graph.initializer.extend(build.constants)
    onnx.checker.check_model(model)
    return model


def fewest_nodes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[tuple[str, str]]]:
    """Return a one-step graph of `model`, with one state pair per layer, and those pairs.

    A one-step call of a forward stack needs no layout nodes: for one step, a layer's last
    state `Y_h` has the shape [1, batch, hidden] of the next layer's sequence input.
    """
    graph = model.graph
    recurrent = [node for node in graph.node if node.op_type in ("GRU", "LSTM")]
    (matmul,) = [node for node in graph.node if node.op_type == "MatMul"]
    (add,) = [node for node in graph.node if node.op_type == "Add"]
    build = _Builder()
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, FEATURES])]
    outputs: list[onnx.ValueInfoProto] = []
    pairs: list[tuple[str, str]] = []
    previous = "x"
    for layer, node in enumerate(recurrent):
        weights = [build.constant(_tensor(graph, name), base) for name, base in
                   zip(node.input[1:4], ("w", "r", "b"), strict=True)]  # fmt: skip
        states = ["h"] + (["c"] if node.op_type == "LSTM" else [])
        state_in = [f"{state}{layer}" for state in states]
        state_out = [f"{state}{layer}_next" for state in states]
        build.node(node.op_type, [previous, *weights, "", *state_in], ["", *state_out],
                   **{attribute.name: helper.get_attribute_value(attribute)
                      for attribute in node.attribute})  # fmt: skip
        for name_in, name_out in zip(state_in, state_out, strict=True):
            inputs.append(helper.make_tensor_value_info(name_in, TensorProto.FLOAT, [1, 1, HIDDEN]))
            outputs.append(
                helper.make_tensor_value_info(name_out, TensorProto.FLOAT, [1, 1, HIDDEN])
            )
            pairs.append((name_in, name_out))
        previous = state_out[0]
    head = build.constant(_tensor(graph, matmul.input[1]), "head")
    head_bias = next(name for name in add.input if name != matmul.output[0])
    (product,) = build.node("MatMul", [previous, head])
    build.node("Add", [product, build.constant(_tensor(graph, head_bias), "head_bias")], ["y"])
    outputs.insert(0, helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, None]))
    step = helper.make_graph(build.nodes, "one_step", inputs, outputs, build.constants)
    rewritten = helper.make_model(step, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(rewritten)
    return rewritten, pairs


def lone_node_model(path: Path, cell: str, hidden: int = 8) -> Path:
    """Save a model of one forward recurrent node of `hidden` units; return its path."""
    gates = 3 if cell == "gru" else 4
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((1, gates * hidden, hidden)).astype(np.float32) * 0.1,
        "r": rng.standard_normal((1, gates * hidden, hidden)).astype(np.float32) * 0.1,
        "b": np.zeros((1, 2 * gates * hidden), np.float32),
    }
    names = ["x", "w", "r", "b", "", "h"] if cell == "gru" else ["x", "w", "r", "b", "", "h", "c"]
    node = helper.make_node(cell.upper(), names, ["", "h_next"], hidden_size=hidden)
    shape = [1, 1, hidden]
    graph = helper.make_graph(
        [node],
        "lone",
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
            for name in [*names[5:], "x"]
        ],
        [helper.make_tensor_value_info("h_next", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def identity_model(path: Path) -> Path:
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, FEATURES])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, FEATURES])
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "identity", [value], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _bound_call(path: Path, runs: int):
    """Time bound calls of a model whose inputs and outputs all have a fixed shape."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    for value in session.get_inputs():
        buffer = np.full([int(size) for size in value.shape], 0.1, np.float32)
        binding.bind_ortvalue_input(value.name, ort.OrtValue.ortvalue_from_numpy(buffer))
    for value in session.get_outputs():
        buffer = np.empty([int(size) for size in value.shape], np.float32)
        binding.bind_ortvalue_output(value.name, ort.OrtValue.ortvalue_from_numpy(buffer))
    stats, _ = measure(lambda: session.run_with_iobinding(binding), 200, runs)
    return stats


def step_macs(cell: str) -> tuple[int, int]:
    """Return the multiply-accumulates of one step: recurrent only, and with the inputs."""
    gates = 3 if cell == "gru" else 4
    recurrent = LAYERS * HIDDEN * gates * HIDDEN
    inputs = (FEATURES + (LAYERS - 1) * HIDDEN) * gates * HIDDEN
    return recurrent, recurrent + inputs


def bench(cell: str, folder: Path, runs: int) -> dict[str, float]:
    path, pairs = export(cell, folder)
    rewritten = folder / f"{cell}.cell.onnx"
    onnx.save(cell_graph(onnx.load(str(path))), str(rewritten))
    fewest, fewest_pairs = fewest_nodes(onnx.load(str(path)))
    fewest_path = folder / f"{cell}.fewest.onnx"
    onnx.save(fewest, str(fewest_path))
    operator = StreamingSession(path, provider="cpu", threads=1, state_pairs=pairs)
    cells = StreamingSession(rewritten, provider="cpu", threads=1, state_pairs=pairs)
    small = StreamingSession(
        fewest_path, provider="cpu", threads=1, state_pairs=fewest_pairs, layout="batch-major"
    )
    rng = np.random.default_rng(0)
    sequence = rng.standard_normal((1, STEPS, FEATURES)).astype(np.float32)

    drift = 0.0
    for t in range(STEPS):
        expected, actual = operator.step(sequence[:, t : t + 1]), cells.step(sequence[:, t : t + 1])
        drift = max(drift, *(float(np.abs(expected[k] - actual[k]).max()) for k in expected))
        fewest_y = small.step(sequence[:, t : t + 1])["y"]
        drift = max(drift, float(np.abs(expected["y"] - fewest_y).max()))

    zeros = {name: np.zeros((LAYERS, 1, HIDDEN), np.float32) for name, _ in pairs}
    session = operator.session.inference_session
    whole, _ = measure(lambda: session.run(None, {"x": sequence, **zeros}), 20, max(runs // 20, 50))
    step = sequence[:, :1]
    operator_feed = operator.session.prepare_inputs(step)
    cells_feed = cells.session.prepare_inputs(step)
    fewest_feed = small.session.prepare_inputs(step)
    operator_stats, _ = measure(lambda: operator.step_prepared(operator_feed), 200, runs)
    cells_stats, _ = measure(lambda: cells.step_prepared(cells_feed), 200, runs)
    fewest_stats, _ = measure(lambda: small.step_prepared(fewest_feed), 200, runs)

    identity_stats = _bound_call(identity_model(folder / "identity.onnx"), runs)
    lone_stats = _bound_call(lone_node_model(folder / f"{cell}.lone.onnx", cell), runs)
    per_step = whole.p50_ms * 1e3 / STEPS
    recurrent, with_inputs = step_macs(cell)
    return {
        "whole_per_step_us": round(per_step, 2),
        "operator_us": round(operator_stats.p50_ms * 1e3, 2),
        "operator_ratio": round(operator_stats.p50_ms * 1e3 / per_step, 2),
        "cell_graph_us": round(cells_stats.p50_ms * 1e3, 2),
        "cell_graph_ratio": round(cells_stats.p50_ms * 1e3 / per_step, 2),
        "fewest_nodes_us": round(fewest_stats.p50_ms * 1e3, 2),
        "fewest_nodes_ratio": round(fewest_stats.p50_ms * 1e3 / per_step, 2),
        "rewritten_max_abs_drift": drift,
        "identity_us": round(identity_stats.p50_ms * 1e3, 2),
        "node_alone_us": round((lone_stats.p50_ms - identity_stats.p50_ms) * 1e3, 2),
        "macs_ratio_one_step_over_recurrent": round(with_inputs / recurrent, 2),
    }


if __name__ == "__main__":
    streaming_step.main(bench, __doc__)
