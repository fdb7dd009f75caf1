"""Benchmark the quantization targets: size, speed and accuracy of int8 LSTM and GRU models.

Part 1, the reference model: 40 features, 2 layers of hidden size 128, a linear head to 12
classes (untrained weights), exported with `rnnedge export`. For each cell and mode it
records the file size and the p50 latency of batch 1, 100 steps, one thread, float32 and
quantized timed alternately in one run with `rnnedge.profiling.timing.measure`.

Part 2, BasicMotions (sktime): the demo's classifiers (1 layer, hidden 32) trained for 60
epochs, float32 and int8 test accuracy computed with ONNX Runtime.

    .venv/bin/python benchmarks/quantize_targets.py --json quantize_targets.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from rnnedge.export import ModelConfig, SequenceModel, export_checkpoint, save_checkpoint
from rnnedge.host import cpu_info
from rnnedge.profiling.timing import measure
from rnnedge.quantize import quantize_model

FEATURES, HIDDEN, LAYERS, CLASSES, STEPS = 40, 128, 2, 12, 100
MODES = ("dynamic-int8", "weight-int8", "fp16")


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export(cell: str, root: Path, hidden: int, features: int, classes: int,
            layers: int, model: SequenceModel | None = None, labels=None,
            normalization=None) -> Path:  # fmt: skip
    if model is None:
        torch.manual_seed(0)
        config = ModelConfig(input_size=features, hidden_size=hidden, num_outputs=classes,
                             cell=cell, num_layers=layers)  # fmt: skip
        model = SequenceModel(config)
    labels = labels or [str(i) for i in range(classes)]
    normalization = normalization or {"mean": [0.0] * features, "std": [1.0] * features}
    checkpoint = root / f"{cell}.pt"
    save_checkpoint(model, checkpoint, labels, normalization)
    path = root / f"{cell}.onnx"
    export_checkpoint(checkpoint, path)
    return path


def reference_rows(root: Path, runs: int, gru_hidden: tuple[int, ...]) -> list[dict]:
    x = np.random.default_rng(0).standard_normal((1, STEPS, FEATURES)).astype(np.float32)
    rows = []
    cases = [("lstm", HIDDEN)] + [("gru", h) for h in gru_hidden]
    for cell, hidden in cases:
        folder = root / f"{cell}{hidden}"
        folder.mkdir()
        float_path = _export(cell, folder, hidden, FEATURES, CLASSES, LAYERS)
        for mode in MODES:
            out = folder / f"{cell}.{mode}.onnx"
            report = quantize_model(float_path, out, mode, latency_runs=0)
            sessions = {"float": _session(float_path), "quantized": _session(out)}
            p50 = {}
            # Alternate the two models in rounds so both see the same machine load.
            samples: dict[str, list[float]] = {"float": [], "quantized": []}
            for _ in range(5):
                for label, session in sessions.items():
                    _, raw = measure(lambda s=session: s.run(None, {"input": x}), warmup=3,
                                     runs=runs // 5)  # fmt: skip
                    samples[label].extend(raw)
            for label in samples:
                p50[label] = float(np.median(samples[label]))
            rows.append({
                "cell": cell, "hidden": hidden, "mode": mode,
                "size_float": report.size_before, "size_quantized": report.size_after,
                "size_ratio": round(report.size_ratio, 2),
                "p50_ms_float": round(p50["float"], 4),
                "p50_ms_quantized": round(p50["quantized"], 4),
                "speedup": round(p50["float"] / p50["quantized"], 2),
                "max_abs_drift": report.drift.max_abs_error,
                "float_ops": report.float_compute_ops,
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def basic_motions_rows(root: Path) -> list[dict]:
    from rnnedge.demo.data import load_basic_motions
    from rnnedge.demo.train import train_classifier

    dataset = load_basic_motions()
    stats = dataset.normalization()
    rows = []
    for cell in ("lstm", "gru"):
        folder = root / f"bm-{cell}"
        folder.mkdir()
        model = train_classifier(dataset, cell, hidden_size=32, epochs=60)
        features, classes = dataset.x_train.shape[2], len(dataset.labels)
        float_path = _export(cell, folder, 32, features, classes, 1, model=model,
                             labels=list(dataset.labels), normalization=stats)  # fmt: skip
        eval_data = (dataset.x_test, dataset.y_test)
        for mode in ("dynamic-int8", "weight-int8", "fp16"):
            report = quantize_model(float_path, folder / f"{mode}.onnx", mode,
                                    eval_data=eval_data, latency_runs=0)  # fmt: skip
            rows.append({"cell": cell, "mode": mode, "accuracy_float": report.metric_before,
                         "accuracy_quantized": report.metric_after})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--gru-hidden", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--skip-basic-motions", action="store_true")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = cpu_info()
    print(f"host: {cpu['model']}, flags {', '.join(cpu['flags'])}; onnxruntime {ort.__version__}")
    with tempfile.TemporaryDirectory(prefix="rnnedge-bench-") as tmp:
        reference = reference_rows(Path(tmp), args.runs, tuple(args.gru_hidden))
        result = {"host": cpu, "onnxruntime": ort.__version__, "reference": reference}
        if not args.skip_basic_motions:
            result["basic_motions"] = basic_motions_rows(Path(tmp))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
