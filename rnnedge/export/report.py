"""The export report: what was written, how, and the figures that prove it right."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnedge.export.parity import ParityReport
from rnnedge.runtime.metadata import ModelMetadata


@dataclass(frozen=True)
class GraphValue:
    """One graph input or output: name, element type and shape (axis names if dynamic)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name} {self.dtype}[{dims}]"


@dataclass(frozen=True)
class Attempt:
    """One exporter tried: its name, how the model was captured, and why it failed."""

    exporter: str
    capture: str
    error: str | None = None
    max_abs_error: float | None = None


@dataclass(frozen=True)
class ExportReport:
    """The exported file, its metadata and the parity against PyTorch.

    `exporter` and `capture` name the exporter that produced the file; `attempts` lists
    the ones tried before it, with their failure. `streaming` contains the chunked checks of a
    streaming graph, empty otherwise. `lowered` names the modules rnnedge rewrote before
    export (projected LSTMs).
    """

    path: Path
    size_bytes: int
    opset: int
    metadata: ModelMetadata
    parity: ParityReport
    op_counts: dict[str, int]
    exporter: str = "torchscript"
    capture: str = "trace"
    source: str = ""
    attempts: tuple[Attempt, ...] = ()
    inputs: tuple[GraphValue, ...] = ()
    outputs: tuple[GraphValue, ...] = ()
    streaming: tuple[Any, ...] = ()
    lowered: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data; `parity` is a list of cases."""
        return {
            "output": str(self.path),
            "source": self.source,
            "size_bytes": self.size_bytes,
            "exporter": self.exporter,
            "capture": self.capture,
            "opset": self.opset,
            "fallbacks": [_attempt_dict(a) for a in self.attempts],
            "lowered": list(self.lowered),
            "inputs": [_value_dict(v) for v in self.inputs],
            "outputs": [_value_dict(v) for v in self.outputs],
            "ops": dict(sorted(self.op_counts.items())),
            "atol": self.parity.atol,
            "max_abs_error": _finite(self.parity.max_abs_error),
            "parity": [
                {
                    "batch": c.batch,
                    "seq_len": c.seq_len,
                    "input_mean": c.input_mean,
                    "input_std": c.input_std,
                    "max_abs_error": _finite(c.max_abs_error),
                }
                for c in self.parity.cases
            ],
            "streaming": [
                {
                    "chunk": c.chunk,
                    "batch": c.batch,
                    "seq_len": c.seq_len,
                    "max_abs_error": _finite(c.max_abs_error),
                }
                for c in self.streaming
            ],
            "state_pairs": [list(p) for p in self.metadata.state_pairs],
            "metadata": self.metadata.to_props(),
        }

    def format_text(self) -> str:
        """Return the report as the lines `rnnedge export` prints."""
        lines = [
            f"exported {self.path} ({self.size_bytes:,} bytes) from {self.source}",
            f"exporter: {self.exporter} ({self.capture}), opset {self.opset}",
        ]
        for attempt in self.attempts:
            lines.append(
                f"  fell back from {attempt.exporter} ({attempt.capture}): {attempt.error}"
            )
        if self.lowered:
            names = ", ".join(name or "(the model)" for name in self.lowered)
            lines.append(f"lowered projected LSTM to a loop over time: {names}")
        lines.append("inputs:  " + "; ".join(v.describe() for v in self.inputs))
        lines.append("outputs: " + "; ".join(v.describe() for v in self.outputs))
        if self.metadata.labels:
            lines.append("classes: " + ", ".join(self.metadata.labels))
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(self.op_counts.items()))
        lines.append(f"operators: {ops}")
        states = "; state outputs relative to max(1, max |state|)" if self.streaming else ""
        lines.append(f"parity vs PyTorch (tolerance {self.parity.atol:g}{states}):")
        for case in self.parity.cases:
            shifted = ""
            if (case.input_mean, case.input_std) != (0.0, 1.0):
                shifted = f", input mean {case.input_mean:+g} std {case.input_std:g}"
            lines.append(
                f"  batch {case.batch:>3}, length {case.seq_len:>4}{shifted}: "
                f"max abs error {case.max_abs_error:.3g}"
            )
        if self.streaming:
            lines.append("streaming, chunked against the whole sequence:")
            for case in self.streaming:
                lines.append(
                    f"  chunks of {case.chunk:>3} over {case.seq_len} steps, batch {case.batch}: "
                    f"max abs error {case.max_abs_error:.3g}"
                )
            pairs = ", ".join(f"{a} -> {b}" for a, b in self.metadata.state_pairs)
            lines.append(f"state pairs: {pairs}")
        return "\n".join(lines)


def _attempt_dict(attempt: Attempt) -> dict[str, Any]:
    return {
        "exporter": attempt.exporter,
        "capture": attempt.capture,
        "error": attempt.error,
        "max_abs_error": None if attempt.max_abs_error is None else _finite(attempt.max_abs_error),
    }


def _value_dict(value: GraphValue) -> dict[str, Any]:
    return {"name": value.name, "dtype": value.dtype, "shape": list(value.shape)}


def _finite(value: float) -> float | None:
    # JSON has no infinity; an output shape mismatch is reported as null.
    return value if math.isfinite(value) else None
