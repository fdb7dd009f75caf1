"""Predicting the latency of an unmeasured recurrent model from a device's measurements.

The model is linear in five work terms, fitted per (cell, precision, provider, threads):

    p50 = c0 + c1 * T*L*D + c2 * T*L*D*B*H + c3 * T*M / 1e6 + c4 * W / 1e6

with T the sequence length, L the layers, D the directions (1 or 2), B the batch, H the
hidden size and M the multiply-accumulates of one time step over all layers,
M = B * D * G * sum over layers of (input size + H) * H, where G is 4 gates for an LSTM
and 3 for a GRU and the input size of a layer above the first is D*H. W = M / B is the
number of recurrent weights. c0 is the per-call cost, c1 the per-step cost of an operator,
c2 the elementwise gate work and c3 the time per million multiply-accumulates. c4 is a
per-call cost that grows with the weights, because on x86-64 with ONNX Runtime 1.32 a
one-step call of a large LSTM costs far more than its arithmetic.

The fit minimizes relative error (each row is divided by its measured latency) and keeps
every coefficient non-negative, so that no term predicts negative time outside the
measured range.

The error reported with a prediction comes from holding out each measured architecture
in turn, fitting on the rest and predicting the held-out one's configurations.

NOTE: the work terms ignore cache effects, so a hidden size well beyond the measured ones
(weights that no longer fit the caches the reference models fit) is predicted too fast.
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

GATES = {"lstm": 4, "gru": 3}
TERMS = (
    "per_call",
    "per_step_op",
    "per_step_elementwise",
    "per_million_macs",
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
    """Compute the five regressors of the latency model for one configuration."""
    if arch.cell not in GATES:
        raise InputError(f"unknown cell {arch.cell!r}; use lstm or gru")
    directions = 2 if arch.bidirectional else 1
    macs = 0
    for layer in range(arch.num_layers):
        inputs = arch.features if layer == 0 else directions * arch.hidden_size
        macs += (inputs + arch.hidden_size) * arch.hidden_size
    weights = macs * directions * GATES[arch.cell]
    macs = weights * batch
    steps = seq_len * arch.num_layers * directions
    return np.array(
        [1.0, steps, steps * batch * arch.hidden_size, seq_len * macs / 1e6, weights / 1e6],
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "p50_ms": round(self.p50_ms, 6),
            "group": self.group,
            "coefficients_ms": {k: float(f"{v:.6g}") for k, v in self.coefficients.items()},
            "samples": self.samples,
            "architectures": self.architectures,
            "held_out_median_abs_error": self.held_out_median_error,
            "held_out_max_abs_error": self.held_out_max_error,
        }


def fit(samples: Sequence[Sample]) -> np.ndarray:
    """Fit the non-negative coefficients minimizing the relative squared error."""
    if not samples:
        raise InputError("no measurements to fit a latency model to")
    x = np.stack([work_terms(s.arch, s.batch, s.seq_len) for s in samples])
    y = np.array([s.p50_ms for s in samples])
    x = x / y[:, None]
    target = np.ones_like(y)
    active = list(range(x.shape[1]))
    # Active-set non-negative least squares, enough for five terms: drop the most negative
    # coefficient and refit until none is negative.
    while True:
        solution, *_ = np.linalg.lstsq(x[:, active], target, rcond=None)
        if (solution >= 0).all() or len(active) == 1:
            break
        active.pop(int(np.argmin(solution)))
    coefficients = np.zeros(x.shape[1])
    coefficients[active] = np.clip(solution, 0, None)
    return coefficients


def predict_from(coefficients: np.ndarray, arch: Architecture, batch: int, seq_len: int) -> float:
    return float(work_terms(arch, batch, seq_len) @ coefficients)


def held_out_errors(samples: Sequence[Sample]) -> list[float]:
    """Relative errors on each architecture's configurations, fitted without it."""
    errors = []
    architectures = sorted({s.arch for s in samples}, key=repr)
    if len(architectures) < 2:
        return errors
    for held_out in architectures:
        train = [s for s in samples if s.arch != held_out]
        coefficients = fit(train)
        for s in samples:
            if s.arch == held_out:
                errors.append(predict_from(coefficients, s.arch, s.batch, s.seq_len) / s.p50_ms - 1)
    return errors


def group_samples(
    profile: DeviceProfile,
    cell: str,
    precision: str,
    provider: str | None = None,
    threads: int | None = None,
) -> tuple[list[Sample], dict[str, Any]]:
    """Select the device's measurements for one fit, and return them with their group.

    Provider and threads default to the most common among the matching measurements.
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
        raise InputError(
            f"device {profile.name!r} has no {precision} {cell} measurements with an "
            "architecture to predict from; profile reference models first (see "
            "benchmarks/predict_accuracy.py)"
        )
    if provider is None:
        provider = Counter(e.get("provider") for e, _ in candidates).most_common(1)[0][0]
    if threads is None:
        threads = Counter(
            e.get("threads") for e, _ in candidates if e.get("provider") == provider
        ).most_common(1)[0][0]
    latest: dict[tuple[Any, ...], Sample] = {}
    for entry, arch in candidates:
        if entry.get("provider") == provider and entry.get("threads") == threads:
            key = (arch, entry["batch"], entry["seq_len"])
            latest[key] = Sample(
                arch, entry["batch"], entry["seq_len"], entry["latency_ms"]["p50_ms"]
            )
    group = {"cell": cell, "precision": precision, "provider": provider, "threads": threads}
    if not latest:
        raise InputError(
            f"device {profile.name!r} has no {precision} {cell} measurements on {provider} with "
            f"{threads} threads; choose another --provider or --threads"
        )
    return list(latest.values()), group


def predict_latency(
    profile: DeviceProfile,
    arch: Architecture,
    batch: int = 1,
    seq_len: int = 100,
    precision: str = "fp32",
    provider: str | None = None,
    threads: int | None = None,
) -> Prediction:
    """Predict the p50 latency of `arch` on the device without running it."""
    if batch < 1 or seq_len < 1:
        raise InputError(f"batch and sequence length must be at least 1, got {batch}, {seq_len}")
    samples, group = group_samples(profile, arch.cell, precision, provider, threads)
    coefficients = fit(samples)
    errors = [abs(e) for e in held_out_errors(samples)]
    return Prediction(
        p50_ms=predict_from(coefficients, arch, batch, seq_len),
        group=group,
        coefficients=dict(zip(TERMS, coefficients.tolist(), strict=True)),
        samples=len(samples),
        architectures=len({s.arch for s in samples}),
        held_out_median_error=round(statistics.median(errors), 4) if errors else None,
        held_out_max_error=round(max(errors), 4) if errors else None,
    )
