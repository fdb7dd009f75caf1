"""Weight-only int8: int8 storage of float weights, dequantized back to float32 at load.

Each float32 weight initializer read by `LSTM`, `GRU`, `RNN` (W and R), `MatMul`, `Gemm` or
`Conv` (the weight input) becomes an int8 initializer with a symmetric scale, followed by
`Cast` to float32 and `Mul` by the scale, which recreate the original tensor name: every
consumer sees the same float32 values minus the rounding error, and the file shrinks about
4x. Cast and Mul over constants are folded by ONNX Runtime's constant folding when the
session loads. `DequantizeLinear` is avoided on purpose: ONNX Runtime 1.32 keeps it out of
constant folding (for QDQ fusion), so it would run on every call, which measured 20% slower
for a 2-layer GRU with hidden size 128.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rnnedge.quantize._graph import Namer, iter_graphs

logger = logging.getLogger(__name__)

# op type -> input indices that hold weights worth storing in int8.
RECURRENT_WEIGHT_INPUTS = {"LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2)}
MATRIX_WEIGHT_INPUTS = {"MatMul": (1,), "Gemm": (1,), "Conv": (1,)}
# Smaller tensors (biases, tiny heads) gain nothing from int8 and only add nodes.
MIN_ELEMENTS = 64


def quantize_weights(
    model: onnx.ModelProto,
    op_types: dict[str, tuple[int, ...]] | None = None,
    per_channel: bool = False,
    subgraphs_only: bool = False,
) -> list[str]:
    """Store the weights of `op_types` nodes in int8, in place; return their names.

    A weight read inside a Loop, Scan or If body is often an initializer of an enclosing
    graph. It is converted in the graph that contains it, and the body keeps reading the
    restored float32 name from the outer scope.

    NOTE: only weight inputs that are initializers are converted. A weight computed from
    one, such as the Unsqueeze of the weights that rnnedge's export of an nn.LSTMCell loop
    feeds to the LSTM node in its Loop body, stays float32.

    Args:
        op_types: op type -> weight input indices; recurrent and matrix ops when None.
        per_channel: one scale per output channel (the gate rows of recurrent weights).
        subgraphs_only: convert only the weights of nodes inside subgraph bodies.
    """
    op_types = op_types or {**RECURRENT_WEIGHT_INPUTS, **MATRIX_WEIGHT_INPUTS}
    namer = Namer(model)
    # id(graph) -> (graph, weight name -> axis) for the graph that contains each weight.
    owners: dict[int, tuple[onnx.GraphProto, dict[str, int]]] = {}
    for graph, scopes in iter_graphs(model.graph, []):
        if subgraphs_only and not scopes:
            continue
        for name, axis in _weight_axes(graph, op_types).items():
            owner = _owner_graph(name, graph, scopes)
            if owner is not None:
                owners.setdefault(id(owner), (owner, {}))[1].setdefault(name, axis)
    converted: list[str] = []
    for graph, axes in owners.values():
        initializers = {t.name: t for t in graph.initializer}
        new_nodes = []
        for name, axis in axes.items():
            tensor = initializers[name]
            if tensor.data_type != onnx.TensorProto.FLOAT:
                continue
            value = numpy_helper.to_array(tensor)
            if value.size < MIN_ELEMENTS or value.ndim < 2:
                continue
            graph.initializer.remove(tensor)
            new_nodes.extend(_dequantize(graph, namer, name, value, axis if per_channel else None))
            converted.append(name)
            logger.debug("weight %s stored as int8 %s", name, value.shape)
        if new_nodes:
            nodes = new_nodes + list(graph.node)
            del graph.node[:]
            graph.node.extend(nodes)
    return converted


def _owner_graph(
    name: str, graph: onnx.GraphProto, scopes: list[onnx.GraphProto]
) -> onnx.GraphProto | None:
    """Return the graph, `graph` or an enclosing one, whose initializer `name` is read."""
    for scope in (graph, *scopes):
        if any(tensor.name == name for tensor in scope.initializer):
            return scope
        # A name produced by a node or fed as an input of this scope hides outer ones.
        if any(name in node.output for node in scope.node):
            return None
        if any(value.name == name for value in scope.input):
            return None
    return None


def _weight_axes(graph: onnx.GraphProto, op_types: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Weight tensor name -> its output-channel axis, for the nodes of `graph`."""
    axes: dict[str, int] = {}
    for node in graph.node:
        for index in op_types.get(node.op_type, ()):
            if index >= len(node.input) or not node.input[index]:
                continue
            if node.op_type in RECURRENT_WEIGHT_INPUTS:
                axis = 1  # (directions, gates * hidden, inputs)
            elif node.op_type == "Gemm":
                trans_b = any(a.name == "transB" and a.i for a in node.attribute)
                axis = 0 if trans_b else 1
            elif node.op_type == "Conv":
                axis = 0
            else:
                axis = 1  # MatMul with a 2-D (K, N) weight
            axes.setdefault(node.input[index], axis)
    return axes


def _dequantize(
    graph: onnx.GraphProto, namer: Namer, name: str, value: np.ndarray, axis: int | None
) -> list[onnx.NodeProto]:
    if axis is None:
        peak = np.asarray(np.abs(value).max())
        shape = [1] * value.ndim
    else:
        other = tuple(i for i in range(value.ndim) if i != axis)
        peak = np.abs(value).max(axis=other)
        shape = [1] * value.ndim
        shape[axis] = -1
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    quantized = np.clip(np.rint(value / scale.reshape(shape)), -127, 127).astype(np.int8)
    names = {role: namer(f"{name}_{role}") for role in ("int8", "scale", "float")}
    graph.initializer.extend([
        numpy_helper.from_array(quantized, names["int8"]),
        numpy_helper.from_array(scale.reshape(shape), names["scale"]),
    ])  # fmt: skip
    return [
        helper.make_node("Cast", [names["int8"]], [names["float"]], name=namer(f"{name}_cast"),
                         to=onnx.TensorProto.FLOAT),
        helper.make_node("Mul", [names["float"], names["scale"]], [name],
                         name=namer(f"{name}_scale")),
    ]  # fmt: skip
