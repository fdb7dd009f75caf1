"""`rnnedge quantize`: int8 or fp16, with a report of what changed and what it cost."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from rnnedge.commands._common import (
    emit_json,
    file_identity,
    interrupted_output,
    layout_option,
    verbosity_options,
)
from rnnedge.errors import InputError
from rnnedge.quantize.modes import CalibrationMethod, GruInt8, QuantMode


@click.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output .onnx file [default: MODEL.int8.onnx, .qdq.onnx, .fp16.onnx or .int8w.onnx].",
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in QuantMode]),
    default=None,
    help="Quantization mode [default: the --target preset, else dynamic-int8].",
)
@click.option(
    "--target",
    help="Device profile whose quantization preset fills the settings not given.",
)
@click.option(
    "--reduce-range/--full-range",
    default=None,
    help="7-bit int8 weights [default: only for x86 targets without VNNI].",
)
@click.option(
    "--per-channel/--per-tensor",
    default=None,
    help="One weight scale per output channel [default: the target preset, else per tensor].",
)
@click.option(
    "--calibration",
    type=click.Path(path_type=Path),
    help="Raw inputs (.npy or .npz with 'x', batch x time x features) for static-int8.",
)
@click.option(
    "--calibration-method",
    type=click.Choice([m.value for m in CalibrationMethod]),
    default=None,
    help="How static-int8 sets activation ranges (static-int8 only) [default: minmax].",
)
@click.option(
    "--gru-int8",
    type=click.Choice([p.value for p in GruInt8]),
    default=None,
    help="Rewrite GRU nodes into the int8 Scan path (dynamic-int8 only): auto does it from "
    "the hidden-size threshold on, where it is faster than the float GRU [default: auto].",
)
@click.option(
    "--gru-int8-min-hidden",
    type=click.IntRange(min=0),
    default=None,
    help="Hidden-size threshold for --gru-int8 auto (dynamic-int8 only) [default: the target "
    "preset, else 384].",
)
@click.option(
    "--samples",
    type=click.Path(path_type=Path),
    help="Model inputs (.npy, batch x time x features, already normalized) for the drift "
    "check [default: the calibration data, else random].",
)
@click.option(
    "--eval",
    "eval_path",
    type=click.Path(path_type=Path),
    help="Labelled raw data (.npz with x and y) for the task metric: accuracy or MSE.",
)
@click.option(
    "--max-metric-drop",
    type=click.FloatRange(min=0),
    default=None,
    help="Fail and write nothing if the metric gets worse by more than this (needs --eval).",
)
@click.option(
    "--latency-runs",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Timed calls per model for the latency change, on one sequence (or the model's "
    "fixed batch size); 0 skips it.",
)
@layout_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@verbosity_options
def quantize_command(
    model: Path,
    output: Path | None,
    mode: str | None,
    target: str | None,
    reduce_range: bool | None,
    per_channel: bool | None,
    calibration: Path | None,
    calibration_method: str | None,
    gru_int8: str | None,
    gru_int8_min_hidden: int | None,
    samples: Path | None,
    eval_path: Path | None,
    max_metric_drop: float | None,
    latency_runs: int,
    layout: str | None,
    as_json: bool,
) -> None:
    """Quantize an exported model and report operators, size, drift, metric and latency."""
    from rnnedge._fileio import check_output_path
    from rnnedge.quantize.presets import preset_for

    preset = preset_for(target) if target else None
    chosen = QuantMode(mode or (preset and preset.mode) or QuantMode.DYNAMIC_INT8)
    output = check_output_path(output or model.with_name(model.stem + chosen.file_suffix))
    before = file_identity(output)
    try:
        report = _quantize(model, output, chosen, reduce_range, per_channel, samples,
                           calibration, calibration_method, gru_int8, gru_int8_min_hidden,
                           eval_path, max_metric_drop, target, latency_runs, layout)  # fmt: skip
    except KeyboardInterrupt:
        raise interrupted_output(output, before) from None
    if as_json:
        emit_json(report.as_dict())
        return
    _print_report(report)


def _quantize(model, output, chosen, reduce_range, per_channel, samples, calibration,
              calibration_method, gru_int8, gru_int8_min_hidden, eval_path, max_metric_drop,
              target, latency_runs, layout):  # fmt: skip
    from rnnedge.quantize import quantize_model

    return quantize_model(
        model,
        output,
        chosen,
        reduce_range="auto" if reduce_range is None else reduce_range,
        per_channel=per_channel,
        samples=_load_samples(samples),
        calibration=_load_array(calibration, "--calibration"),
        calibration_method=calibration_method,
        gru_int8=gru_int8,
        gru_int8_min_hidden=gru_int8_min_hidden,
        eval_data=_load_eval(eval_path),
        max_metric_drop=max_metric_drop,
        target=target,
        latency_runs=latency_runs,
        layout=layout,
    )


def _load_samples(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    from rnnedge.runtime.inputs import load_array_file

    loaded = load_array_file(path)
    if not isinstance(loaded, np.ndarray) or loaded.ndim != 3:
        raise InputError(
            f"--samples {str(path)!r} must hold one array of rank 3 (batch, time, features)"
        )
    return loaded


def _load_array(path: Path | None, option: str):
    if path is None:
        return None
    from rnnedge.runtime.inputs import load_array_file

    if path.suffix.lower() not in (".npy", ".npz"):
        raise InputError(f"{option} {str(path)!r} must be a .npy or .npz file")
    loaded = load_array_file(path)
    if isinstance(loaded, dict) and not loaded:
        raise InputError(f"{option} {str(path)!r} holds no arrays; save the inputs as 'x'")
    return loaded


def _load_eval(path: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    if path is None:
        return None
    loaded = _load_array(path, "--eval")
    if not isinstance(loaded, dict) or "x" not in loaded or "y" not in loaded:
        raise InputError(
            f"--eval {str(path)!r} must be an .npz file with arrays 'x' (inputs) and 'y' "
            "(labels or targets); write it with numpy.savez(path, x=x, y=y)"
        )
    return loaded["x"], loaded["y"]


def _print_report(report) -> None:
    click.echo(f"wrote {report.output} ({report.mode})")
    click.echo("settings: " + ", ".join(f"{k}={v}" for k, v in report.settings.items()))
    click.echo(
        f"size: {report.size_before:,} -> {report.size_after:,} bytes ({_size_change(report)})"
    )
    click.echo("quantized ops: " + (_format_counts(report.quantized_ops) or "none"))
    click.echo("float compute ops: " + (_format_counts(report.float_compute_ops) or "none"))
    if report.gru_int8_rewritten:
        click.echo("int8 GRU path: " + ", ".join(report.gru_int8_rewritten))
    for node, reason in report.recurrent_left_float:
        click.echo(f"FLOAT RECURRENT: {node}: {reason}")
    drift = report.drift
    samples = f"{drift.samples} sample" if drift.samples == 1 else f"{drift.samples} samples"
    line = (
        f"drift vs float on {samples}: max abs {drift.max_abs_error:.3g}, "
        f"mean abs {drift.mean_abs_error:.3g}"
    )
    if drift.top1_agreement is not None:
        line += f", top-1 agreement {drift.top1_agreement:.1%}"
    click.echo(line)
    if report.metric_name is not None:
        click.echo(f"{report.metric_name}: {report.metric_before:.4g} -> {report.metric_after:.4g}")
    if report.p50_ms_before is not None:
        ratio = report.p50_ms_before / report.p50_ms_after if report.p50_ms_after else 0.0
        click.echo(
            f"p50 latency (batch {report.latency_batch}, one thread, this host): "
            f"{report.p50_ms_before:.3f} -> "
            f"{report.p50_ms_after:.3f} ms ({ratio:.2f}x)"
        )
    # The nodes left float have their FLOAT RECURRENT lines above.
    for note in report.other_notes:
        click.echo(f"note: {note}")


def _size_change(report) -> str:
    if report.size_after > report.size_before:
        return f"{report.size_after / report.size_before:.2f}x larger"
    return f"{report.size_ratio:.2f}x smaller"


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in counts.items())
