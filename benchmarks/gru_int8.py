"""Benchmark the int8 GRU rewrite against ONNX Runtime's float GRU operator.

One GRU layer with input size equal to the hidden size, batch 1, one thread, random weights.
For each hidden size and sequence length it times the float model and the rewritten model
with `rnnedge.profiling.timing.measure`, alternating the two in 5 rounds, and records the
maximum absolute output error.

    .venv/bin/python benchmarks/gru_int8.py --json gru_int8.json

`--linear-before-reset 0` measures the variant with two recurrent products per step;
`--lengths` adds a `sequence_lens` input, the full length for batch entry 0 and shorter ones
down to 1 for the others (with `--batch` above 1), which the rewrite turns into a step mask.
Prints a Markdown table; ratios above 1 mean the int8 path is faster.
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from rnnedge.host import cpu_info
from rnnedge.profiling.timing import measure
from rnnedge.quantize.gru_int8 import rewrite_grus

ROUNDS = 5


def make_gru_model(
    hidden: int, seed: int = 0, linear_before_reset: int = 1, lengths: bool = False
) -> onnx.ModelProto:
    """Build a single forward GRU over a (time, batch, hidden) input.

    With `lengths` the model has an int32 `sequence_lens` input named `lens`.
    """
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(hidden)
    weights = {
        "W": rng.uniform(-scale, scale, (1, 3 * hidden, hidden)),
        "R": rng.uniform(-scale, scale, (1, 3 * hidden, hidden)),
        "B": rng.uniform(-scale, scale, (1, 6 * hidden)),
    }
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    node = helper.make_node(
        "GRU",
        ["x", "W", "R", "B", "lens" if lengths else ""],
        ["y", "y_h"],
        hidden_size=hidden,
        linear_before_reset=linear_before_reset,
    )
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["time", "batch", hidden])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["batch"]))
    graph = helper.make_graph(
        [node],
        "gru",
        inputs,
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["time", 1, "batch", hidden]),
            helper.make_tensor_value_info("y_h", TensorProto.FLOAT, [1, "batch", hidden]),
        ],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def bench(
    hidden: int,
    steps: int,
    runs: int,
    budget_s: float,
    batch: int = 1,
    linear_before_reset: int = 1,
    lengths: bool = False,
) -> dict[str, float | int]:
    float_model = make_gru_model(hidden, linear_before_reset=linear_before_reset, lengths=lengths)
    int8_model = onnx.ModelProto()
    int8_model.CopyFrom(float_model)
    rewrite_grus(int8_model, per_channel=True, reduce_range=False)
    x = np.random.default_rng(1).standard_normal((steps, batch, hidden)).astype(np.float32)
    feed = {"x": x}
    if lengths:
        feed["lens"] = np.linspace(steps, 1, batch).round().astype(np.int32)
    row: dict[str, float | int] = {
        "hidden": hidden,
        "steps": steps,
        "batch": batch,
        "linear_before_reset": linear_before_reset,
        "lengths": lengths,
    }
    sessions = {"float": _session(float_model), "int8": _session(int8_model)}
    outputs = {label: session.run(None, feed)[0] for label, session in sessions.items()}
    # Alternate the two models in rounds so that both see the same machine load.
    samples: dict[str, list[float]] = {label: [] for label in sessions}
    for _ in range(ROUNDS):
        for label, session in sessions.items():
            _, raw = measure(lambda s=session: s.run(None, feed), warmup=2,
                             runs=max(1, runs // ROUNDS), budget_s=budget_s / ROUNDS)  # fmt: skip
            samples[label].extend(raw)
    for label, raw in samples.items():
        row[f"{label}_p50_ms"] = round(float(np.median(raw)), 4)
    row["speedup"] = round(row["float_p50_ms"] / row["int8_p50_ms"], 2)
    row["max_abs_error"] = float(np.abs(outputs["float"] - outputs["int8"]).max())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 192, 256, 384, 512])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--runs", type=int, default=100, help="timed calls per model and row")
    parser.add_argument("--budget-s", type=float, default=2.0,
                        help="timed seconds per model and row, split over the rounds")  # fmt: skip
    parser.add_argument("--batch", type=int, default=1, help="batch size of every call")
    parser.add_argument("--linear-before-reset", type=int, choices=[0, 1], default=1,
                        help="the GRU attribute of that name")  # fmt: skip
    parser.add_argument("--lengths", action="store_true",
                        help="give the GRU a sequence_lens input")  # fmt: skip
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    cpu = cpu_info()
    print(f"host: {cpu['model']} ({platform.machine()}), flags {', '.join(cpu['flags'])}; "
          f"onnxruntime {ort.__version__}; batch {args.batch}, one thread; "
          f"linear_before_reset={args.linear_before_reset}, "
          f"sequence_lens {'given' if args.lengths else 'absent'}")  # fmt: skip
    print("| hidden | steps | float GRU p50 ms | int8 Scan p50 ms | speed-up | max abs error |")
    print("|---|---|---|---|---|---|")
    rows = []
    for hidden in args.hidden:
        for steps in args.steps:
            row = bench(hidden, steps, args.runs, args.budget_s, args.batch,
                        args.linear_before_reset, args.lengths)  # fmt: skip
            rows.append(row)
            cells = (hidden, steps, f"{row['float_p50_ms']:.4f}", f"{row['int8_p50_ms']:.4f}",
                     f"{row['speedup']:.2f}x", f"{row['max_abs_error']:.2g}")  # fmt: skip
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"host": cpu, "onnxruntime": ort.__version__, "rows": rows}, handle,
                      indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
