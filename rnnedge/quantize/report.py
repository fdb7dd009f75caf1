"""What quantization did to a model: operators by type, size, output drift, metric, latency.

Needs onnx and onnxruntime, not torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from rnnedge.runtime.operators import QUANTIZED_OPS

# Operators that carry most of a recurrent model's arithmetic; if they remain float after
# an int8 pass, the model did not get the speed-up the user asked for. Scan and Loop are
# containers: count_ops counts the operators of their bodies instead.
COMPUTE_OPS = frozenset({"LSTM", "GRU", "RNN", "MatMul", "Gemm", "Conv"})
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
# Compute operators that ONNX Runtime fuses with their QuantizeLinear/DequantizeLinear
# neighbours into integer kernels. It has no such fusion for the recurrent operators.
QDQ_COMPUTE_OPS = COMPUTE_OPS - RECURRENT_OPS
# Operators whose body runs once per iteration or time step.
LOOP_OPS = frozenset({"Loop", "Scan"})


@dataclass(frozen=True)
class Drift:
    """Output difference of a transformed model against its float source."""

    samples: int
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float | None  # share of equal argmax; classification models only

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "samples": self.samples,
            "max_abs_error": self.max_abs_error,
            "mean_abs_error": self.mean_abs_error,
            "top1_agreement": self.top1_agreement,
        }


@dataclass(frozen=True)
class QuantizeReport:
    """The outcome of one quantization run."""

    mode: str
    output: str
    size_before: int
    size_after: int
    ops_before: Mapping[str, int]
    ops_after: Mapping[str, int]
    drift: Drift
    settings: Mapping[str, object] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # Task metric on --eval data: "accuracy" or "mse", None without labels.
    metric_name: str | None = None
    metric_before: float | None = None
    metric_after: float | None = None
    # Median latency of one call on this host, one thread; None when not measured. The call
    # takes one sequence, or as many as the model's fixed batch size (`latency_batch`).
    p50_ms_before: float | None = None
    p50_ms_after: float | None = None
    latency_batch: int = 1
    # Recurrent nodes that stayed float, with the reason.
    recurrent_left_float: tuple[tuple[str, str], ...] = ()
    # GRU nodes rewritten into rnnedge's int8 GRU path, by name.
    gru_int8_rewritten: tuple[str, ...] = ()
    # Compute operators between DequantizeLinear and QuantizeLinear (QDQ format), which
    # ONNX Runtime fuses into integer kernels; they count as quantized, not float.
    qdq_compute_ops: Mapping[str, int] = field(default_factory=dict)

    @property
    def quantized_ops(self) -> dict[str, int]:
        ops = {op: n for op, n in sorted(self.ops_after.items()) if op in QUANTIZED_OPS}
        ops.update({f"{op} (QDQ)": n for op, n in sorted(self.qdq_compute_ops.items())})
        return ops

    @property
    def float_compute_ops(self) -> dict[str, int]:
        """Compute operators that still run in float after the pass."""
        if self.mode == "fp16":
            return {}
        ops = {}
        for op, n in sorted(self.ops_after.items()):
            left = n - self.qdq_compute_ops.get(op, 0)
            if op in COMPUTE_OPS and left > 0:
                ops[op] = left
        return ops

    @property
    def other_notes(self) -> tuple[str, ...]:
        """The notes that `recurrent_left_float` does not state already.

        `notes` keeps a `float_note` for each node left float, because scripts and reports
        may read the notes alone. A printed report gives that fact once.
        """
        stated = {float_note(node, reason) for node, reason in self.recurrent_left_float}
        return tuple(note for note in self.notes if note not in stated)

    @property
    def size_ratio(self) -> float:
        return self.size_before / self.size_after if self.size_after else float("inf")

    @property
    def metric_drop(self) -> float | None:
        """How much the metric got worse: accuracy lost, or mean squared error gained."""
        if self.metric_before is None or self.metric_after is None:
            return None
        if self.metric_name == "accuracy":
            return self.metric_before - self.metric_after
        return self.metric_after - self.metric_before

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "output": self.output,
            "size_bytes_before": self.size_before,
            "size_bytes_after": self.size_after,
            "quantized_ops": self.quantized_ops,
            "float_ops": self.float_compute_ops,
            "max_abs_drift": self.drift.max_abs_error,
            "mean_abs_drift": self.drift.mean_abs_error,
            "metric": self.metric_name,
            "metric_before": self.metric_before,
            "metric_after": self.metric_after,
            "p50_ms_before": self.p50_ms_before,
            "p50_ms_after": self.p50_ms_after,
            "latency_batch": self.latency_batch,
            "recurrent_left_float": [
                {"node": node, "reason": reason} for node, reason in self.recurrent_left_float
            ],
            "gru_int8_rewritten": list(self.gru_int8_rewritten),
            # The names of earlier rnnedge versions, kept for scripts that read them.
            "size_before": self.size_before,
            "size_after": self.size_after,
            "float_compute_ops": self.float_compute_ops,
            "ops_before": dict(self.ops_before),
            "ops_after": dict(self.ops_after),
            "drift": self.drift.as_dict(),
            "settings": dict(self.settings),
            "notes": list(self.notes),
        }


def float_note(node: str, reason: str) -> str:
    """Return the note that names a recurrent node or loop body left float, with the reason."""
    return f"{node} stays float: {reason}"


def count_ops(model) -> dict[str, int]:
    """Count nodes by op type, including those inside Loop, Scan and If bodies."""
    from rnnedge.quantize._graph import iter_graphs

    counts: Counter[str] = Counter()
    for graph, _ in iter_graphs(model.graph, []):
        counts.update(node.op_type for node in graph.node)
    return dict(sorted(counts.items()))


def count_qdq_compute(model) -> dict[str, int]:
    """Count compute nodes whose activation input comes from a DequantizeLinear node.

    LSTM, GRU and RNN nodes are left out: ONNX Runtime has no QDQ fusion for them and runs
    them in float32 on the dequantized input.
    """
    from rnnedge.quantize._graph import iter_graphs

    counts: Counter[str] = Counter()
    for graph, _ in iter_graphs(model.graph, []):
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        for node in graph.node:
            if node.op_type in QDQ_COMPUTE_OPS and node.input and node.input[0] in dequantized:
                counts[node.op_type] += 1
    return dict(sorted(counts.items()))


def float_loop_bodies(model) -> list[tuple[str, dict[str, int]]]:
    """List the Loop and Scan nodes whose bodies keep float MatMul, Gemm or Conv nodes.

    Returns (node label, float op counts) pairs. A body node counts as float unless a
    DequantizeLinear node feeds its activation input. Recurrent operators are left out,
    because the report lists them on their own, and so are the bodies of nested Loop and
    Scan nodes, which get their own entry.
    """
    from rnnedge.quantize._graph import iter_graphs, subgraphs

    found = []
    for graph, _ in iter_graphs(model.graph, []):
        for node in graph.node:
            if node.op_type not in LOOP_OPS:
                continue
            counts: Counter[str] = Counter()
            for body in subgraphs(node):
                counts.update(_float_matrix_ops(body))
            if counts:
                label = f"{node.op_type} {node.name!r}" if node.name else f"unnamed {node.op_type}"
                found.append((label, dict(sorted(counts.items()))))
    return found


def _float_matrix_ops(graph) -> Counter[str]:
    """Count float MatMul, Gemm and Conv nodes in `graph` and its If branches."""
    from rnnedge.quantize._graph import subgraphs

    counts: Counter[str] = Counter()
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for node in graph.node:
        if node.op_type in QDQ_COMPUTE_OPS and not (node.input and node.input[0] in dequantized):
            counts[node.op_type] += 1
        if node.op_type not in LOOP_OPS:
            for body in subgraphs(node):
                counts.update(_float_matrix_ops(body))
    return counts
