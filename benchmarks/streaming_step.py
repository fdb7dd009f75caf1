"""Per-step latency of streaming: one time step per call, against one 100-step call.

For a 2-layer GRU and LSTM (40 features, hidden size 128, a linear head, batch 1, one
thread), exported with explicit state inputs, this times with `rnnedge.profiling.timing
.measure`:

- whole: one `InferenceSession.run` over 100 steps, divided by 100;
- naive: one step per `InferenceSession.run`, the state fed back through the feed dict;
- bound: one step per `StreamingSession.step_prepared` (IO binding, two state buffers);
- checked: one step per `StreamingSession.step` (input checks and copies of the outputs).

Run: .venv/bin/python benchmarks/streaming_step.py [--runs 3000]
Needs torch and onnx (the export extra) to build the models.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from rnnedge.profiling.timing import measure
from rnnedge.runtime import StreamingSession

FEATURES, HIDDEN, LAYERS, CLASSES, STEPS = 40, 128, 2, 12, 100


class Stateful(torch.nn.Module):
    def __init__(self, cell: str) -> None:
        super().__init__()
        self.cell = cell
        rnn = torch.nn.GRU if cell == "gru" else torch.nn.LSTM
        self.rnn = rnn(FEATURES, HIDDEN, LAYERS, batch_first=True)
        self.head = torch.nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, h0, c0=None):
        y, state = self.rnn(x, h0 if c0 is None else (h0, c0))
        if self.cell == "gru":
            return self.head(y), state
        return self.head(y), state[0], state[1]


def export(cell: str, folder: Path) -> tuple[Path, list[tuple[str, str]]]:
    torch.manual_seed(0)
    model = Stateful(cell).eval()
    states = ["h0"] + (["c0"] if cell == "lstm" else [])
    outputs = ["y", "hn"] + (["cn"] if cell == "lstm" else [])
    args = (torch.randn(1, 5, FEATURES), *[torch.zeros(LAYERS, 1, HIDDEN) for _ in states])
    axes = {"x": {0: "batch", 1: "sequence"}, "y": {0: "batch", 1: "sequence"}}
    axes.update({name: {1: "batch"} for name in states + outputs[1:]})
    path = folder / f"{cell}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=["x", *states],
                          output_names=outputs, dynamic_axes=axes, opset_version=17,
                          dynamo=False)  # fmt: skip
    onnx.checker.check_model(onnx.load(str(path)))
    return path, list(zip(states, outputs[1:], strict=True))


def bench(cell: str, folder: Path, runs: int) -> dict[str, float]:
    path, pairs = export(cell, folder)
    streaming = StreamingSession(path, provider="cpu", threads=1, state_pairs=pairs)
    session = streaming.session.inference_session
    rng = np.random.default_rng(0)
    sequence = rng.standard_normal((1, STEPS, FEATURES)).astype(np.float32)
    step = sequence[:, :1]
    zeros = {name: np.zeros((LAYERS, 1, HIDDEN), np.float32) for name, _ in pairs}

    whole, _ = measure(lambda: session.run(None, {"x": sequence, **zeros}), 20, max(runs // 20, 50))
    state = dict(zeros)

    def naive_step() -> None:
        values = session.run(None, {"x": step, **state})
        for (name, _), value in zip(pairs, values[1:], strict=True):
            state[name] = value

    naive, _ = measure(naive_step, 200, runs)
    feed = streaming.session.prepare_inputs(step)
    bound, _ = measure(lambda: streaming.step_prepared(feed), 200, runs)
    checked, _ = measure(lambda: streaming.step(step), 200, runs)
    per_step = whole.p50_ms / STEPS
    result = {"whole_per_step_us": per_step * 1e3}
    for name, stats in (("naive", naive), ("bound", bound), ("checked", checked)):
        result[f"{name}_us"] = stats.p50_ms * 1e3
        result[f"{name}_ratio"] = stats.p50_ms / per_step
    return {k: round(v, 2) for k, v in result.items()}


def main(bench_cell=bench, doc: str = __doc__) -> None:
    """Run `bench_cell` for the GRU and the LSTM and print the results as JSON.

    `benchmarks/step_floor.py` calls this with its own benchmark and docstring.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000, help="timed one-step calls per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = {cell: bench_cell(cell, Path(folder), args.runs) for cell in ("gru", "lstm")}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
