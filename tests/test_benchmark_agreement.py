"""`rnnedge profile` and the benchmark time the same configuration alike.

Both go through `rnnedge.profiling.timing.measure`; this checks that nothing else in
either path (input preparation, session options) shifts the figure. Medians of three
interleaved rounds are compared, and the bound is wide (a factor of 2) because the two
measurements run at different moments on a shared machine.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import pytest

from rnnedge.profiling import profile_model

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "recurrent_latency.py"


@pytest.fixture(scope="module")
def benchmark_module():
    spec = importlib.util.spec_from_file_location("recurrent_latency", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_profile_and_benchmark_agree(benchmark_module, tmp_path):
    config = benchmark_module.Config("lstm", 64, 1, 50, 1, 1)
    rows_by_round, profiled = [], []
    for _ in range(3):
        rows = benchmark_module.run_config(config, tmp_path)
        rows_by_round.append(next(r for r in rows if r["contender"] == "rnnedge-fp32"))
        artifacts = benchmark_module.build_artifacts(config, tmp_path)
        result = profile_model(artifacts["fp32"], provider="cpu", batch=1, seq_len=50,
                               threads=1, warmup=10, runs=200, store=False)  # fmt: skip
        profiled.append(result.latency.p50_ms)
    bench_p50 = statistics.median(r["p50_ms"] for r in rows_by_round)
    profile_p50 = statistics.median(profiled)
    assert 0.5 < bench_p50 / profile_p50 < 2.0, (bench_p50, profile_p50)
