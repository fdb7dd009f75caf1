"""Latency of LSTM and GRU models: PyTorch eager, PyTorch dynamic int8, plain ONNX Runtime
and rnnedge's artifacts and sessions, on the same weights and inputs in one run.

Usage:
    python benchmarks/recurrent_latency.py --mode short   # a few minutes on 2 cores
    python benchmarks/recurrent_latency.py --mode full
    python benchmarks/recurrent_latency.py --mode short --write-docs docs/benchmarks.md

Every latency comes from `rnnedge.profiling.timing.measure`, the helper that
`rnnedge profile` uses, so the figures of both agree for the same configuration.

Achieved GFLOP/s counts the matrix products of the recurrent layers only: per step and
layer, 2 * G * H * (I + H) floating-point operations for G gates (4 for LSTM, 3 for GRU),
input size I and hidden size H, times the batch and the directions. The peak it is
compared with is the faster of a single-thread float32 1024^3 matrix product through
numpy's BLAS and through torch, measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from rnnedge.export import (
    ModelConfig,
    SequenceModel,
    export_checkpoint,
    export_model,
    save_checkpoint,
)
from rnnedge.host import cpu_info
from rnnedge.profiling.timing import measure, summarize
from rnnedge.quantize import quantize_model
from rnnedge.runtime import Session, StreamingSession

INPUT_SIZE = 40
NUM_CLASSES = 12
MARK_BEGIN = "<!-- results:begin -->"
MARK_END = "<!-- results:end -->"


@dataclasses.dataclass(frozen=True)
class Config:
    cell: str
    hidden: int
    layers: int
    seq_len: int
    batch: int
    threads: int

    @property
    def label(self) -> str:
        return (
            f"{self.cell} h{self.hidden} l{self.layers} T{self.seq_len} "
            f"B{self.batch} t{self.threads}"
        )

    def flops(self) -> float:
        gates = 4 if self.cell == "lstm" else 3
        total = 0.0
        for layer in range(self.layers):
            inputs = INPUT_SIZE if layer == 0 else self.hidden
            total += 2.0 * gates * self.hidden * (inputs + self.hidden)
        return total * self.seq_len * self.batch


def configs(mode: str) -> list[Config]:
    cores = os.cpu_count() or 1
    if mode == "short":
        grid = itertools.product(("lstm", "gru"), (128, 512), (2,), (1, 100), (1,), (1,))
    else:
        grid = itertools.product(
            ("lstm", "gru"), (64, 128, 256, 512), (1, 2), (1, 100, 1000), (1, 16),
            (1, cores) if cores > 1 else (1,),
        )  # fmt: skip
    return [Config(*values) for values in grid]


def matmul_peak_gflops() -> dict[str, float]:
    """Single-thread float32 1024^3 matrix product rate through numpy and torch."""
    size = 1024
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
    flop = 2.0 * size**3
    results = {}
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            stats, _ = measure(lambda: a @ b, warmup=2, runs=10)
        results["numpy"] = flop / (stats.p50_ms * 1e-3) / 1e9
    except ImportError:
        pass
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    stats, _ = measure(lambda: torch.mm(ta, tb), warmup=2, runs=10)
    torch.set_num_threads(previous)
    results["torch"] = flop / (stats.p50_ms * 1e-3) / 1e9
    return results


def matvec_ceiling_gflops(hidden: int, gates: int) -> float:
    """Single-thread float32 rate of one recurrent step's matrix-vector product.

    At batch 1 each step multiplies a (gates * H) x (2H) weight matrix by one vector, so
    every weight is read once per step. Once the weights outgrow the caches, memory
    bandwidth bounds the rate, not the arithmetic peak.
    """
    weights = torch.randn(gates * hidden, 2 * hidden)
    vector = torch.randn(2 * hidden)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    stats, _ = measure(lambda: torch.mv(weights, vector), warmup=20, runs=200)
    torch.set_num_threads(previous)
    return 2.0 * weights.numel() / (stats.p50_ms * 1e-3) / 1e9


def build_artifacts(config: Config, folder: Path) -> dict[str, Any]:
    """Train-free reference model (seeded), its checkpoint, ONNX file and quantized files."""
    torch.manual_seed(0)
    model = SequenceModel(
        ModelConfig(
            input_size=INPUT_SIZE, hidden_size=config.hidden, num_outputs=NUM_CLASSES,
            cell=config.cell, num_layers=config.layers,
        )
    ).eval()  # fmt: skip
    stem = f"{config.cell}-h{config.hidden}-l{config.layers}"
    checkpoint = folder / f"{stem}.pt"
    fp32 = folder / f"{stem}.onnx"
    if not fp32.exists():
        save_checkpoint(model, checkpoint)
        export_checkpoint(checkpoint, fp32)
        quantize_model(fp32, folder / f"{stem}.int8.onnx", "dynamic-int8")
        quantize_model(fp32, folder / f"{stem}.fp16.onnx", "fp16")
    stream = folder / f"{stem}.stream.onnx"
    if not stream.exists():
        export_model(checkpoint, stream, streaming=True)
    return {
        "model": model,
        "stream": stream,
        "fp32": fp32,
        "int8": folder / f"{stem}.int8.onnx",
        "fp16": folder / f"{stem}.fp16.onnx",
    }


def contenders(config: Config, artifacts: dict[str, Any], x: np.ndarray):
    """Yield (name, callable, output function, file size) for every contender."""
    torch.set_num_threads(config.threads)
    model = artifacts["model"]
    tensor = torch.from_numpy(x)

    def eager():
        with torch.inference_mode():
            return model(tensor)

    yield "pytorch-fp32", eager, lambda: eager().numpy(), None

    with warnings.catch_warnings():
        # torch 2.13 warns that torch.ao eager quantization moves to torchao; the API
        # still works and is what a PyTorch user reaches for today.
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
        )

    def eager_int8():
        with torch.inference_mode():
            return quantized(tensor)

    yield "pytorch-int8", eager_int8, lambda: eager_int8().numpy(), None

    options = ort.SessionOptions()
    options.intra_op_num_threads = config.threads
    plain = ort.InferenceSession(
        str(artifacts["fp32"]), options, providers=["CPUExecutionProvider"]
    )
    feed = {"input": x}
    yield (
        "onnxruntime-fp32",
        lambda: plain.run(None, feed),
        lambda: plain.run(None, feed)[0],
        artifacts["fp32"].stat().st_size,
    )

    for precision in ("fp32", "int8", "fp16"):
        session = Session(
            artifacts[precision], provider="cpu", threads=config.threads, normalize=False
        )
        prepared = session.prepare(x)
        yield (
            f"rnnedge-{precision}",
            lambda s=session, p=prepared: s.run_prepared(p),
            lambda s=session, p=prepared: s.run_prepared(p)["output"],
            artifacts[precision].stat().st_size,
        )

    if config.seq_len == 1:
        # One step of a stream: the state stays in the session's bound buffers.
        streaming = StreamingSession(
            artifacts["stream"], provider="cpu", threads=config.threads, normalize=False
        )
        chunk = streaming.session.prepare_inputs(x)

        def first_step() -> np.ndarray:
            streaming.reset()
            return np.array(streaming.step_prepared(chunk)["output"])

        yield (
            "rnnedge-stream-fp32",
            lambda: streaming.step_prepared(chunk),
            first_step,
            artifacts["stream"].stat().st_size,
        )


def runs_for(config: Config) -> tuple[int, int, float]:
    """(warm-up, runs, time budget in s) scaled to the configuration's cost."""
    if config.seq_len >= 1000 or config.hidden >= 512:
        return 3, 30, 2.0
    return 10, 200, 1.0


