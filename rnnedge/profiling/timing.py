"""The one timing helper: warm-up kept apart from measurement, percentiles computed once.

Every latency rnnedge reports (profile, demo, benchmarks) comes from `measure`, so the
figures of different commands agree for the same configuration.

The confidence interval of the median is distribution-free: with n samples, the number
of samples below the true median is Binomial(n, 1/2), so the order statistics of ranks
j and k (1-based) bound the median with probability P(j <= B < k), B ~ Binomial(n, 1/2).
The ranks are the narrowest symmetric pair whose coverage reaches 95%.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rnnedge.errors import InputError

# The fewest samples whose full range covers the median with 95% probability: the range
# of n samples misses it with probability 2 / 2**n, which is 3.1% for 6 and 6.3% for 5.
MIN_CI_COUNT = 6


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
    # 95% confidence interval of the median; it covers less than 95% below 6 samples,
    # where the interval is the sample range.
    p50_ci_low_ms: float = math.nan
    p50_ci_high_ms: float = math.nan

    @property
    def p50_ci_halfwidth_rel(self) -> float:
        """Half the width of the median's confidence interval, relative to the median."""
        if not self.p50_ms > 0:
            return math.nan
        return (self.p50_ci_high_ms - self.p50_ci_low_ms) / 2 / self.p50_ms

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Summarize latency samples; percentiles use linear interpolation between ranks."""
    if len(samples_ms) == 0:
        raise InputError("no latency samples to summarize; measure at least one run")
    data = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(data, [50, 90, 99])
    low, high = median_ci_ranks(int(data.size))
    ordered = np.sort(data)
    return LatencyStats(
        count=int(data.size),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(data.mean()),
        std_ms=float(data.std(ddof=1)) if data.size > 1 else 0.0,
        min_ms=float(data.min()),
        max_ms=float(data.max()),
        p50_ci_low_ms=float(ordered[low - 1]),
        p50_ci_high_ms=float(ordered[high - 1]),
    )


def median_ci_ranks(n: int, level: float = 0.95) -> tuple[int, int]:
    """Return the 1-based ranks (j, k) of the order statistics that bound the median.

    P(x_(j) <= median <= x_(k)) >= `level` for any continuous distribution, for n >= 6
    at the 95% level; below that the full range (1, n) is returned.
    """
    if n < 1:
        raise InputError(f"need at least one sample for a confidence interval, got {n}")
    log_half = n * math.log(0.5)
    # cdf[i] = P(B <= i), B ~ Binomial(n, 1/2), computed in log space to stay finite.
    cdf = []
    total = 0.0
    for i in range(n + 1):
        log_pmf = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half
        total += math.exp(log_pmf)
        cdf.append(total)
    alpha = 1.0 - level
    # the largest j with P(B <= j - 1) <= alpha / 2; symmetric k = n + 1 - j.
    j = 1
    while j < n and cdf[j] <= alpha / 2:
        j += 1
    j = max(1, j)
    return j, n + 1 - j


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
