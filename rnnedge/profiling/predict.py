"""Predicting the latency of an unmeasured recurrent model from a device's measurements.

The model is linear in eight work terms, fitted per (cell, precision, provider, threads):

    p50 = c0 + c1 * L*D + c2 * T*L*D + c3 * T*L*D*B + c4 * T*L*D*B*H
          + c5 * T*B*W / 1e6 + c6 * T*R / 1e6 + c7 * W / 1e6

with T the sequence length, L the layers, D the directions (1 or 2), B the batch and H the
hidden size. W = D * G * sum over layers of (input size + H) * H is the number of weights
of the recurrent layers, where G is 4 gates for an LSTM and 3 for a GRU and the input size
of a layer above the first is D*H. R = L * D * G * H*H is the part of W that multiplies the
hidden state, so T*B*W counts every multiply-accumulate of a call.

The terms follow how a recurrent operator runs on a CPU:

- c0 is the fixed cost of a call and c1 the setup of each recurrence (one per layer and
  direction).
- c2, c3 and c4 are costs of a time step: a fixed part, a part per batch row and the
  elementwise gate work on B*H values.
- c5 is the time per million multiply-accumulates.
- c6 is the time to read the recurrent weights once per time step. That read does not
  depend on the batch, so a batch-B step costs far less than B batch-1 steps. On the
  2-core x86-64 test host (ONNX Runtime 1.32, one thread) a batch-4 step of a hidden-256
  LSTM takes about 1.3 times as long as a batch-1 step.
- c7 is a per-call cost that grows with the weights, because on x86-64 with ONNX Runtime
  1.32 a one-step call of a large LSTM costs far more than its arithmetic.

The fit minimizes relative error (each row is divided by its measured latency) and keeps
every coefficient non-negative, so that no term predicts negative time outside the
measured range and no prediction falls when T, B, H, L or D grows.

The error reported with a prediction comes from holding out each measured architecture
in turn, fitting on the rest and predicting the held-out one's configurations.

NOTE: the terms are linear in the weights, so a model whose weights outgrow a cache level
that every reference model fits in is predicted too fast.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnedge.errors import InputError
from rnnedge.profiling.catalog import DeviceProfile
from rnnedge.runtime.providers import (
    ACL_EP,
    CPU_EP,
    CUDA_EP,
    TENSORRT_EP,
    XNNPACK_EP,
    Provider,
    parse_provider,
)

GATES = {"lstm": 4, "gru": 3}
_CELL_NAMES = {"lstm": "an LSTM", "gru": "a GRU"}
# The documented accuracy goal of a prediction: the held-out relative error has a median of
# at most 15% and a max of at most 35% (met by benchmarks/predict_accuracy.py, see
# docs/profiling.md). A fit that misses it gets a warning with its prediction.
GOAL_MEDIAN_ERROR = 0.15
GOAL_MAX_ERROR = 0.35
TERMS = (
    "per_call",
    "per_recurrence",
    "per_step",
    "per_step_batch_row",
    "per_step_element",
    "per_million_macs",
    "per_step_million_recurrent_weights",
    "per_call_million_weights",
)


@dataclass(frozen=True)
class Architecture:
    """The shape of a recurrent model that latency depends on."""

    cell: str
    features: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False

    @classmethod
    def from_measurement(cls, entry: dict[str, Any]) -> Architecture | None:
        arch = entry.get("architecture") or {}
        try:
            return cls(
                cell=str(arch["cell"]),
                features=int(arch["features"]),
                hidden_size=int(arch["hidden_size"]),
                num_layers=int(arch["num_layers"]),
                bidirectional=bool(arch["bidirectional"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def work_terms(arch: Architecture, batch: int, seq_len: int) -> np.ndarray:
    """Compute the eight regressors of the latency model for one configuration."""
    if arch.cell not in GATES:
        raise InputError(f"unknown cell {arch.cell!r}; use lstm or gru")
    directions = 2 if arch.bidirectional else 1
    hidden = arch.hidden_size
    inputs = arch.features + (arch.num_layers - 1) * directions * hidden
    weights = directions * GATES[arch.cell] * (inputs + arch.num_layers * hidden) * hidden
    recurrent_weights = arch.num_layers * directions * GATES[arch.cell] * hidden * hidden
    recurrences = arch.num_layers * directions
    steps = seq_len * recurrences
    return np.array(
        [
            1.0,
            recurrences,
            steps,
            steps * batch,
            steps * batch * hidden,
            seq_len * batch * weights / 1e6,
            seq_len * recurrent_weights / 1e6,
            weights / 1e6,
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class Sample:
    arch: Architecture
    batch: int
    seq_len: int
    p50_ms: float


@dataclass(frozen=True)
class Prediction:
    """A predicted p50 latency with the fit behind it."""

    p50_ms: float
    group: dict[str, Any]
    coefficients: dict[str, float]
    samples: int
    architectures: int
    held_out_median_error: float | None
    held_out_max_error: float | None
    # One-line reasons to distrust the prediction, each with what to measure.
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "p50_ms": round(self.p50_ms, 6),
            "group": self.group,
            "coefficients_ms": {k: float(f"{v:.6g}") for k, v in self.coefficients.items()},
            "samples": self.samples,
            "architectures": self.architectures,
            "held_out_median_abs_error": self.held_out_median_error,
            "held_out_max_abs_error": self.held_out_max_error,
            "warnings": list(self.warnings),
        }


def nonnegative_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve min ||a x - b|| subject to x >= 0 (the Lawson-Hanson active-set method)."""
    columns = a.shape[1]
    solution = np.zeros(columns)
    passive = np.zeros(columns, dtype=bool)
    tolerance = 1e-10 * max(1.0, float(np.abs(a.T @ b).max()))
    # Each outer step frees one coefficient and usually none is taken back, so the method
    # ends within about `columns` steps. The cap guards only against cycling from rounding.
    for _ in range(3 * columns):
        gradient = a.T @ (b - a @ solution)
        if passive.all() or gradient[~passive].max() <= tolerance:
            break
        passive[np.flatnonzero(~passive)[np.argmax(gradient[~passive])]] = True
        while True:
            trial = np.zeros(columns)
            trial[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (trial[passive] > 0).all():
                solution = trial
                break
            # Step from the current solution towards the trial one until the first
            # coefficient reaches zero, then take that coefficient out of the passive set.
            blocking = np.flatnonzero(passive & (trial <= 0))
            distance = solution[blocking] - trial[blocking]
            ratios = np.divide(
                solution[blocking], distance, out=np.zeros_like(distance), where=distance > 0
            )
            solution = solution + ratios.min() * (trial - solution)
            solution[blocking[np.argmin(ratios)]] = 0.0
            passive &= solution > 0
            solution[~passive] = 0.0
    return solution


def fit(samples: Sequence[Sample]) -> np.ndarray:
    """Fit the non-negative coefficients minimizing the relative squared error."""
    if not samples:
        raise InputError("no measurements to fit a latency model to")
    x = np.stack([work_terms(s.arch, s.batch, s.seq_len) for s in samples])
    y = np.array([s.p50_ms for s in samples])
    x = x / y[:, None]
    # Scale each column to a maximum of 1 so that the terms, which differ by orders of
    # magnitude, weigh alike in the solver's tolerance and its choice of the next term.
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    return nonnegative_least_squares(x / scale, np.ones_like(y)) / scale


def predict_from(coefficients: np.ndarray, arch: Architecture, batch: int, seq_len: int) -> float:
    return float(work_terms(arch, batch, seq_len) @ coefficients)


def held_out_errors_by_sample(samples: Sequence[Sample]) -> list[tuple[Sample, float]]:
    """Pair each sample with its relative error when its architecture is left out of the fit.

    The list is empty when the samples cover fewer than two architectures.
    """
    pairs: list[tuple[Sample, float]] = []
    architectures = sorted({s.arch for s in samples}, key=repr)
    if len(architectures) < 2:
        return pairs
    for held_out in architectures:
        train = [s for s in samples if s.arch != held_out]
        coefficients = fit(train)
        for s in samples:
            if s.arch == held_out:
                predicted = predict_from(coefficients, s.arch, s.batch, s.seq_len)
                pairs.append((s, predicted / s.p50_ms - 1))
    return pairs


def held_out_errors(samples: Sequence[Sample]) -> list[float]:
    """Relative errors on each architecture's configurations, fitted without it."""
    return [error for _, error in held_out_errors_by_sample(samples)]


def group_samples(
    profile: DeviceProfile,
    cell: str,
    precision: str,
    provider: str | None = None,
    threads: int | None = None,
) -> tuple[list[Sample], dict[str, Any]]:
    """Select the device's measurements for one fit, and return them with their group.

    Provider and threads default to the most common among the matching measurements (the
    provider among those of the given thread count, where one is given). A configuration
    measured more than once contributes one sample, its `uncontended_p50`.
    """
    candidates = []
    for entry in profile.measurements:
        arch = Architecture.from_measurement(entry)
        latency = entry.get("latency_ms") or {}
        if arch is None or arch.cell != cell or entry.get("precision") != precision:
            continue
        if "p50_ms" not in latency or not isinstance(entry.get("seq_len"), int):
            continue
        candidates.append((entry, arch))
    if not candidates:
        # The quantize mode that writes each stored precision.
        modes = {"int8": "dynamic-int8", "int8-weights": "weight-int8", "fp16": "fp16"}
        convert = (
            ""
            if precision == "fp32"
            else f", convert them with 'rnnedge quantize --mode {modes.get(precision, precision)}'"
        )
        raise InputError(
            f"device {profile.name!r} has no {precision} {cell} measurements with an "
            f"architecture to predict from; export {cell} models of two or more hidden sizes "
            f"with 'rnnedge export'{convert}, then measure each with 'rnnedge profile "
            f"MODEL.onnx --device {profile.name} --sweep seq-len=1,10,100'"
        )
    stored_providers = Counter(e.get("provider") for e, _ in candidates)
    with_threads = Counter(e.get("provider") for e, _ in candidates if e.get("threads") == threads)
    if provider is None:
        # Given --threads, the default is the most measured provider with that count.
        provider = (with_threads or stored_providers).most_common(1)[0][0]
    else:
        provider = _stored_provider(profile.name, cell, precision, provider, stored_providers)
    stored_threads = Counter(
        e.get("threads") for e, _ in candidates if e.get("provider") == provider
    )
    if threads is None:
        threads = stored_threads.most_common(1)[0][0]
    repeats: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for entry, arch in candidates:
        if entry.get("provider") == provider and entry.get("threads") == threads:
            repeats.setdefault((arch, entry["batch"], entry["seq_len"]), []).append(entry)
    group = {"cell": cell, "precision": precision, "provider": provider, "threads": threads}
    if not repeats:
        measured = ", ".join(str(t) for t in sorted(stored_threads, key=str))
        raise InputError(
            f"device {profile.name!r} has no {precision} {cell} measurements on {provider} with "
            f"{threads} thread{'' if threads == 1 else 's'}; pass --threads with a measured "
            f"thread count: {measured}"
        )
    samples = [
        Sample(arch, batch, seq_len, uncontended_p50(entries))
        for (arch, batch, seq_len), entries in repeats.items()
    ]
    return samples, group


def _stored_provider(
    device: str, cell: str, precision: str, requested: str, stored: Counter[Any]
) -> str:
    """Map a --provider value to the ONNX Runtime provider name the measurements store.

    Accepts a stored name in any case and the rnnedge names (auto, cpu, cuda, tensorrt,
    arm). arm maps to the first of ACL, XNNPACK and the CPU provider that has
    measurements, because `rnnedge profile --provider arm` runs on the CPU provider where
    the build has neither. auto maps to the most measured provider.

    Raises:
        InputError: the name is unknown, or no measurement of the group ran on it.
    """
    by_lowercase = {str(name).lower(): name for name in stored if name is not None}
    if requested.strip().lower() in by_lowercase:
        return by_lowercase[requested.strip().lower()]
    parsed = parse_provider(requested)
    if parsed is Provider.AUTO:
        return stored.most_common(1)[0][0]
    for name in _STORED_PROVIDERS[parsed]:
        if name in stored:
            return name
    requested_label = " or ".join(_STORED_PROVIDERS[parsed])
    if requested_label.lower() != requested.strip().lower():
        requested_label = f"{requested!r} ({requested_label})"
    measured = ", ".join(_provider_label(name) for name in sorted(stored, key=str))
    raise InputError(
        f"device {device!r} has no {precision} {cell} measurements on provider "
        f"{requested_label}; pass --provider with a measured provider: {measured}"
    )


# The stored providers each --provider name selects, in order of preference. TensorRT's
# run falls back to the CUDA provider, but a CUDA measurement is no TensorRT latency, so
# tensorrt selects TensorRT measurements only.
_STORED_PROVIDERS: dict[Provider, tuple[str, ...]] = {
    Provider.CPU: (CPU_EP,),
    Provider.CUDA: (CUDA_EP,),
    Provider.TENSORRT: (TENSORRT_EP,),
    Provider.ARM: (ACL_EP, XNNPACK_EP, CPU_EP),
}


def _provider_label(stored: Any) -> str:
    """Name a stored provider with the --provider name that selects it, where one does."""
    for member in (Provider.CPU, Provider.CUDA, Provider.TENSORRT):
        if _STORED_PROVIDERS[member] == (stored,):
            return f"{member.value} ({stored})"
    return str(stored)


def uncontended_p50(entries: Sequence[dict[str, Any]]) -> float:
    """Return the lowest p50 among repeats of the latest measurement's model and runtime.

    Load from other processes only adds time, so the lowest p50 of repeated measurements
    is the closest to the device's own latency. A repeat of another model file (a new
    export) or another ONNX Runtime version may be faster or slower for real, so only
    the latest measurement's model file and runtime count.
    """

    def origin(entry: dict[str, Any]) -> tuple[Any, Any]:
        return entry.get("model_sha256"), (entry.get("host") or {}).get("onnxruntime")

    latest = origin(entries[-1])
    return min(e["latency_ms"]["p50_ms"] for e in entries if origin(e) == latest)


def predict_latency(
    profile: DeviceProfile,
    arch: Architecture,
    batch: int = 1,
    seq_len: int = 100,
    precision: str = "fp32",
    provider: str | None = None,
    threads: int | None = None,
) -> Prediction:
    """Predict the p50 latency of `arch` on the device without running it.

    The prediction carries a warning where the held-out error misses the goal
    (`GOAL_MEDIAN_ERROR`, `GOAL_MAX_ERROR`) and where the query lies outside the measured
    range, since the fit is then an extrapolation.

    Raises:
        InputError: the device has no measurements to fit, or they cover fewer than two
            hidden sizes, so that neither the per-unit costs nor a held-out error can be
            fitted.
    """
    for name, value in (("batch", batch), ("seq_len", seq_len)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    samples, group = group_samples(profile, arch.cell, precision, provider, threads)
    _check_hidden_sizes(profile.name, samples, group)
    coefficients = fit(samples)
    errors = [abs(e) for e in held_out_errors(samples)]
    median = round(statistics.median(errors), 4) if errors else None
    worst = round(max(errors), 4) if errors else None
    command = f"rnnedge profile MODEL.onnx --device {profile.name}"
    warnings = [
        text
        for text in (
            _range_warning(samples, arch, batch, seq_len, command),
            _error_warning(median, worst, arch.cell, command),
        )
        if text
    ]
    return Prediction(
        p50_ms=predict_from(coefficients, arch, batch, seq_len),
        group=group,
        coefficients=dict(zip(TERMS, coefficients.tolist(), strict=True)),
        samples=len(samples),
        architectures=len({s.arch for s in samples}),
        held_out_median_error=median,
        held_out_max_error=worst,
        warnings=tuple(warnings),
    )


def _check_hidden_sizes(device: str, samples: Sequence[Sample], group: dict[str, Any]) -> None:
    """Raise InputError where the samples cover fewer than two hidden sizes.

    With one hidden size, the costs that grow with it cannot be separated from the fixed
    costs, and no architecture can be held out to estimate the error.
    """
    sizes = {s.arch.hidden_size for s in samples}
    if len(sizes) >= 2:
        return
    cell = group["cell"]
    threads = group["threads"]
    count = f"{len(samples)} measurement{'' if len(samples) == 1 else 's'}"
    raise InputError(
        f"device {device!r} has {group['precision']} {cell} measurements of hidden size "
        f"{next(iter(sizes))} only ({count} on {group['provider']} with {threads} "
        f"thread{'' if threads == 1 else 's'}), but a prediction needs two or more hidden "
        f"sizes; export {_CELL_NAMES[cell]} model of another hidden size with 'rnnedge "
        f"export', then measure it with 'rnnedge profile MODEL.onnx --device {device} "
        "--sweep seq-len=1,10,100'"
    )


def _span(values: set[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low} to {high}"


def _range_warning(
    samples: Sequence[Sample], arch: Architecture, batch: int, seq_len: int, command: str
) -> str | None:
    """Name each quantity of the query outside the measured range, and how to measure it."""
    outside = []
    shape = (
        ("hidden size", arch.hidden_size, {s.arch.hidden_size for s in samples}),
        ("layers", arch.num_layers, {s.arch.num_layers for s in samples}),
        ("features", arch.features, {s.arch.features for s in samples}),
    )
    for label, value, measured in shape:
        if not min(measured) <= value <= max(measured):
            outside.append(f"{label} {value} (measured {_span(measured)})")
    if arch.bidirectional and not any(s.arch.bidirectional for s in samples):
        outside.append("bidirectional (measured one direction only)")
    architecture_outside = bool(outside)
    sweeps = []
    for label, axis, value, measured in (
        ("sequence length", "seq-len", seq_len, {s.seq_len for s in samples}),
        ("batch", "batch", batch, {s.batch for s in samples}),
    ):
        if not min(measured) <= value <= max(measured):
            outside.append(f"{label} {value} (measured {_span(measured)})")
            sweeps.append(f"--sweep {axis}={','.join(map(str, sorted(measured | {value})))}")
    if not outside:
        return None
    if architecture_outside:
        fix = (
            f"export {_CELL_NAMES[arch.cell]} model in that range with 'rnnedge export' and "
            "measure it with "
            f"'{command} {' '.join(sweeps) or '--sweep seq-len=1,10,100'}'"
        )
    else:
        fix = f"measure the stored models there with '{command} {' '.join(sweeps)}'"
    return (
        f"the query lies outside the measured range: {', '.join(outside)}, so the prediction "
        f"extrapolates; {fix}"
    )


def _error_warning(
    median: float | None, worst: float | None, cell: str, command: str
) -> str | None:
    """Warn where the held-out error misses the goal of the predictions."""
    if median is None or worst is None:
        return None
    if median <= GOAL_MEDIAN_ERROR and worst <= GOAL_MAX_ERROR:
        return None
    return (
        f"held-out |error| median {median:.1%}, max {worst:.1%} misses the goal of at most "
        f"{GOAL_MEDIAN_ERROR:.0%} and {GOAL_MAX_ERROR:.0%}, so this prediction may be far off; "
        f"measure more {cell.upper()} architectures (other hidden sizes and layer counts) with "
        f"'{command} --sweep seq-len=1,10,100'"
    )
