"""`rnnedge quantize`: int8 or fp16, with a report of what changed."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from rnnedge.commands._common import emit_json, verbosity_options
from rnnedge.errors import InputError


@click.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output .onnx file [default: MODEL.int8.onnx or MODEL.fp16.onnx].",
)
@click.option(
    "--mode",
    type=click.Choice(["dynamic-int8", "fp16"]),
    default="dynamic-int8",
    show_default=True,
    help="Quantization mode.",
)
@click.option(
    "--reduce-range/--full-range",
    default=None,
    help="7-bit int8 weights [default: only on x86 hosts without VNNI].",
)
@click.option("--per-channel", is_flag=True, help="One weight scale per output channel.")
@click.option(
    "--samples",
    type=click.Path(path_type=Path),
    help="Inputs (.npy, batch x time x features) for the drift check [default: random].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@verbosity_options
def quantize_command(model: Path, output: Path | None, mode: str, reduce_range: bool | None,
                     per_channel: bool, samples: Path | None, as_json: bool) -> None:  # fmt: skip
    """Quantize an exported model and report size, operators and output drift."""
    from rnnedge._fileio import check_output_path
    from rnnedge.quantize import quantize_model
    from rnnedge.runtime.inputs import load_array_file

    suffix = ".int8.onnx" if mode == "dynamic-int8" else ".fp16.onnx"
    output = check_output_path(output or model.with_name(model.stem + suffix))
    sample_array = None
    if samples is not None:
        loaded = load_array_file(samples)
        if not isinstance(loaded, np.ndarray) or loaded.ndim != 3:
            raise InputError(
                f"--samples {str(samples)!r} must hold one array of rank 3 (batch, time, features)"
            )
        sample_array = loaded
    report = quantize_model(
        model, output, mode,
        reduce_range="auto" if reduce_range is None else reduce_range,
        per_channel=per_channel, samples=sample_array,
    )  # fmt: skip
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(f"wrote {report.output} ({report.mode})")
    click.echo(
        f"size: {report.size_before:,} -> {report.size_after:,} bytes "
        f"({report.size_ratio:.2f}x smaller)"
    )
    click.echo("settings: " + ", ".join(f"{k}={v}" for k, v in report.settings.items()))
    click.echo("quantized ops: " + (_format_counts(report.quantized_ops) or "none"))
    click.echo("float compute ops: " + (_format_counts(report.float_compute_ops) or "none"))
    drift = report.drift
    line = (
        f"drift vs float on {drift.samples} samples: max abs {drift.max_abs_error:.3g}, "
        f"mean abs {drift.mean_abs_error:.3g}"
    )
    if drift.top1_agreement is not None:
        line += f", top-1 agreement {drift.top1_agreement:.1%}"
    click.echo(line)
    for note in report.notes:
        click.echo(f"note: {note}")


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in counts.items())
