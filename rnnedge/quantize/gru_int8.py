"""An int8 compute path for ONNX `GRU` nodes, which ONNX Runtime's quantizer leaves float.

A GRU node with gates z, r, n (ONNX weight order), weights W (3H x I), R (3H x H) and biases
Wb, Rb becomes, for each direction, one input projection over all steps and a `Scan` over the
time steps (reversed for the reverse direction) with state h of shape (B, H). With
`linear_before_reset=1` (PyTorch's semantics: the reset gate multiplies the recurrent
product, bias included):

    P   = DynamicQuantizeMatMul(X, Wq^T) + Wb + [Rb_z, Rb_r, 0]     all steps at once: (T, B, 3H)
    step t:
        q   = DynamicQuantizeMatMul(h, Rq^T) + [0, 0, Rb_n]                              (B, 3H)
        z,r = sigmoid(P_t[:, :2H] + q[:, :2H])
        n   = tanh(P_t[:, 2H:] + r * q[:, 2H:])
        h'  = n + z * (h - n)                               which is (1 - z) * n + z * h

With `linear_before_reset=0` the reset gate scales h before the candidate's recurrent
product, so that product is split off and Rb_n moves into the projection bias:

    P   = DynamicQuantizeMatMul(X, Wq^T) + Wb + Rb
    step t:
        z,r = sigmoid(P_t[:, :2H] + DynamicQuantizeMatMul(h, Rq_zr^T))
        n   = tanh(P_t[:, 2H:] + DynamicQuantizeMatMul(r * h, Rq_n^T))
        h'  = n + z * (h - n)

A `sequence_lens` input becomes a boolean mask M of shape (T, B, 1), M[t, b] = t < len[b],
which the Scan reads as a second scanned input. Where M is false the step keeps h and
outputs 0. Padded steps thus leave Y zero and Y_h at the state after the last valid step.
The reverse direction passes the padded steps first, so it starts at step len[b] - 1.
Padded input steps are set to 0 before the projection, so their values (NaN included) can
neither leak into the outputs nor widen the range that DynamicQuantizeMatMul quantizes X to.
For len[b] = 0 the float GRU of onnxruntime 1.32 outputs Y_h = 0 rather than the initial
state, and the rewrite does the same.

`DynamicQuantizeMatMul` (com.microsoft domain, in every onnxruntime CPU build) quantizes its
float input to uint8 at run time and multiplies by int8 weights stored with one symmetric
scale per output column or per tensor. Both directions of a bidirectional node share one
input projection.

The `Scan` costs a fixed overhead per time step, so the rewrite pays off only once the
products are large enough: `benchmarks/gru_int8.py` measures where.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rnnedge.quantize._graph import Namer, constant_value, default_opset, iter_graphs

logger = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"
# Split with its sizes as an input (rather than an attribute) exists from opset 13 on.
MIN_OPSET = 13


@dataclass
class GruRewrite:
    """The outcome of a rewrite: GRU nodes made int8, and those left float with the reason."""

    rewritten: list[str] = field(default_factory=list)
    kept_float: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _GruWeights:
    hidden: int
    directions: int
    w: np.ndarray  # (D, 3H, I)
    r: np.ndarray  # (D, 3H, H)
    b: np.ndarray  # (D, 6H)


def quantize_weight(
    matrix: np.ndarray, per_channel: bool, reduce_range: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize a (K, N) float matrix to symmetric int8 with per-column or one scale.

    Returns the int8 matrix and the float32 scales, of shape (N,) or a scalar. With
    `reduce_range` the values use 7 bits (-64..63), which keeps u8s8 kernels without VNNI
    from saturating their int16 sums.
    """
    qmax = 63.0 if reduce_range else 127.0
    peak = np.abs(matrix).max(axis=0) if per_channel else np.asarray(np.abs(matrix).max())
    scale = np.where(peak > 0, peak / qmax, 1.0).astype(np.float32)
    quantized = np.clip(np.rint(matrix / scale), -qmax, qmax).astype(np.int8)
    return quantized, scale


