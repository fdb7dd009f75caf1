"""Latency of the streaming benchmark models on each execution provider the build offers.

For the models of `streaming_step.py` (2-layer GRU and LSTM, 40 features, hidden size 128,
linear head), one CPU thread, this times on each provider:

- whole: one 100-step call at batch 1 and at batch 32 (`Session.run_prepared`);
- step: one step per call at batch 1 through `StreamingSession.step_prepared`, with the
  state in ONNX Runtime buffers on the provider's device (the GPU for CUDA and TensorRT).

Sessions are strict: a provider that fails to start is reported as skipped with ONNX
Runtime's reason, never timed on the CPU under its name. TensorRT builds its engines during
the warm-up calls, into a temporary engine cache.

Run: .venv/bin/python benchmarks/provider_latency.py [--providers cpu cuda tensorrt] [--runs 2000]
With no --providers, it times `cpu` and each of `cuda` and `tensorrt` that the installed
onnxruntime offers. Needs torch and onnx (the export extra) to build the models.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from streaming_step import FEATURES, STEPS, export

from rnnedge.errors import RnnedgeError
from rnnedge.profiling.timing import measure
from rnnedge.runtime import Session, StreamingSession
from rnnedge.runtime.providers import CUDA_EP, TENSORRT_EP, available_providers

BATCHES = (1, 32)


def default_providers() -> list[str]:
    """Return `cpu` and each GPU provider that the installed onnxruntime offers."""
    offered = set(available_providers())
    gpu = [name for name, ep in (("cuda", CUDA_EP), ("tensorrt", TENSORRT_EP)) if ep in offered]
    return ["cpu", *gpu]


def provider_options(provider: str, folder: Path) -> dict[str, dict[str, str]]:
    """Return TensorRT options that cache its engines in `folder`, and none for other providers."""
    if provider != "tensorrt":
        return {}
    return {"tensorrt": {"trt_engine_cache_path": str(folder / "engines")}}


def bench(cell: str, provider: str, folder: Path, runs: int) -> dict[str, float]:
    path, pairs = export(cell, folder)
    options = provider_options(provider, folder)
    rng = np.random.default_rng(0)
    results: dict[str, float] = {}
    common = {"provider": provider, "strict_provider": True, "threads": 1,
              "provider_options": options, "state_pairs": pairs}  # fmt: skip
    session = Session(path, **common)
    for batch in BATCHES:
        sequence = rng.standard_normal((batch, STEPS, FEATURES)).astype(np.float32)
        feed = session.prepare(sequence)
        whole, _ = measure(lambda feed=feed: session.run_prepared(feed), 5, max(runs // 20, 50))
        results[f"whole_batch{batch}_ms"] = round(whole.p50_ms, 4)
        results[f"whole_batch{batch}_per_step_us"] = round(whole.p50_ms * 1e3 / STEPS, 2)
    streaming = StreamingSession(path, **common)
    step = streaming.session.prepare_inputs(rng.standard_normal((1, 1, FEATURES), np.float32))
    stats, _ = measure(lambda: streaming.step_prepared(step), 200, runs)
    results["step_us"] = round(stats.p50_ms * 1e3, 2)
    results["step_ratio"] = round(stats.p50_ms * 1e3 / results["whole_batch1_per_step_us"], 2)
    device = streaming.state_device
    results["state_buffers"] = (
        "numpy (host)" if device is None else f"onnxruntime {device[0]}:{device[1]}"
    )
    results["providers"] = streaming.session.providers
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--providers",
        nargs="+",
        choices=["cpu", "cuda", "tensorrt"],
        help="providers to time (default: cpu and the GPU ones installed)",
    )
    parser.add_argument("--runs", type=int, default=2000, help="timed one-step calls per case")
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for provider in args.providers or default_providers():
            results[provider] = {}
            for cell in ("gru", "lstm"):
                try:
                    results[provider][cell] = bench(cell, provider, Path(folder), args.runs)
                except RnnedgeError as error:
                    results[provider][cell] = {"skipped": str(error)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
