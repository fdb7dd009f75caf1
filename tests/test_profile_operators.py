"""The operator ranking of `rnnedge profile`, from real ONNX Runtime profiler traces."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from rnnedge.profiling.operators import profile_trace, summarize_trace
from tests.test_profile_states import FEATURES, HIDDEN, foreign_rnn

RUNS = 6


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> list[dict]:
    """The events of a profiled session that ran a foreign GRU `RUNS` times."""
    model = foreign_rnn(tmp_path_factory.mktemp("operators") / "gru.onnx")
    rng = np.random.default_rng(0)
    feed = {
        "x": rng.standard_normal((2, 30, FEATURES)).astype(np.float32),
        "h_in": np.zeros((1, 2, HIDDEN), np.float32),
    }
    return profile_trace(model, ["CPUExecutionProvider"], 1, feed, RUNS)


def _slow_down_one_run(events: list[dict], op: str, run: int, factor: float) -> list[dict]:
    """Copy `events` with the nodes of type `op` in the `run`-th model_run `factor` times slower."""
    events = copy.deepcopy(events)
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    start, end = runs[run]["ts"], runs[run]["ts"] + runs[run]["dur"]
    for event in events:
        in_run = start <= event.get("ts", -1) <= end
        if event.get("cat") == "Node" and in_run and event["args"].get("op_name") == op:
            event["dur"] *= factor
    return events


def test_one_slow_run_keeps_ranking(trace):
    ranked = summarize_trace(trace, top=10, skip_runs=1)
    last = ranked[-1]["op"]
    slowed = summarize_trace(_slow_down_one_run(trace, last, 3, 10_000.0), top=10, skip_runs=1)
    # Summed over the runs, the slowed operator would take nearly all the time.
    assert len(ranked) >= 2
    assert [e["op"] for e in slowed] == [e["op"] for e in ranked]


def test_shares_cover_every_operator(trace):
    ranked = summarize_trace(trace, top=100, skip_runs=1)
    assert sum(e["share"] for e in ranked) == pytest.approx(1.0, abs=1e-3)
    gru = next(e for e in ranked if e["op"] == "GRU")
    assert gru["calls"] == 1
    assert gru["provider"] == "CPUExecutionProvider"


def test_skipped_runs_left_out(trace):
    """Skipping every run but one ranks that run alone."""
    runs = sorted((e for e in trace if e.get("name") == "model_run"), key=lambda e: e["ts"])
    last_only = summarize_trace(trace, top=100, skip_runs=RUNS - 1)
    start, end = runs[-1]["ts"], runs[-1]["ts"] + runs[-1]["dur"]
    expected = sum(
        e["dur"] for e in trace
        if e.get("cat") == "Node" and e["args"].get("op_name") == "GRU" and start <= e["ts"] <= end
    )  # fmt: skip
    assert next(e for e in last_only if e["op"] == "GRU")["total_us"] == pytest.approx(expected)
    assert summarize_trace(trace, top=10, skip_runs=RUNS) == []