def rewrite_grus(
    model: onnx.ModelProto,
    per_channel: bool = True,
    reduce_range: bool = False,
    min_hidden: int = 0,
    float_weights: bool = False,
) -> GruRewrite:
    """Replace every eligible GRU node of `model`, subgraphs included, in place.

    Args:
        per_channel: one weight scale per gate unit instead of one per matrix.
        reduce_range: 7-bit weights, for x86 hosts without VNNI.
        min_hidden: GRU nodes with a smaller hidden size stay float, because the
            per-step cost of `Scan` outweighs the int8 gain there.
        float_weights: build the same graph with float MatMul products; it matches the
            GRU operator to float rounding and serves to check the graph itself.
    """
    opset = default_opset(model)
    result = GruRewrite()
    namer = Namer(model)
    rewriter = _Rewriter(namer, per_channel, reduce_range, float_weights, opset)
    for graph, scopes in iter_graphs(model.graph, []):
        new_nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            if node.op_type != "GRU" or node.domain not in ("", "ai.onnx"):
                new_nodes.append(node)
                continue
            label = node.name or node.output[0]
            reason = _unsupported_reason(node, graph, scopes, opset, min_hidden)
            if reason:
                logger.debug("GRU %s stays float: %s", label, reason)
                result.kept_float.append((label, reason))
                new_nodes.append(node)
                continue
            weights = _read_weights(node, graph, scopes)
            new_nodes.extend(rewriter.replace(node, weights, graph))
            result.rewritten.append(label)
            logger.debug("GRU %s rewritten to int8 (hidden %d)", label, weights.hidden)
        del graph.node[:]
        graph.node.extend(new_nodes)
    if result.rewritten:
        _drop_unused_initializers(model, rewriter.replaced_weights)
    has_ms_domain = any(entry.domain == MS_DOMAIN for entry in model.opset_import)
    if result.rewritten and not float_weights and not has_ms_domain:
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return result


def _drop_unused_initializers(model: onnx.ModelProto, names: set[str]) -> None:
    """Remove the float GRU weights that no node reads any more."""
    graphs = [graph for graph, _ in iter_graphs(model.graph, [])]
    read = {name for graph in graphs for node in graph.node for name in node.input}
    read.update(output.name for graph in graphs for output in graph.output)
    for graph in graphs:
        kept = [t for t in graph.initializer if t.name in read or t.name not in names]
        if len(kept) != len(graph.initializer):
            del graph.initializer[:]
            graph.initializer.extend(kept)


def _unsupported_reason(
    node: onnx.NodeProto,
    graph: onnx.GraphProto,
    scopes: list[onnx.GraphProto],
    opset: int,
    min_hidden: int,
) -> str | None:
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if opset < MIN_OPSET:
        return f"opset {opset} is below {MIN_OPSET}, the minimum of the int8 GRU rewrite"
    activations = [a.decode() if isinstance(a, bytes) else a for a in attributes.get(
        "activations", [])]  # fmt: skip
    if activations and [a.lower() for a in activations] not in (
        ["sigmoid", "tanh"],
        ["sigmoid", "tanh", "sigmoid", "tanh"],
    ):
        return f"activations {activations} differ from the default Sigmoid, Tanh"
    if "clip" in attributes:
        return "the clip attribute is not supported"
    if attributes.get("layout", 0) != 0:
        return "layout=1 (batch-major GRU input) is not supported"
    inputs = list(node.input) + [""] * (6 - len(node.input))
    for index, role in ((1, "W"), (2, "R")):
        if constant_value(inputs[index], graph, scopes) is None:
            return f"weight {role} is not a constant"
    if inputs[3] and constant_value(inputs[3], graph, scopes) is None:
        return "bias B is not a constant"
    hidden = int(attributes["hidden_size"])
    if hidden < min_hidden:
        return f"hidden size {hidden} is below {min_hidden}, where the float GRU is faster"
    return None


def _read_weights(
    node: onnx.NodeProto, graph: onnx.GraphProto, scopes: list[onnx.GraphProto]
) -> _GruWeights:
    hidden = int(next(helper.get_attribute_value(a) for a in node.attribute
                      if a.name == "hidden_size"))  # fmt: skip
    w = constant_value(node.input[1], graph, scopes).astype(np.float32)
    r = constant_value(node.input[2], graph, scopes).astype(np.float32)
    bias_name = node.input[3] if len(node.input) > 3 else ""
    directions = w.shape[0]
    if bias_name:
        b = constant_value(bias_name, graph, scopes).astype(np.float32)
    else:
        b = np.zeros((directions, 6 * hidden), np.float32)
    return _GruWeights(hidden, directions, w, r, b)


