"""Parity of an exported model with its PyTorch source, at shapes other than the example's.

An export can load fine and still compute something else at another batch size or
sequence length (a traced loop unrolled to the example's length, a state whose batch
axis was frozen). Comparing outputs at new shapes is what catches that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from rnnedge.errors import ExportError
from rnnedge.export.inputs import BATCH, SEQUENCE, InputRole, InputSpec, make_arrays
from rnnedge.runtime.inputs import describe

logger = logging.getLogger(__name__)

# Float32 LSTM and GRU exports match PyTorch to about 1e-7; 1e-5 leaves room for the
# different summation order of ONNX Runtime's kernels over long sequences.
DEFAULT_ATOL = 1e-5


@dataclass(frozen=True)
class ParityCase:
    batch: int
    seq_len: int
    max_abs_error: float


@dataclass(frozen=True)
class ParityReport:
    cases: tuple[ParityCase, ...]
    atol: float

    @property
    def max_abs_error(self) -> float:
        return max(case.max_abs_error for case in self.cases)

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.atol


def check_parity(
    model: torch.nn.Module,
    onnx_model: bytes,
    features: int,
    shapes: Sequence[tuple[int, int]],
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same random inputs; report the max abs error.

    `shapes` are (batch, seq_len) pairs for batch-major input of `features` features.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    cases = []
    for batch, seq_len in shapes:
        x = rng.standard_normal((batch, seq_len, features)).astype(np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        actual = session.run(None, {input_name: x})[0]
        if actual.shape != expected.shape:
            error = float("inf")
            logger.warning(
                "output shape %s differs from PyTorch's %s at batch %d, length %d",
                actual.shape, expected.shape, batch, seq_len,
            )  # fmt: skip
        else:
            error = float(np.max(np.abs(actual.astype(np.float64) - expected)))
        logger.debug("parity at batch %d, length %d: %.3g (%s)", batch, seq_len, error, describe(x))
        cases.append(ParityCase(batch, seq_len, error))
    return ParityReport(tuple(cases), atol)


def check_graph_parity(
    reference: torch.nn.Module,
    onnx_model: bytes,
    specs: Sequence[InputSpec],
    shapes: Sequence[tuple[int, int]],
    output_axes: Sequence[dict[int, str]],
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> ParityReport:
    """Compare every output of `reference` with the graph's, input by input as `specs` say.

    `reference` returns a flat tuple of tensors in graph output order. When the graph has
    a lengths input, outputs with a sequence axis are compared on each sequence's valid
    steps only, because the padding past a sequence's length is undefined.
    """
    session = _session(onnx_model)
    names = [i.name for i in session.get_inputs()]
    rng = np.random.default_rng(seed)
    lengths_index = next(
        (i for i, spec in enumerate(specs) if spec.role is InputRole.LENGTHS), None
    )
    cases = []
    for batch, seq_len in shapes:
        arrays = make_arrays(specs, batch, seq_len, rng)
        with torch.inference_mode():
            expected = [t.numpy() for t in reference(*[torch.from_numpy(a) for a in arrays])]
        try:
            actual = session.run(None, dict(zip(names, arrays, strict=True)))
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidArgument types
            # A graph that fixed a shape at the example's size fails here at run time.
            logger.info("ONNX Runtime failed at batch %d, length %d: %s", batch, seq_len, exc)
            cases.append(ParityCase(batch, seq_len, float("inf")))
            continue
        lengths = arrays[lengths_index] if lengths_index is not None else None
        error = max_output_error(expected, actual, output_axes, lengths)
        logger.debug("parity at batch %d, length %d: %.3g", batch, seq_len, error)
        cases.append(ParityCase(batch, seq_len, error))
    return ParityReport(tuple(cases), atol)


def max_output_error(
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    output_axes: Sequence[dict[int, str]],
    lengths: np.ndarray | None = None,
) -> float:
    """Return the max abs error over all outputs; inf when a shape or the count differs."""
    if len(expected) != len(actual):
        logger.warning("the graph has %d outputs, PyTorch %d", len(actual), len(expected))
        return float("inf")
    worst = 0.0
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want.shape != got.shape:
            logger.warning("output %d has shape %s, PyTorch's has %s", index, got.shape, want.shape)
            return float("inf")
        difference = np.abs(got.astype(np.float64) - want.astype(np.float64))
        axes = output_axes[index] if index < len(output_axes) else {}
        if lengths is not None and BATCH in axes.values() and SEQUENCE in axes.values():
            batch_axis = next(a for a, n in axes.items() if n == BATCH)
            time_axis = next(a for a, n in axes.items() if n == SEQUENCE)
            difference = np.moveaxis(difference, (batch_axis, time_axis), (0, 1))
            steps = np.arange(difference.shape[1])[None, :] < lengths[:, None]
            difference = difference[steps]
        if np.isnan(difference).any():
            return float("inf")
        if difference.size:
            worst = max(worst, float(difference.max()))
    return worst


def _session(onnx_model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"ONNX Runtime cannot load the exported model: {first}") from exc
