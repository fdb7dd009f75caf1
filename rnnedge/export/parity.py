"""Parity of an exported model with its PyTorch source, at shapes other than the example's.

An export can load fine and still compute something else at another batch size or
sequence length (a traced loop unrolled to the example's length, a state whose batch
axis was frozen). Comparing outputs at new shapes is what catches that.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from rnnedge.errors import ExportError
from rnnedge.export.inputs import BATCH, SEQUENCE, InputRole, InputSpec, make_arrays
from rnnedge.runtime.inputs import describe
from rnnedge.runtime.ort_errors import summarize_ort_error

logger = logging.getLogger(__name__)

# Float32 LSTM and GRU exports match PyTorch to about 1e-7; 1e-5 leaves room for the
# different summation order of ONNX Runtime's kernels over long sequences.
DEFAULT_ATOL = 1e-5
# (mean, standard deviation) of the sequence input in the extra cases run at the first
# shape. Standard-normal inputs alone have a mean near zero at every shape, so a branch on
# the input's mean or scale that tracing froze would take the same path in every case.
SHIFTED_INPUTS = ((2.0, 3.0), (-2.0, 0.5))
# Steps run from zero states to get the initial states of a streaming graph's parity cases.
WARMUP_STEPS = 5
# The max length of an ONNX Runtime error message kept in a parity case.


@dataclass(frozen=True)
class ParityCase:
    """One comparison of PyTorch and ONNX Runtime on the same random inputs.

    The sequence input is drawn from a normal distribution of mean `input_mean` and
    standard deviation `input_std`. `max_abs_error` is the max abs error over the outputs,
    except that the error of a carried state output is divided by max(1, max |state|)
    (see `compare_outputs`). `max_abs_reference` is the largest |PyTorch output| among the
    other outputs, and `detail` gives the reason when the error is infinite.
    `output_shapes` contains the shape of each graph output that ONNX Runtime returned, in
    graph output order, and is empty when ONNX Runtime failed. `run_error` is ONNX Runtime's
    error message, shortened by `summarize_ort_error`, when it failed to run the graph.
    """

    batch: int
    seq_len: int
    max_abs_error: float
    input_mean: float = 0.0
    input_std: float = 1.0
    max_abs_reference: float = 0.0
    detail: str = ""
    output_shapes: tuple[tuple[int, ...], ...] = ()
    run_error: str = ""

    def describe(self) -> str:
        """Return "batch 3, length 37" plus the input distribution when it is shifted."""
        text = f"batch {self.batch}, length {self.seq_len}"
        if (self.input_mean, self.input_std) != (0.0, 1.0):
            text += f", input mean {self.input_mean:+g} std {self.input_std:g}"
        return text


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

    @property
    def worst(self) -> ParityCase:
        return max(self.cases, key=lambda case: case.max_abs_error)


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
    state_pairs: Sequence[tuple[int, int]] = (),
) -> ParityReport:
    """Compare every output of `reference` with the graph's, input by input as `specs` say.

    `reference` returns a flat tuple of tensors in graph output order. The sequence input is
    standard normal at each of `shapes`, and drawn with each mean and deviation of
    `SHIFTED_INPUTS` at the first shape. When the graph has a lengths input, outputs with a
    sequence axis are compared on each sequence's valid steps only, because the padding
    past a sequence's length is undefined.

    `state_pairs` lists (input index, output index) of the states a streaming graph
    carries. Those inputs get states that PyTorch computed from zeros over
    `WARMUP_STEPS` random steps, because random values there (an h beyond the range of
    tanh, for one) drive a trained LSTM far from any state it reaches. The state outputs
    are compared relative to their magnitude (see `compare_outputs`).
    """
    session = _session(onnx_model)
    names = [i.name for i in session.get_inputs()]
    rng = np.random.default_rng(seed)
    lengths_index = next(
        (i for i, spec in enumerate(specs) if spec.role is InputRole.LENGTHS), None
    )
    plan = [(batch, seq_len, 0.0, 1.0) for batch, seq_len in shapes]
    if shapes:
        plan += [(*shapes[0], mean, std) for mean, std in SHIFTED_INPUTS]
    cases = []
    state_outputs = [output for _, output in state_pairs]
    sort_lengths = False
    for batch, seq_len, mean, std in plan:
        arrays = make_arrays(specs, batch, seq_len, rng)
        for index, spec in enumerate(specs):
            if spec.role is InputRole.SEQUENCE:
                arrays[index] = (arrays[index] * std + mean).astype(np.float32)
        if state_pairs:
            states = _reachable_states(reference, specs, batch, state_pairs, rng)
            for (index, _), state in zip(state_pairs, states, strict=True):
                arrays[index] = state
        if sort_lengths:
            arrays[lengths_index] = np.sort(arrays[lengths_index])[::-1].copy()
        try:
            expected = _run_reference(reference, arrays)
        except RuntimeError as exc:
            # pack_padded_sequence(enforce_sorted=True) accepts only lengths in decreasing
            # order; such a model is checked on sorted lengths from here on.
            if lengths_index is None or "sorted in decreasing order" not in str(exc):
                raise
            sort_lengths = True
            arrays[lengths_index] = np.sort(arrays[lengths_index])[::-1].copy()
            expected = _run_reference(reference, arrays)
        try:
            actual = session.run(None, dict(zip(names, arrays, strict=True)))
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidArgument types
            # A graph that fixed a shape at the example's size fails here at run time.
            logger.debug("ONNX Runtime failed at batch %d, length %d: %s", batch, seq_len, exc)
            error = summarize_ort_error(exc)
            cases.append(ParityCase(batch, seq_len, float("inf"), mean, std, run_error=error))
            continue
        lengths = arrays[lengths_index] if lengths_index is not None else None
        comparison = compare_outputs(expected, actual, output_axes, lengths, state_outputs)
        logger.debug(
            "parity at batch %d, length %d, input mean %g std %g: %.3g",
            batch, seq_len, mean, std, comparison.error,
        )  # fmt: skip
        cases.append(
            ParityCase(
                batch,
                seq_len,
                comparison.error,
                mean,
                std,
                comparison.max_abs_reference,
                comparison.detail,
                tuple(tuple(array.shape) for array in actual),
            )
        )
    return ParityReport(tuple(cases), atol)


def _reachable_states(
    reference: torch.nn.Module,
    specs: Sequence[InputSpec],
    batch: int,
    state_pairs: Sequence[tuple[int, int]],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Run `reference` from zero states over a short random sequence; return its states."""
    arrays = make_arrays(specs, batch, WARMUP_STEPS, rng)
    for index, _ in state_pairs:
        arrays[index] = np.zeros_like(arrays[index])
    with torch.inference_mode():
        outputs = reference(*[torch.from_numpy(a) for a in arrays])
    return [np.ascontiguousarray(outputs[output].numpy()) for _, output in state_pairs]


