"""The one timing helper: warm-up kept apart from measurement, percentiles computed once.

Every latency rnnedge reports (profile, demo, benchmarks) comes from `measure`, so the
figures of different commands agree for the same configuration.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rnnedge.errors import InputError


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Summarize latency samples; percentiles use linear interpolation between ranks."""
    if len(samples_ms) == 0:
        raise InputError("no latency samples to summarize; measure at least one run")
    data = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(data, [50, 90, 99])
    return LatencyStats(
        count=int(data.size),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(data.mean()),
        std_ms=float(data.std(ddof=1)) if data.size > 1 else 0.0,
        min_ms=float(data.min()),
        max_ms=float(data.max()),
    )


def measure(
    fn: Callable[[], object],
    warmup: int = 10,
    runs: int = 100,
    budget_s: float | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> tuple[LatencyStats, list[float]]:
    """Time `fn` after `warmup` untimed calls.

    Runs `runs` timed calls, or fewer if `budget_s` seconds of timed calls run out first
    (at least one call is always timed). Returns the summary and the raw samples in ms.
    """
    if warmup < 0:
        raise InputError(f"warm-up count must be 0 or more, got {warmup}")
    if runs < 1:
        raise InputError(f"run count must be at least 1, got {runs}")
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    deadline = math.inf if budget_s is None else budget_s * 1e9
    spent = 0
    for _ in range(runs):
        start = clock()
        fn()
        elapsed = clock() - start
        samples.append(elapsed / 1e6)
        spent += elapsed
        if spent >= deadline:
            break
    return summarize(samples), samples