class _Rewriter:
    def __init__(
        self, namer: Namer, per_channel: bool, reduce_range: bool, float_weights: bool,
        opset: int,
    ) -> None:  # fmt: skip
        self.name = namer
        self.per_channel = per_channel
        self.reduce_range = reduce_range
        self.float_weights = float_weights
        self.opset = opset
        self.replaced_weights: set[str] = set()

    def replace(
        self, node: onnx.NodeProto, weights: _GruWeights, graph: onnx.GraphProto
    ) -> list[onnx.NodeProto]:
        """Build the nodes that compute `node`'s outputs, adding their initializers to `graph`."""
        prefix = (node.name or "gru").strip("/").replace("/", "_") + "_int8"
        self.prefix = prefix
        self.graph = graph
        self.input_shape = ""
        self.zero = ""
        nodes: list[onnx.NodeProto] = []
        hidden, directions = weights.hidden, weights.directions
        inputs = list(node.input) + [""] * (6 - len(node.input))
        x, lengths, initial_h = inputs[0], inputs[4], inputs[5]
        self.replaced_weights.update(name for name in inputs[1:4] if name)
        linear_before_reset = _linear_before_reset(node)

        step_mask = has_steps = ""
        if lengths:
            step_mask, has_steps = self._length_masks(x, lengths, nodes)
            masked_x = self.name(f"{prefix}_x_valid")
            nodes.append(self._node("Where", [step_mask, x, self._zero()], [masked_x]))
            x = masked_x

        # Input projection for every direction and step in one product: (T, B, D*3H). Every
        # recurrent bias that is added outside the reset gate's product folds into it.
        folded = np.ones(3 * hidden, np.float32)
        if linear_before_reset:
            folded[2 * hidden :] = 0.0
        w_all = np.concatenate([weights.w[d].T for d in range(directions)], axis=1)
        b_all = np.concatenate([
            weights.b[d, : 3 * hidden] + folded * weights.b[d, 3 * hidden :]
            for d in range(directions)
        ])  # fmt: skip
        projected = self.name(f"{prefix}_projected")
        nodes.extend(self._matmul(x, w_all, b_all, projected, "input"))
        parts = [projected]
        if directions == 2:
            parts = [self.name(f"{prefix}_projected_fw"), self.name(f"{prefix}_projected_bw")]
            sizes = self._initializer("split", np.array([3 * hidden] * 2, np.int64))
            nodes.append(self._node("Split", [projected, sizes], parts, axis=2))

        starts = self._initial_states(x, initial_h, hidden, directions, nodes)
        sequences, finals = [], []
        for d in range(directions):
            body = self._step_body(weights, d, linear_before_reset, bool(step_mask))
            scanned = [parts[d], step_mask] if step_mask else [parts[d]]
            sequence = self.name(f"{prefix}_y{d}")
            final = self.name(f"{prefix}_h{d}")
            reverse = int(_direction(node) == "reverse" or d == 1)
            nodes.append(self._node(
                "Scan", [starts[d], *scanned], [final, sequence],
                body=body, num_scan_inputs=len(scanned),
                scan_input_directions=[reverse] * len(scanned), scan_output_directions=[reverse],
            ))  # fmt: skip
            if has_steps:
                # onnxruntime 1.32's float GRU outputs Y_h = 0, not the initial state, for len 0.
                final_valid = self.name(f"{prefix}_h{d}_valid")
                nodes.append(self._node("Where", [has_steps, final, self._zero()], [final_valid]))
                final = final_valid
            sequences.append(sequence)
            finals.append(final)
        outputs = list(node.output) + [""] * (2 - len(node.output))
        if outputs[0]:
            nodes.extend(self._stack(sequences, 1, outputs[0]))
        if outputs[1]:
            nodes.extend(self._stack(finals, 0, outputs[1]))
        return nodes

    def _length_masks(self, x: str, lengths: str, nodes: list) -> tuple[str, str]:
        """Add nodes computing the masks t < len[b] (T, B, 1) and len[b] > 0 (B, 1) from `lengths`.

        Returns the names of both masks.
        """
        # NOTE: onnxruntime 1.32's float GRU rejects a length below 0 or above T at run time.
        # These masks accept it silently: a length above T acts as T, a negative one as 0.
        names = {role: self.name(f"{self.prefix}_{role}") for role in (
            "steps", "step_index", "step_column", "lengths_int64", "step_valid", "step_mask",
            "length_positive", "has_steps")}  # fmt: skip
        first = self._initializer("index0", np.array(0, np.int64))
        delta = self._initializer("delta1", np.array(1, np.int64))
        axis1 = self._initializer("axes1", np.array([1], np.int64))
        axis2 = self._initializer("axes2", np.array([2], np.int64))
        nodes.extend([
            self._node("Gather", [self._input_shape(x, nodes), first], [names["steps"]], axis=0),
            self._node("Range", [first, names["steps"], delta], [names["step_index"]]),
            self._node("Unsqueeze", [names["step_index"], axis1], [names["step_column"]]),
            self._node("Cast", [lengths], [names["lengths_int64"]], to=TensorProto.INT64),
            self._node("Less", [names["step_column"], names["lengths_int64"]],
                       [names["step_valid"]]),
            self._node("Unsqueeze", [names["step_valid"], axis2], [names["step_mask"]]),
            self._node("Greater", [names["lengths_int64"], first], [names["length_positive"]]),
            self._node("Unsqueeze", [names["length_positive"], axis1], [names["has_steps"]]),
        ])  # fmt: skip
        return names["step_mask"], names["has_steps"]

    def _step_body(
        self, weights: _GruWeights, d: int, linear_before_reset: bool, masked: bool
    ) -> onnx.GraphProto:
        """Build the Scan body of direction `d`: state h, scanned P_t (and the step mask)."""
        hidden = weights.hidden
        prefix = f"{self.prefix}_d{d}"
        h, p = self.name(f"{prefix}_h_prev"), self.name(f"{prefix}_p_t")
        h_new, y = self.name(f"{prefix}_h_new"), self.name(f"{prefix}_y")
        body_nodes = self._gate_nodes(weights, d, linear_before_reset, h, p, h_new)
        shape = ["batch", hidden]
        body_inputs = [
            helper.make_tensor_value_info(h, TensorProto.FLOAT, shape),
            helper.make_tensor_value_info(p, TensorProto.FLOAT, ["batch", 3 * hidden]),
        ]
        state_out = h_new
        if masked:
            # Padded steps keep the state and output zeros; Where passes both values exactly.
            valid = self.name(f"{prefix}_valid_t")
            state_out = self.name(f"{prefix}_h_out")
            body_inputs.append(helper.make_tensor_value_info(valid, TensorProto.BOOL, ["batch", 1]))
            body_nodes += [
                self._node("Where", [valid, h_new, h], [state_out]),
                self._node("Where", [valid, h_new, self._zero()], [y]),
            ]
        else:
            body_nodes.append(self._node("Identity", [h_new], [y]))
        return helper.make_graph(
            body_nodes,
            f"{prefix}_step",
            body_inputs,
            [helper.make_tensor_value_info(state_out, TensorProto.FLOAT, shape),
             helper.make_tensor_value_info(y, TensorProto.FLOAT, shape)],
        )  # fmt: skip

    def _gate_nodes(
        self, weights: _GruWeights, d: int, linear_before_reset: bool, h: str, p: str, h_new: str
    ) -> list[onnx.NodeProto]:
        """Build the nodes of one GRU step that compute `h_new` from the state and P_t."""
        hidden = weights.hidden
        prefix = f"{self.prefix}_d{d}"
        roles = ("q", "pzr", "pn", "qzr", "qn", "zr_sum", "zr", "z", "r", "rqn", "rh", "n_sum",
                 "n", "h_minus_n", "z_h_minus_n")  # fmt: skip
        n = {role: self.name(f"{prefix}_{role}") for role in roles}
        two_one = self._initializer("split_zr_n", np.array([2 * hidden, hidden], np.int64))
        halves = self._initializer("split_z_r", np.array([hidden, hidden], np.int64))
        recurrent = weights.r[d].T  # (H, 3H)
        nodes = [self._node("Split", [p, two_one], [n["pzr"], n["pn"]], axis=1)]
        if linear_before_reset:
            bias = np.concatenate([np.zeros(2 * hidden, np.float32), weights.b[d, 5 * hidden :]])
            nodes += [
                *self._matmul(h, recurrent, bias, n["q"], f"recurrent{d}"),
                self._node("Split", [n["q"], two_one], [n["qzr"], n["qn"]], axis=1),
            ]
        else:
            zr_weight = recurrent[:, : 2 * hidden]
            nodes += self._matmul(h, zr_weight, None, n["qzr"], f"recurrent_zr{d}")
        nodes += [
            self._node("Add", [n["pzr"], n["qzr"]], [n["zr_sum"]]),
            self._node("Sigmoid", [n["zr_sum"]], [n["zr"]]),
            self._node("Split", [n["zr"], halves], [n["z"], n["r"]], axis=1),
        ]
        if linear_before_reset:
            nodes.append(self._node("Mul", [n["r"], n["qn"]], [n["rqn"]]))
        else:
            nodes.append(self._node("Mul", [n["r"], h], [n["rh"]]))
            n_weight = recurrent[:, 2 * hidden :]
            nodes += self._matmul(n["rh"], n_weight, None, n["rqn"], f"recurrent_n{d}")
        nodes += [
            self._node("Add", [n["pn"], n["rqn"]], [n["n_sum"]]),
            self._node("Tanh", [n["n_sum"]], [n["n"]]),
            self._node("Sub", [h, n["n"]], [n["h_minus_n"]]),
            self._node("Mul", [n["z"], n["h_minus_n"]], [n["z_h_minus_n"]]),
            self._node("Add", [n["n"], n["z_h_minus_n"]], [h_new]),
        ]
        return nodes

    def _matmul(
        self, a: str, weight: np.ndarray, bias: np.ndarray | None, output: str, role: str
    ) -> list[onnx.NodeProto]:
        """`a @ weight + bias`, as DynamicQuantizeMatMul or, for checks, MatMul and Add."""
        bias_name = ""
        if bias is not None:
            bias_name = self._initializer(f"{role}_bias", bias.astype(np.float32))
        if self.float_weights:
            weight_name = self._initializer(f"{role}_weight", weight.astype(np.float32))
            if not bias_name:
                return [self._node("MatMul", [a, weight_name], [output])]
            product = self.name(f"{output}_product")
            return [
                self._node("MatMul", [a, weight_name], [product]),
                self._node("Add", [product, bias_name], [output]),
            ]
        quantized, scale = quantize_weight(weight, self.per_channel, self.reduce_range)
        weight_name = self._initializer(f"{role}_weight_int8", quantized)
        scale_name = self._initializer(f"{role}_weight_scale", scale)
        zero_name = self._initializer(f"{role}_weight_zero", np.zeros(scale.shape, np.int8))
        matmul_inputs = [a, weight_name, scale_name, zero_name]
        if bias_name:
            matmul_inputs.append(bias_name)
        return [self._node("DynamicQuantizeMatMul", matmul_inputs, [output], domain=MS_DOMAIN)]

    def _zero(self) -> str:
        """Return the name of a float32 scalar 0 initializer, shared within one GRU."""
        if not self.zero:
            self.zero = self._initializer("zero", np.array(0.0, np.float32))
        return self.zero

    def _input_shape(self, x: str, nodes: list) -> str:
        """Return the name of Shape(x), adding the node on first use within one GRU."""
        if not self.input_shape:
            self.input_shape = self.name(f"{self.prefix}_x_shape")
            nodes.append(self._node("Shape", [x], [self.input_shape]))
        return self.input_shape

    def _initial_states(
        self, x: str, initial_h: str, hidden: int, directions: int, nodes: list
    ) -> list[str]:
        states = []
        if not initial_h:
            shape = self._input_shape(x, nodes)
            batch = self.name(f"{self.prefix}_batch")
            state_shape = self.name(f"{self.prefix}_state_shape")
            zeros = self.name(f"{self.prefix}_zero_state")
            one = self._initializer("one", np.array([1], np.int64))
            two = self._initializer("two", np.array([2], np.int64))
            nodes.append(self._node("Slice", [shape, one, two], [batch]))
            width = self._initializer("hidden", np.array([hidden], np.int64))
            nodes.append(self._node("Concat", [batch, width], [state_shape], axis=0))
            nodes.append(self._node(
                "ConstantOfShape", [state_shape], [zeros],
                value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
            ))  # fmt: skip
            return [zeros] * directions
        for d in range(directions):
            index = self._initializer(f"direction{d}", np.array(d, np.int64))
            state = self.name(f"{self.prefix}_initial_h{d}")
            nodes.append(self._node("Gather", [initial_h, index], [state], axis=0))
            states.append(state)
        return states

    def _stack(self, names: list[str], axis: int, output: str) -> list[onnx.NodeProto]:
        """Unsqueeze each of `names` at `axis` and concatenate them into `output`."""
        axes = self._initializer(f"axis{axis}", np.array([axis], np.int64))
        if len(names) == 1:
            return [self._node("Unsqueeze", [names[0], axes], [output])]
        nodes, expanded = [], []
        for name in names:
            target = self.name(f"{name}_expanded")
            nodes.append(self._node("Unsqueeze", [name, axes], [target]))
            expanded.append(target)
        nodes.append(self._node("Concat", expanded, [output], axis=axis))
        return nodes

    def _initializer(self, role: str, value: np.ndarray) -> str:
        name = self.name(f"{self.prefix}_{role}")
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def _node(self, op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs):
        return helper.make_node(
            op, inputs, outputs, name=self.name(f"{self.prefix}_{op}"), domain=domain, **attrs
        )


def _linear_before_reset(node: onnx.NodeProto) -> bool:
    for attribute in node.attribute:
        if attribute.name == "linear_before_reset":
            return attribute.i != 0
    return False


def _direction(node: onnx.NodeProto) -> str:
    for attribute in node.attribute:
        if attribute.name == "direction":
            return attribute.s.decode()
    return "forward"
