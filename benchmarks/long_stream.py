"""A long stream: one million single-step calls, memory and per-step latency over time.

A small LSTM and GRU classifier (6 features, hidden size 32, one layer, mean pooling over
time, 4 classes, as the demo trains on BasicMotions) are exported with `rnnedge export
--streaming`. Each model then streams in a fresh Python process that imports only the
runtime, as on a board: one time step per `StreamingSession.step` call (input checks,
normalization and output copies included), one thread, the inputs cycling through 4096
random steps.

The steps are timed in blocks with `rnnedge.profiling.timing.measure`. The first
`--warmup` steps (100,000 by default) are a warm-up, after which the resident set size
(VmRSS) is the baseline; it is read again after every block of the `--steps` measured.

Reported per model:
- rss_growth: (RSS after the last block - baseline) / baseline; target under 0.02;
- rss_growth_from_first_block: the same against the RSS after the first block of the
  warm-up, and rss_trace_mb, the RSS after every tenth of the blocks;
- heap_in_use_growth_kb: the growth of the C heap in use (glibc only), which separates
  a leak from free heap pages that RSS also counts;
- latency_drift: p50 of the last window / p50 of the first window - 1, each window
  `--window` blocks; target under 0.10;
- the block p50s at the start, middle and end, to tell a trend from noise.

Run: .venv/bin/python benchmarks/long_stream.py [--steps 1000000] [--json results.json]
Needs torch and onnx (the export extra) to build the models; the streams need neither.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

FEATURES, HIDDEN, CLASSES = 6, 32, 4
CYCLE = 4096  # distinct input steps, fed in turn
TARGETS = {"rss_growth": 0.02, "latency_drift": 0.10}


def export_models(folder: Path) -> dict[str, Path]:
    """Export the streaming LSTM and GRU classifiers into `folder`."""
    import torch

    from rnnedge.export import ModelConfig, SequenceModel, export_model, save_checkpoint

    models = {}
    for cell in ("lstm", "gru"):
        torch.manual_seed(0)
        config = ModelConfig(input_size=FEATURES, hidden_size=HIDDEN, num_outputs=CLASSES,
                             cell=cell)  # fmt: skip
        checkpoint = folder / f"{cell}.pt"
        save_checkpoint(SequenceModel(config), checkpoint, [f"class{i}" for i in range(CLASSES)])
        models[cell] = folder / f"{cell}.onnx"
        export_model(checkpoint, models[cell], streaming=True)
    return models


def stream(model: Path, steps: int, block: int, warmup: int, window: int) -> dict[str, Any]:
    """Feed `model` `warmup + steps` single steps in this process; return memory and latency."""
    import numpy as np

    from rnnedge.profiling.fingerprint import rss_mb
    from rnnedge.profiling.timing import measure, summarize
    from rnnedge.runtime import StreamingSession

    blocks = steps // block
    if blocks < 2 * window or warmup < block:
        raise SystemExit(
            f"--steps {steps} gives {blocks} blocks of {block}; need at least {2 * window}, "
            "and --warmup of at least one block"
        )
    session = StreamingSession(model, provider="cpu", threads=1)
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((CYCLE, 1, 1, FEATURES)).astype(np.float32)
    position = [0]

    def one_step() -> None:
        session.step(inputs[position[0]])
        position[0] = (position[0] + 1) % CYCLE

    # Every buffer is allocated and written before the baseline, so that its pages are
    # resident already (np.empty pages would count once first written) and only the
    # stream can grow.
    first = np.full((window, block), np.nan)
    last = np.full((window, block), np.nan)
    block_p50 = np.full(blocks, np.nan)
    rss_trace = np.full(blocks, np.nan)
    measure(one_step, warmup=0, runs=block)
    rss_first_block = rss_mb()["rss_mb"]
    for _ in range(warmup // block - 1):
        measure(one_step, warmup=0, runs=block)
    baseline = rss_mb()["rss_mb"]
    heap_baseline = heap_in_use_kb()
    for index in range(blocks):
        stats, samples = measure(one_step, warmup=0, runs=block)
        if index < window:
            first[index] = samples
        last[index % window] = samples
        block_p50[index] = stats.p50_ms
        rss_trace[index] = rss_mb()["rss_mb"]
    heap_end = heap_in_use_kb()
    start, end = summarize(first.ravel()), summarize(last.ravel())
    return {
        "model": model.name,
        "steps_fed": (warmup // block + blocks) * block,
        "steps_measured": blocks * block,
        "rss_first_block_mb": rss_first_block,
        "rss_baseline_mb": baseline,
        "rss_end_mb": float(rss_trace[-1]),
        "rss_max_mb": float(rss_trace.max()),
        "rss_growth": round(float(rss_trace[-1]) / baseline - 1, 5),
        "rss_growth_from_first_block": round(float(rss_trace[-1]) / rss_first_block - 1, 5),
        # RSS after every tenth of the blocks, to tell steady growth from a step.
        "rss_trace_mb": [float(v) for v in rss_trace[:: max(blocks // 10, 1)]],
        "heap_in_use_growth_kb": (
            heap_end - heap_baseline if heap_end is not None and heap_baseline is not None else None
        ),
        "first_window_p50_us": round(start.p50_ms * 1e3, 2),
        "last_window_p50_us": round(end.p50_ms * 1e3, 2),
        "first_window_p99_us": round(start.p99_ms * 1e3, 2),
        "last_window_p99_us": round(end.p99_ms * 1e3, 2),
        "latency_drift": round(end.p50_ms / start.p50_ms - 1, 4),
        "block_p50_us": {
            "start": round(float(block_p50[0]) * 1e3, 2),
            "middle": round(float(block_p50[blocks // 2]) * 1e3, 2),
            "end": round(float(block_p50[-1]) * 1e3, 2),
        },
        "final_state_finite": bool(all(np.isfinite(a).all() for a in session.state.values())),
        "torch_or_onnx_loaded": bool({"torch", "onnx"} & set(sys.modules)),
    }


def heap_in_use_kb() -> int | None:
    """Bytes allocated from the C heap (glibc's mallinfo2), in KiB; None without glibc 2.33.

    RSS also counts heap pages that are free but not returned to the system, so a heap in
    use that stays flat while RSS grows shows fragmentation, not a leak.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                         "fsmblks", "uordblks", "fordblks", "keepcost")
        ]  # fmt: skip

    function.restype = MallInfo2
    info = function()
    return (info.uordblks + info.hblkhd) // 1024


def stream_in_child(model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run `stream` in a fresh interpreter, which loads neither torch nor onnx."""
    command = [
        sys.executable, __file__, "--child", str(model), "--steps", str(args.steps),
        "--block", str(args.block), "--warmup", str(args.warmup), "--window", str(args.window),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the stream of {model.name} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="measured steps per model")
    parser.add_argument("--block", type=int, default=10_000, help="steps per timed block")
    parser.add_argument(
        "--warmup", type=int, default=100_000, help="steps before the baseline (whole blocks)"
    )
    parser.add_argument("--window", type=int, default=5, help="blocks per latency window")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(stream(args.child, args.steps, args.block, args.warmup, args.window)))
        return
    with tempfile.TemporaryDirectory() as folder:
        models = export_models(Path(folder))
        results = {cell: stream_in_child(path, args) for cell, path in models.items()}
    for result in results.values():
        result["meets_targets"] = all(result[key] < limit for key, limit in TARGETS.items())
    text = json.dumps({"targets": TARGETS, "results": results}, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
