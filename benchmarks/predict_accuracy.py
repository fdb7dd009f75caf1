"""Held-out error of `rnnedge devices predict` on this host.

Exports reference LSTM and GRU models (hidden size, layers and direction varied), profiles
each at several sequence lengths and batch sizes into a scratch devices folder, then
holds out each architecture in turn, fits the latency model on the others and reports the
relative error of the held-out predictions and the worst configurations. It also fits
on every hidden size below the largest and reports the error on the largest, which tests
how the model extrapolates.

Other processes on the host slow some measurements down (a process sharing the core
roughly doubles a run's time). Against that, every configuration is measured in
--passes separate sweeps, and a configuration with no measurement whose p50 is within
--max-spread of its fastest run is measured again, up to --retries times. The
prediction uses the lowest p50 of each configuration's repeats.

    .venv/bin/python benchmarks/predict_accuracy.py [--out /tmp/predict-bench] [--runs 40]

Needs the export extra (torch, onnx) to build the reference models.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import tempfile
from pathlib import Path

import torch

from rnnedge.export import ModelConfig, SequenceModel, export_checkpoint, save_checkpoint
from rnnedge.profiling.catalog import load_device
from rnnedge.profiling.predict import (
    Sample,
    fit,
    group_samples,
    held_out_errors_by_sample,
    predict_from,
)
from rnnedge.profiling.profile import ProfileResult
from rnnedge.profiling.sweeps import SweepPoint, run_sweep, sweep_points

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


def spread(result: ProfileResult) -> float:
    """Return the ratio of a measurement's p50 to its fastest run."""
    latency = result.measurement["latency_ms"]
    return latency["p50_ms"] / latency["min_ms"]


def profile_models(
    out: Path, devices: Path, runs: int, threads: int, passes: int, max_spread: float, retries: int
) -> None:
    """Profile every reference configuration `passes` times, then re-measure disturbed ones."""
    models = [
        build(out, cell, hidden, layers, bidirectional)
        for cell, hidden, layers, bidirectional in itertools.product(
            ("lstm", "gru"), HIDDEN, LAYERS, DIRECTIONS
        )
    ]
    points = sweep_points(
        models, {"seq_len": list(SEQ_LENS), "batch": list(BATCHES)}, threads=threads
    )
    options = {"device": "x86-64", "provider": "cpu", "warmup": 5, "runs": runs, "operators": 0}
    lowest_spread = {point: math.inf for point in points}

    def measure(selected: list[SweepPoint]) -> None:
        results = run_sweep(selected, user_dir=devices, **options)
        for point, result in zip(selected, results, strict=True):
            lowest_spread[point] = min(lowest_spread[point], spread(result))

    for _ in range(passes):
        measure(points)
    # NOTE: a repeat slowed for all of its runs has a small spread and counts as clean here,
    # even when the prediction uses another, partly slowed repeat with a lower p50.
    for attempt in range(retries + 1):
        disturbed = [point for point in points if lowest_spread[point] > max_spread]
        print(
            f"{len(disturbed)} of {len(points)} configurations have no measurement with a "
            f"p50/min spread within {max_spread}" + (f" after retry {attempt}" if attempt else "")
        )
        if not disturbed or attempt == retries:
            break
        measure(disturbed)


def report(devices: Path, worst: int) -> None:
    """Print the held-out error of each cell and its `worst` configurations."""
    profile = load_device("x86-64", devices)
    for cell in ("lstm", "gru"):
        samples, group = group_samples(profile, cell, "fp32")
        pairs = held_out_errors_by_sample(samples)
        magnitudes = sorted(abs(error) for _, error in pairs)
        p90 = magnitudes[int(0.9 * len(magnitudes))]
        print(
            f"{cell}: {len(samples)} configurations, {len({s.arch for s in samples})} "
            f"architectures, {group['threads']} threads; held-out |error| median "
            f"{statistics.median(magnitudes):.1%}, p90 {p90:.1%}, max {magnitudes[-1]:.1%}"
        )
        ranked = sorted(pairs, key=lambda pair: -abs(pair[1]))
        for sample, error in ranked[:worst]:
            arch = sample.arch
            print(
                f"  {error:+.1%} hidden {arch.hidden_size}, layers {arch.num_layers}, "
                f"{'bidirectional' if arch.bidirectional else 'unidirectional'}, batch "
                f"{sample.batch}, seq_len {sample.seq_len}: measured {sample.p50_ms:.4f} ms"
            )
        print_extrapolation(samples)
    print(f"measurements in {devices}")


def print_extrapolation(samples: list[Sample]) -> None:
    """Fit on every hidden size below the largest and print the error on the largest."""
    largest = max(s.arch.hidden_size for s in samples)
    train = [s for s in samples if s.arch.hidden_size < largest]
    test = [s for s in samples if s.arch.hidden_size == largest]
    if not train:
        return
    coefficients = fit(train)
    magnitudes = sorted(
        abs(predict_from(coefficients, s.arch, s.batch, s.seq_len) / s.p50_ms - 1) for s in test
    )
    print(
        f"  fitted on hidden below {largest}, predicting hidden {largest} "
        f"({len(test)} configurations): |error| median {statistics.median(magnitudes):.1%}, "
        f"max {magnitudes[-1]:.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for models and devices/")
    parser.add_argument("--runs", type=int, default=40, help="timed runs per configuration")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="skip profiling; refit only")
    parser.add_argument(
        "--passes", type=int, default=2, help="number of sweeps over all configurations"
    )
    parser.add_argument(
        "--max-spread",
        type=float,
        default=1.2,
        help="re-measure a configuration whose p50 exceeds its fastest run by more than this ratio",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="max re-measurement passes for disturbed configurations (0 for none)",
    )
    parser.add_argument("--worst", type=int, default=5, help="worst configurations to list")
    args = parser.parse_args()
    if args.passes < 1 or args.retries < 0 or args.max_spread < 1:
        parser.error(
            f"invalid --passes {args.passes}, --retries {args.retries} or --max-spread "
            f"{args.max_spread}; use at least 1, 0 and 1"
        )
    out = args.out or Path(tempfile.mkdtemp(prefix="rnnedge-predict-"))
    devices = out / "devices"
    out.mkdir(parents=True, exist_ok=True)
    if not args.reuse:
        profile_models(
            out, devices, args.runs, args.threads, args.passes, args.max_spread, args.retries
        )
    report(devices, args.worst)


if __name__ == "__main__":
    main()
