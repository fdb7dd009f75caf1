"""What quantization did to a model: operators by type, size, and output drift.

Needs onnx and onnxruntime, not torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

# Operators that compute in integer arithmetic or carry quantized tensors.
QUANTIZED_OPS = frozenset({
    "DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat",
    "ConvInteger", "QLinearMatMul", "QLinearConv", "QLinearAdd", "QLinearMul", "QAttention",
    "QGemm", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "MatMulNBits",
    "GatherBlockQuantized",
})  # fmt: skip

# Operators that carry most of a recurrent model's arithmetic; if they remain float after
# an int8 pass, the model did not get the speed-up the user asked for.
COMPUTE_OPS = frozenset({"LSTM", "GRU", "RNN", "MatMul", "Gemm", "Conv", "Scan", "Loop"})


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

    @property
    def quantized_ops(self) -> dict[str, int]:
        return {op: n for op, n in sorted(self.ops_after.items()) if op in QUANTIZED_OPS}

    @property
    def float_compute_ops(self) -> dict[str, int]:
        """Compute operators that still run in float after the pass."""
        if self.mode == "fp16":
            return {}
        return {op: n for op, n in sorted(self.ops_after.items()) if op in COMPUTE_OPS}

    @property
    def size_ratio(self) -> float:
        return self.size_before / self.size_after if self.size_after else float("inf")

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "output": self.output,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "quantized_ops": self.quantized_ops,
            "float_compute_ops": self.float_compute_ops,
            "ops_before": dict(self.ops_before),
            "ops_after": dict(self.ops_after),
            "drift": self.drift.as_dict(),
            "settings": dict(self.settings),
            "notes": list(self.notes),
        }


def count_ops(model) -> dict[str, int]:
    """Count nodes by op type, including those inside Loop, Scan and If bodies."""
    counts: Counter[str] = Counter()

    def visit(graph) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attribute in node.attribute:
                if attribute.g is not None and attribute.g.node:
                    visit(attribute.g)
                for sub in attribute.graphs:
                    visit(sub)

    visit(model.graph)
    return dict(sorted(counts.items()))


def measure_drift(
    reference: bytes | str,
    candidate: bytes | str,
    inputs: np.ndarray,
    classification: bool,
) -> Drift:
    """Run both models on `inputs` (CPU provider) and compare their first outputs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    ref = ort.InferenceSession(reference, options, providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(candidate, options, providers=["CPUExecutionProvider"])
    name = ref.get_inputs()[0].name
    expected = ref.run(None, {name: inputs})[0].astype(np.float64)
    actual = cand.run(None, {cand.get_inputs()[0].name: inputs})[0].astype(np.float64)
    difference = np.abs(actual - expected)
    agreement = None
    if classification and expected.ndim >= 2:
        agreement = float(np.mean(expected.argmax(-1) == actual.argmax(-1)))
    return Drift(
        samples=int(inputs.shape[0]),
        max_abs_error=float(difference.max()),
        mean_abs_error=float(difference.mean()),
        top1_agreement=agreement,
    )
