"""Held-out error of `rnnedge devices predict` on this host.

Exports reference LSTM and GRU models (hidden size, layers and direction varied), profiles
each at several sequence lengths and batch sizes into a scratch devices folder, then
holds out each architecture in turn, fits the latency model on the others and reports the
relative error of the held-out predictions.

    .venv/bin/python benchmarks/predict_accuracy.py [--out /tmp/predict-bench] [--runs 40]

Needs the export extra (torch, onnx) to build the reference models.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

import torch

from rnnedge.export import ModelConfig, SequenceModel, export_checkpoint, save_checkpoint
from rnnedge.profiling.catalog import load_device
from rnnedge.profiling.predict import group_samples, held_out_errors
from rnnedge.profiling.sweeps import run_sweep, sweep_points

FEATURES = 12
HIDDEN = (16, 32, 64, 128, 256)
LAYERS = (1, 2)
DIRECTIONS = (False, True)
SEQ_LENS = (1, 10, 50, 100, 200)
BATCHES = (1, 4)


def build(folder: Path, cell: str, hidden: int, layers: int, bidirectional: bool) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(
        input_size=FEATURES,
        hidden_size=hidden,
        num_layers=layers,
        bidirectional=bidirectional,
        num_outputs=4,
        cell=cell,
    )
    stem = f"{cell}-h{hidden}-l{layers}-{'bi' if bidirectional else 'uni'}"
    checkpoint = folder / f"{stem}.pt"
    save_checkpoint(
        SequenceModel(config),
        checkpoint,
        ["a", "b", "c", "d"],
        {"mean": [0.0] * FEATURES, "std": [1.0] * FEATURES},
    )
    export_checkpoint(checkpoint, folder / f"{stem}.onnx")
    return folder / f"{stem}.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for models and devices/")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="skip profiling; refit only")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rnnedge-predict-"))
    devices = out / "devices"
    out.mkdir(parents=True, exist_ok=True)
    if not args.reuse:
        models = [
            build(out, cell, hidden, layers, bidirectional)
            for cell, hidden, layers, bidirectional in itertools.product(
                ("lstm", "gru"), HIDDEN, LAYERS, DIRECTIONS
            )
        ]
        points = sweep_points(
            models, {"seq_len": list(SEQ_LENS), "batch": list(BATCHES)}, threads=args.threads
        )
        run_sweep(
            points,
            device="x86-64",
            provider="cpu",
            warmup=5,
            runs=args.runs,
            operators=0,
            user_dir=devices,
        )
    profile = load_device("x86-64", devices)
    for cell in ("lstm", "gru"):
        samples, group = group_samples(profile, cell, "fp32")
        errors = [abs(e) for e in held_out_errors(samples)]
        print(
            f"{cell}: {len(samples)} configurations, {len({s.arch for s in samples})} "
            f"architectures, {group['threads']} threads; held-out |error| median "
            f"{statistics.median(errors):.1%}, p90 {sorted(errors)[int(0.9 * len(errors))]:.1%}, "
            f"max {max(errors):.1%}"
        )
    print(f"measurements in {devices}")


if __name__ == "__main__":
    main()