ROUNDS = 3


def run_config(config: Config, folder: Path) -> list[dict[str, Any]]:
    """Time every contender in interleaved rounds and pool the samples.

    Each round times every contender once with a third of the runs, so a slow spell of
    the shared machine lands on all contenders alike instead of on one of them.
    """
    artifacts = build_artifacts(config, folder)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((config.batch, config.seq_len, INPUT_SIZE)).astype(np.float32)
    entries = list(contenders(config, artifacts, x))
    warmup, runs, budget = runs_for(config)
    samples: dict[str, list[float]] = {name: [] for name, *_ in entries}
    for _ in range(ROUNDS):
        for name, call, _, _ in entries:
            _, taken = measure(
                call, warmup=warmup, runs=max(runs // ROUNDS, 1), budget_s=budget / ROUNDS
            )
            samples[name].extend(taken)
    reference = None
    rows = []
    for name, _, output, size in entries:
        stats = summarize(samples[name])
        result = np.asarray(output(), dtype=np.float64)
        if reference is None:
            reference = result
        rows.append(
            {
                "config": dataclasses.asdict(config),
                "contender": name,
                "p50_ms": stats.p50_ms,
                "p99_ms": stats.p99_ms,
                "runs": stats.count,
                "gflops": config.flops() / (stats.p50_ms * 1e-3) / 1e9,
                "size_bytes": size,
                "max_abs_error": float(np.max(np.abs(result - reference))),
            }
        )
    eager = rows[0]["p50_ms"]
    plain = next(r["p50_ms"] for r in rows if r["contender"] == "onnxruntime-fp32")
    for row in rows:
        row["speedup_vs_pytorch"] = eager / row["p50_ms"]
        row["speedup_vs_onnxruntime"] = plain / row["p50_ms"]
    return rows


MEMORY_SCRIPT = """
import sys, numpy as np
kind, path, seq, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = np.random.default_rng(0).standard_normal((batch, seq, 40)).astype(np.float32)
if kind == "pytorch":
    import torch
    from rnnedge.export import load_checkpoint
    model = load_checkpoint(path).model
    with torch.inference_mode():
        model(torch.from_numpy(x))
else:
    from rnnedge.runtime import Session, StreamingSession
    Session(path, provider="cpu", threads=1, normalize=False).run(x)
# VmHWM belongs to this process's own address space; ru_maxrss would also count the
# parent's resident memory at fork time, which survives the exec.
status = open("/proc/self/status").read()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def peak_memory_mb(kind: str, path: Path, config: Config) -> float:
    """Peak resident memory (VmHWM) of a fresh process that loads the model and runs it once."""
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, kind, str(path), str(config.seq_len),
         str(config.batch)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def machine_summary(peak: dict[str, float]) -> dict[str, Any]:
    info = cpu_info()
    return {
        "cpu": info["model"],
        "cores": info["logical_cores"],
        "flags": info["flags"],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "peak_gflops_1thread": peak,
        "matvec_gflops_1thread": {
            f"{cell} h{hidden}": matvec_ceiling_gflops(hidden, 4 if cell == "lstm" else 3)
            for cell in ("lstm", "gru")
            for hidden in (128, 512)
        },
    }


def render_markdown(document: dict[str, Any]) -> str:
    """Render the tables of docs/benchmarks.md from one run's results."""
    machine = document["machine"]
    peak = max(machine["peak_gflops_1thread"].values())
    lines = [
        MARK_BEGIN,
        "",
        f"Run: `{document['command']}` on {document['date']}.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} logical cores, flags "
        f"{', '.join(machine['flags'])}; Python {machine['python']}, torch "
        f"{machine['torch']}, onnxruntime {machine['onnxruntime']}, numpy {machine['numpy']}.",
        "",
        "Single-thread float32 matrix-product peak measured in the same run: "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in machine["peak_gflops_1thread"].items())
        + f"; the share of peak below uses {peak:.1f}.",
        "",
        "### Speed-up over PyTorch eager float32 (p50 ratio, higher is faster)",
        "",
    ]
    rows = document["rows"]
    names = list(dict.fromkeys(r["contender"] for r in rows))
    labels = list(dict.fromkeys(Config(**r["config"]).label for r in rows))
    lines.append("| configuration | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for label in labels:
        cells = []
        for name in names:
            row = next(
                (
                    r for r in rows
                    if r["contender"] == name and Config(**r["config"]).label == label
                ),
                None,
            )  # fmt: skip
            cells.append(f"{row['speedup_vs_pytorch']:.2f}x" if row else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Latency, throughput of the recurrent work and error",
        "",
        "| configuration | contender | p50 ms | p99 ms | vs ONNX Runtime | GFLOP/s | "
        "share of peak | size KB | max abs error vs PyTorch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        size = f"{row['size_bytes'] / 1024:.0f}" if row["size_bytes"] else "-"
        lines.append(
            f"| {Config(**row['config']).label} | {row['contender']} | {row['p50_ms']:.4f} | "
            f"{row['p99_ms']:.4f} | {row['speedup_vs_onnxruntime']:.2f}x | "
            f"{row['gflops']:.2f} | {row['gflops'] / peak:.0%} | {size} | "
            f"{row['max_abs_error']:.2g} |"
        )
    lines += ["", *render_targets(document)]
    matvec = document["machine"].get("matvec_gflops_1thread", {})
    if matvec:
        lines += [
            "",
            "Batch-1 recurrent steps are matrix-vector products. Their single-thread float32 "
            "rate, measured in the same run: "
            + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in matvec.items())
            + ".",
        ]
    if document.get("memory"):
        lines += ["", "### Peak resident memory of a fresh process (one run)", ""]
        lines.append("| model | contender | peak RSS MB |")
        lines.append("|---|---|---:|")
        for entry in document["memory"]:
            lines.append(f"| {entry['model']} | {entry['contender']} | {entry['peak_mb']:.0f} |")
    lines += ["", MARK_END]
    return "\n".join(lines)


TARGET_CONFIG = {"hidden": 128, "layers": 2, "seq_len": 100, "batch": 1, "threads": 1}
TARGET_SPEEDUP = {"lstm": 4.0, "gru": 3.0}


def _matches(row: dict[str, Any], **fields: Any) -> bool:
    return all(row["config"][key] == value for key, value in fields.items())


def render_targets(document: dict[str, Any]) -> list[str]:
    """List each target of the benchmark, met or missed, with the figure that decides it."""
    rows = document["rows"]
    peak = max(document["machine"]["peak_gflops_1thread"].values())
    lines = ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
    for cell, wanted in TARGET_SPEEDUP.items():
        candidates = [
            r for r in rows
            if _matches(r, cell=cell, **TARGET_CONFIG) and r["contender"].startswith("rnnedge-")
        ]  # fmt: skip
        if not candidates:
            continue
        best = max(candidates, key=lambda r: r["speedup_vs_pytorch"])
        lines.append(
            f"| {cell.upper()} h128 2 layers, 100 steps, batch 1, one thread: best rnnedge "
            f"artifact at least {wanted:.0f}x faster than PyTorch eager | "
            f"{best['contender']} {best['speedup_vs_pytorch']:.2f}x | "
            f"{'yes' if best['speedup_vs_pytorch'] >= wanted else 'no'} |"
        )
    same_file = [r for r in rows if r["contender"] == "rnnedge-fp32"]
    if same_file:
        worst = min(same_file, key=lambda r: r["speedup_vs_onnxruntime"])
        lines.append(
            "| rnnedge session never slower than a plain ONNX Runtime session on the same "
            f"file, allowing 5% for noise | slowest ratio {worst['speedup_vs_onnxruntime']:.2f}x "
            f"({Config(**worst['config']).label}) | "
            f"{'yes' if worst['speedup_vs_onnxruntime'] >= 0.95 else 'no'} |"
        )
    for cell in ("lstm", "gru"):
        wide = [
            r for r in rows
            if _matches(r, cell=cell, hidden=512, seq_len=100, batch=1, threads=1)
            and r["contender"].startswith("rnnedge-")
        ]  # fmt: skip
        if not wide:
            continue
        best = max(wide, key=lambda r: r["gflops"])
        share = best["gflops"] / peak
        lines.append(
            f"| {cell.upper()} h512: recurrent matrix work at least half of the single-core "
            f"float32 peak | {best['contender']} {best['gflops']:.1f} GFLOP/s, {share:.0%} | "
            f"{'yes' if share >= 0.5 else 'no'} |"
        )
    return lines


def write_docs(path: Path, document: dict[str, Any]) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else f"{MARK_BEGIN}\n{MARK_END}\n"
    if MARK_BEGIN not in text or MARK_END not in text:
        raise SystemExit(f"{path} lacks the {MARK_BEGIN} / {MARK_END} markers")
    head, rest = text.split(MARK_BEGIN, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(head + render_markdown(document) + tail, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["short", "full"], default="short")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--write-docs", type=Path, help="regenerate the tables in this page")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    args = parser.parse_args()

    peak = matmul_peak_gflops()
    rows: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rnnedge-bench-") as tmp:
        folder = Path(tmp)
        for config in configs(args.mode):
            started = time.perf_counter()
            config_rows = run_config(config, folder)
            rows.extend(config_rows)
            best = max(config_rows, key=lambda r: r["speedup_vs_pytorch"])
            print(
                f"{config.label}: best {best['contender']} {best['speedup_vs_pytorch']:.2f}x "
                f"vs PyTorch ({time.perf_counter() - started:.1f} s)",
                file=sys.stderr,
            )
        if not args.no_memory:
            for cell in ("lstm", "gru"):
                config = Config(cell, 128, 2, 100, 1, 1)
                artifacts = build_artifacts(config, folder)
                stem = artifacts["fp32"].name.removesuffix(".onnx")
                checkpoint = folder / f"{stem}.pt"
                peak_mb = peak_memory_mb("pytorch", checkpoint, config)
                memory.append({"model": stem, "contender": "pytorch-fp32", "peak_mb": peak_mb})
                for precision in ("fp32", "int8", "fp16"):
                    peak_mb = peak_memory_mb("onnx", artifacts[precision], config)
                    memory.append(
                        {"model": stem, "contender": f"rnnedge-{precision}", "peak_mb": peak_mb}
                    )
    document = {
        "command": "python benchmarks/recurrent_latency.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_summary(peak),
        "rows": rows,
        "memory": memory,
    }
    if args.json:
        args.json.write_text(json.dumps(document, indent=1), encoding="utf-8")
    if args.write_docs:
        write_docs(args.write_docs, document)
    print(render_markdown(document))


if __name__ == "__main__":
    main()
