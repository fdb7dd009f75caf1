"""Time per operator, from ONNX Runtime's built-in profiler.

The profiler slows every node down, so the operator pass runs in its own session after the
timed runs and its times serve only to rank operators; the latency figures never come
from it. The ranking uses each operator's median time per run, because a sum over the
runs lets one slow run (a preempted thread, a page fault) decide it. ONNX Runtime writes
one Chrome-trace JSON file per session; each node execution is an event of category "Node"
named `<node>_kernel_time`, with `op_name` and `provider` in its arguments.
"""

from __future__ import annotations

import bisect
import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.runtime.session import set_load_format

logger = logging.getLogger(__name__)


def top_operators(
    model: Path,
    providers: list[Any],
    threads: int,
    feed: Mapping[str, np.ndarray],
    runs: int = 10,
    top: int = 10,
) -> list[dict[str, Any]]:
    """Run `model` `runs` times under the profiler; return the `top` operator types by time.

    Each entry: `op` (operator type), `provider`, and the medians over the runs of its
    `calls` and `total_us` per run, with its `share` of the summed medians (see
    `summarize_trace`).
    """
    if top <= 0 or runs <= 0:
        return []
    # One extra run first: its allocations and first-touch costs are left out below.
    events = profile_trace(model, providers, threads, feed, runs + 1)
    return summarize_trace(events, top, skip_runs=1)


def profile_trace(
    model: Path, providers: list[Any], threads: int, feed: Mapping[str, np.ndarray], runs: int
) -> list[dict[str, Any]]:
    """Run `model` `runs` times in a profiled session; return the trace's events."""
    with tempfile.TemporaryDirectory(prefix="rnnedge-ortprof-") as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        options.log_severity_level = 3
        set_load_format(options, model)
        session = ort.InferenceSession(str(model), sess_options=options, providers=providers)
        for _ in range(runs):
            session.run(None, dict(feed))
        trace = Path(session.end_profiling())
        return json.loads(trace.read_text(encoding="utf-8"))


def summarize_trace(
    events: list[dict[str, Any]], top: int, skip_runs: int = 0
) -> list[dict[str, Any]]:
    """Rank (operator type, provider) keys by their median time per run.

    Each node event belongs to the `model_run` event whose interval contains it; the first
    `skip_runs` runs are left out. For each key the node times are summed per run, and
    the median over the runs (0 in a run without the key) ranks it, so one slow or
    interrupted run cannot decide the ranking. `share` is a key's median divided by the
    sum of the medians of all keys.
    """
    model_runs = sorted(
        (e for e in events if e.get("name") == "model_run"), key=lambda e: e.get("ts", 0)
    )[skip_runs:]
    if not model_runs:
        return []
    starts = [float(run.get("ts", 0)) for run in model_runs]
    ends = [start + float(run.get("dur", 0)) for start, run in zip(starts, model_runs, strict=True)]
    durations: dict[tuple[str, str], np.ndarray] = {}
    counts: dict[tuple[str, str], np.ndarray] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        ts = float(event.get("ts", 0))
        index = bisect.bisect_right(starts, ts) - 1
        if index < 0 or ts > ends[index]:
            continue  # a node of a skipped run, or outside every run
        args = event.get("args", {})
        key = (str(args.get("op_name", "?")), str(args.get("provider", "?")))
        durations.setdefault(key, np.zeros(len(model_runs)))[index] += float(event.get("dur", 0))
        counts.setdefault(key, np.zeros(len(model_runs)))[index] += 1
    medians = {key: float(np.median(per_run)) for key, per_run in durations.items()}
    grand_total = sum(medians.values()) or 1.0
    ranked = sorted(medians.items(), key=lambda item: -item[1])[:top]
    return [
        {
            "op": op,
            "provider": provider,
            "calls": round(float(np.median(counts[(op, provider)])), 2),
            "total_us": round(median, 1),
            "share": round(median / grand_total, 4),
        }
        for (op, provider), median in ranked
    ]