@dataclass(frozen=True)
class Comparison:
    """The result of `compare_outputs`: the error, the output magnitude, and why inf."""

    error: float
    max_abs_reference: float = 0.0
    detail: str = ""


def _run_reference(reference, arrays: list[np.ndarray]) -> list[np.ndarray]:
    with torch.inference_mode():
        return [t.numpy() for t in reference(*[torch.from_numpy(a) for a in arrays])]


def compare_outputs(
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    output_axes: Sequence[dict[int, str]],
    lengths: np.ndarray | None = None,
    state_outputs: Collection[int] = (),
) -> Comparison:
    """Compare the graph's outputs with PyTorch's.

    The error is the max abs error over all outputs, and infinite when a shape or the count
    differs or an output is NaN where PyTorch's is not. For the outputs whose index is in
    `state_outputs`, the abs error is divided by max(1, max |PyTorch state|), because a
    carried cell state grows with the sequence and its float32 rounding grows with it (a
    trained LSTM's reached about 65 over 123 steps, with a rounding difference of 2e-4).
    """
    if len(expected) != len(actual):
        detail = f"the graph has {len(actual)} outputs, PyTorch {len(expected)}"
        logger.debug("%s", detail)
        return Comparison(float("inf"), detail=detail)
    worst, magnitude = 0.0, 0.0
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want.shape != got.shape:
            detail = f"output {index} has shape {got.shape}, PyTorch's has {want.shape}"
            logger.debug("%s", detail)
            return Comparison(float("inf"), detail=detail)
        difference = np.abs(got.astype(np.float64) - want.astype(np.float64))
        axes = output_axes[index] if index < len(output_axes) else {}
        if lengths is not None and BATCH in axes.values() and SEQUENCE in axes.values():
            batch_axis = next(a for a, n in axes.items() if n == BATCH)
            time_axis = next(a for a, n in axes.items() if n == SEQUENCE)
            difference = np.moveaxis(difference, (batch_axis, time_axis), (0, 1))
            steps = np.arange(difference.shape[1])[None, :] < lengths[:, None]
            difference = difference[steps]
        if np.isnan(difference).any():
            detail = f"output {index} is NaN in the graph or in PyTorch"
            return Comparison(float("inf"), detail=detail)
        if not difference.size:
            continue
        largest = float(np.abs(want).max()) if want.size else 0.0
        if index in state_outputs:
            worst = max(worst, float(difference.max()) / max(1.0, largest))
        else:
            worst = max(worst, float(difference.max()))
            magnitude = max(magnitude, largest)
    return Comparison(worst, magnitude)


def max_output_error(
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    output_axes: Sequence[dict[int, str]],
    lengths: np.ndarray | None = None,
) -> float:
    """Return the max abs error over all outputs; inf when a shape or the count differs."""
    return compare_outputs(expected, actual, output_axes, lengths).error


def _session(onnx_model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    # Only fatal messages: ONNX Runtime would print its errors and warnings about a failing
    # candidate to stderr, and the parity cases already record them.
    options.log_severity_level = 4
    try:
        return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
        raise ExportError(
            f"ONNX Runtime cannot load the exported model: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
