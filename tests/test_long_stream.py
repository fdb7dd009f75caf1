"""A long stream stays flat: the CI-sized version of benchmarks/long_stream.py.

The benchmark feeds a million single steps; these tests feed 25,000 through the same code
and bound memory, never time:

- resident memory, in a fresh interpreter that imports only the runtime (as on a board),
  grows by under 2% after a warm-up of 5,000 steps;
- where glibc reports it, the C heap in use grows by under 512 KiB, which a leak of 25
  bytes per step would exceed;
- Python and numpy allocations traced by tracemalloc grow by under 64 KiB over 5,000
  steps, which a leak of one small object per step would exceed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rnnedge.runtime import StreamingSession

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "long_stream.py"
CELLS = ["lstm", "gru"]


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("long_stream", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def streaming_models(benchmark, tmp_path_factory) -> dict[str, Path]:
    """The benchmark's LSTM and GRU classifiers, exported with --streaming."""
    return benchmark.export_models(tmp_path_factory.mktemp("long-stream"))


@pytest.mark.parametrize("cell", CELLS)
def test_stream_memory_stays_flat(streaming_models, cell):
    options = ["--steps", "20000", "--warmup", "5000", "--block", "1000", "--window", "5"]
    command = [sys.executable, str(BENCHMARK), "--child", str(streaming_models[cell]), *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["steps_measured"] == 20000
    assert result["final_state_finite"]
    assert not result["torch_or_onnx_loaded"]
    assert result["rss_growth"] < 0.02, result["rss_trace_mb"]
    if result["heap_in_use_growth_kb"] is not None:
        assert result["heap_in_use_growth_kb"] < 512


@pytest.mark.parametrize("cell", CELLS)
def test_stream_traced_allocations_flat(streaming_models, cell):
    session = StreamingSession(streaming_models[cell], provider="cpu", threads=1)
    inputs = np.random.default_rng(0).standard_normal((256, 1, 1, 6)).astype(np.float32)
    for step in range(1000):
        session.step(inputs[step % 256])
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for step in range(5000):
            session.step(inputs[step % 256])
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 64 * 1024, after.compare_to(before, "lineno")[:5]


@pytest.mark.parametrize("count", [2**24, 2**40])
def test_pooling_step_count_stays_exact(streaming_models, count):
    """The step count is int64, so the mean keeps following the input past 2**24 steps."""
    session = ort.InferenceSession(str(streaming_models["gru"]), providers=["CPUExecutionProvider"])
    names = {info.name: info for info in session.get_inputs()}
    assert names["pool_steps0"].type == "tensor(int64)"
    feed = {"input": np.ones((1, 1, 6), np.float32)}
    for name, info in names.items():
        if name != "input":
            shape = [1 if isinstance(dim, str) else dim for dim in info.shape]
            feed[name] = np.zeros(shape, np.float32)
    feed["pool_steps0"] = np.full((1, 1), count, np.int64)
    outputs = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True)
    )
    assert int(outputs["pool_stepsn"][0, 0]) == count + 1
    # From a zero mean, one more step moves the mean by its output divided by the count.
    assert np.any(outputs["pool_meann"] != 0)
    assert np.all(np.abs(outputs["pool_meann"]) <= 2.0 / count)
