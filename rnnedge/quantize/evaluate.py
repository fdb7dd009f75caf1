"""Compare a quantized model with its float source: output drift, task metric, latency.

Every comparison runs both models in plain ONNX Runtime CPU sessions with one thread, so the
figures of the two models are measured under the same conditions. Latency comes from the
shared timing helper, `rnnedge.profiling.timing.measure`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from rnnedge.errors import InputError
from rnnedge.profiling.timing import measure
from rnnedge.quantize.feeds import BATCH_MAJOR, DataLayout, build_feed
from rnnedge.quantize.report import Drift

# Sequences per session call when running a data set; bounds memory for long data sets.
EVAL_BATCH = 64


@dataclass(frozen=True)
class Metric:
    """A task metric: accuracy for classes (higher is better), MSE for values (lower)."""

    name: str
    value: float

    @property
    def higher_is_better(self) -> bool:
        return self.name == "accuracy"


def open_session(model: bytes | str, quiet: bool = False) -> ort.InferenceSession:
    """Open a one-thread CPU session over a model file or serialized model.

    `quiet` keeps ONNX Runtime's own error log off stderr, for a session whose failures
    the caller turns into one line of its own.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    if quiet:
        options.log_severity_level = 4
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def first_output(
    session: ort.InferenceSession,
    x: np.ndarray,
    layout: DataLayout = BATCH_MAJOR,
    rows_for: str | None = None,
) -> np.ndarray:
    """Return the first output over all sequences of the (batch, time, features) array `x`,
    with the batch axis first.

    The sequences run in batches of `EVAL_BATCH`, or of the model's fixed batch size, in the
    model's `layout`. Where a batch was filled up to the fixed size, the rows of the repeated
    sequences are dropped.

    Args:
        rows_for: the option that gave `x` (such as "--eval x"), where each sequence needs
            its own row of output: an output with another number of rows then raises
            `InputError`, which names the other layout where the layout was guessed.
    """
    inputs = session.get_inputs()
    parts = []
    for part, count in layout.batches(x, EVAL_BATCH):
        feed = build_feed(inputs, part, layout)
        output = layout.from_model(session.run(None, feed)[0])
        if output.ndim and output.shape[0] == part.shape[0]:
            output = output[:count]
        elif rows_for is not None:
            raise InputError(_rows_message(rows_for, part.shape, output.shape, layout))
        parts.append(output)
    return np.concatenate(parts, axis=0)


def _rows_message(
    option: str, fed: tuple[int, ...], output: tuple[int, ...], layout: DataLayout
) -> str:
    """Say that the first output has no row per sequence of the batch `fed`."""
    rows = f"{output[0]} rows" if output else "no batch axis"
    message = (
        f"{option} runs in batches of {fed[0]} sequences of {fed[1]} steps, but for such a "
        f"batch the model's first output has shape {tuple(output)} ({rows}), not one row "
        "per sequence"
    )
    if layout.guessed:
        return (
            f"{message}; the model records no layout and quantize fed it {layout.name} by "
            f"default, so pass --layout {layout.other_name} if it takes "
            f"{_axes(layout.other_name)}"
        )
    return (
        f"{message}; the metric needs a model whose first output has the batch on axis 0, "
        "or on axis 1 of a time-major model"
    )


def layout_hint(layout: DataLayout) -> str:
    """Return the fix to add to an error about outputs and labels where the layout was
    guessed, else an empty string."""
    if not layout.guessed:
        return ""
    return (
        f"; the model records no layout and quantize fed it {layout.name} by default, so "
        f"if it takes {_axes(layout.other_name)}, pass --layout {layout.other_name}"
    )


def _axes(layout_name: str) -> str:
    if layout_name == "time-major":
        return "(time, batch, features)"
    return "(batch, time, features)"


def drift(expected: np.ndarray, actual: np.ndarray, classification: bool) -> Drift:
    """Absolute output difference of `actual` against the float model's `expected`."""
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    agreement = None
    if classification and expected.ndim >= 2:
        agreement = float(np.mean(expected.argmax(-1) == actual.argmax(-1)))
    return Drift(
        samples=int(expected.shape[0]),
        max_abs_error=float(difference.max()),
        mean_abs_error=float(difference.mean()),
        top1_agreement=agreement,
    )


def task_metric(outputs: np.ndarray, y: np.ndarray, classification: bool, hint: str = "") -> Metric:
    """Accuracy of argmax against integer labels, or mean squared error against targets.

    `hint` ends the message of a shape mismatch, such as the `layout_hint` of a guessed
    layout.
    """
    if classification:
        if outputs.ndim < 2 or y.shape != outputs.shape[:-1]:
            raise InputError(
                f"--eval labels y have shape {tuple(y.shape)}, but the model's outputs for "
                f"all sequences have shape {tuple(outputs.shape)} and need one class index "
                f"per output row, shape {tuple(outputs.shape[:-1])}{hint}"
            )
        _check_labels(y, outputs.shape[-1])
        return Metric("accuracy", float(np.mean(outputs.argmax(-1) == y)))
    target = y.astype(np.float64)
    if target.shape != outputs.shape:
        try:
            target = np.broadcast_to(target.reshape(outputs.shape), outputs.shape)
        except ValueError:
            raise InputError(
                f"--eval targets y have shape {tuple(y.shape)}, but the model's outputs for "
                f"all sequences have shape {tuple(outputs.shape)}; pass one target per "
                f"output value{hint}"
            ) from None
    return Metric("mse", float(np.mean((outputs.astype(np.float64) - target) ** 2)))


def _check_labels(y: np.ndarray, classes: int) -> None:
    """Reject labels that are not class indices of a model with `classes` outputs."""
    if not y.size:
        return
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
        raise InputError(
            f"--eval labels y ({y.dtype}{list(y.shape)}) must be finite class indices from "
            f"0 to {classes - 1}"
        )
    if not np.issubdtype(y.dtype, np.integer) and not np.all(y == np.round(y)):
        raise InputError(
            f"--eval labels y are fractional ({y.dtype}{list(y.shape)}); a classifier needs "
            f"class indices from 0 to {classes - 1}"
        )
    low, high = y.min(), y.max()
    if low < 0 or high > classes - 1:
        raise InputError(
            f"--eval labels y range from {low:g} to {high:g}, but the model has {classes} "
            f"classes, so each label must be from 0 to {classes - 1}"
        )


def p50_latency_ms(
    session: ort.InferenceSession, x: np.ndarray, runs: int, layout: DataLayout = BATCH_MAJOR
) -> float:
    """Return the median latency of one call on the (batch, time, features) array `x`, fed
    in the model's `layout`, after a short warm-up.

    A model with a fixed batch size gets the first batch of `layout.batches`, of that size.
    """
    batch = layout.first_batch(x, x.shape[0])
    feed = build_feed(session.get_inputs(), batch, layout)
    stats, _ = measure(lambda: session.run(None, feed), warmup=5, runs=runs, budget_s=2.0)
    return stats.p50_ms
