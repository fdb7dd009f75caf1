"""Time per operator, from ONNX Runtime's built-in profiler.

The profiler slows every node down, so the operator pass runs in its own session after the
timed runs and its times serve only to rank operators; the latency figures never come
from it. ONNX Runtime writes one Chrome-trace JSON file per session; each node execution
is an event of category "Node" named `<node>_kernel_time`, with `op_name` and `provider`
in its arguments.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

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

    Each entry: `op` (operator type), `provider`, `calls` per run, `total_us` per run
    and `share` of the summed node time.
    """
    if top <= 0 or runs <= 0:
        return []
    with tempfile.TemporaryDirectory(prefix="rnnedge-ortprof-") as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = ort.InferenceSession(str(model), sess_options=options, providers=providers)
        # One extra run first: its allocations and first-touch costs are left out below.
        for _ in range(runs + 1):
            session.run(None, dict(feed))
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
    return summarize_trace(events, runs, top, skip_runs=1)


def summarize_trace(
    events: list[dict[str, Any]], runs: int, top: int, skip_runs: int = 0
) -> list[dict[str, Any]]:
    """Sum node durations by (operator type, provider) over `runs` runs and rank them.

    The node events of the first `skip_runs` runs (by their `model_run` events) are left out.
    """
    model_runs = sorted(
        (e for e in events if e.get("name") == "model_run"), key=lambda e: e.get("ts", 0)
    )
    start = 0
    if 0 < skip_runs < len(model_runs):
        first_kept = model_runs[skip_runs]
        start = first_kept.get("ts", 0)
    totals: dict[tuple[str, str], list[float]] = {}
    for event in events:
        if event.get("ts", 0) < start:
            continue
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        key = (str(args.get("op_name", "?")), str(args.get("provider", "?")))
        entry = totals.setdefault(key, [0.0, 0])
        entry[0] += float(event.get("dur", 0))
        entry[1] += 1
    grand_total = sum(v[0] for v in totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])[:top]
    return [
        {
            "op": op,
            "provider": provider,
            "calls": round(count / runs, 2),
            "total_us": round(duration / runs, 1),
            "share": round(duration / grand_total, 4),
        }
        for (op, provider), (duration, count) in ranked
    ]
