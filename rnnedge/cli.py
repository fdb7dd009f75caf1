"""The `rnnedge` command line: each command parses options and calls one library function."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from rnnedge import __version__
from rnnedge.errors import InputError, RnnedgeError

logger = logging.getLogger("rnnedge")
_verbosity = {"level": 0}

PROVIDER_CHOICES = ["auto", "cpu", "cuda", "tensorrt", "arm"]


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if not value:
        return
    if param.name == "quiet":
        _verbosity["level"] = -1
    else:
        _verbosity["level"] = max(_verbosity["level"], int(value))
    _configure_logging()


def _configure_logging() -> None:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        _verbosity["level"], logging.DEBUG
    )
    package = logging.getLogger("rnnedge")
    package.setLevel(level)
    if not any(getattr(h, "_rnnedge_cli", False) for h in package.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler._rnnedge_cli = True  # type: ignore[attr-defined]
        package.addHandler(handler)


def verbosity_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add -v/-q to a command, so that they work before or after the command name."""
    command = click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, callback=_set_verbosity,
        help="Print errors only.",
    )(command)  # fmt: skip
    return click.option(
        "-v", "--verbose", count=True, expose_value=False, callback=_set_verbosity,
        help="Print progress (-v) and debug detail (-vv); show tracebacks on errors.",
    )(command)  # fmt: skip


def _emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rnnedge")
@verbosity_options
def cli() -> None:
    """Export, quantize, run and profile PyTorch LSTM and GRU models on edge devices."""
    _configure_logging()


@cli.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output .onnx file [default: CHECKPOINT with the suffix .onnx].",
)
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset version.")
@click.option(
    "--atol",
    type=float,
    default=1e-5,
    show_default=True,
    help="Maximum absolute error allowed between PyTorch and ONNX Runtime.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@verbosity_options
def export_command(
    checkpoint: Path, output: Path | None, opset: int, atol: float, as_json: bool
) -> None:
    """Export an rnnedge checkpoint to ONNX and check parity with PyTorch."""
    from rnnedge._fileio import check_output_path
    from rnnedge.export import export_checkpoint

    if not checkpoint.is_file():
        raise InputError(f"checkpoint {str(checkpoint)!r} not found; pass the path to a .pt file")
    output = check_output_path(output or checkpoint.with_suffix(".onnx"))
    report = export_checkpoint(checkpoint, output, opset=opset, atol=atol)
    if as_json:
        _emit_json({
            "output": report.path,
            "size_bytes": report.size_bytes,
            "opset": report.opset,
            "parity": {
                "max_abs_error": report.parity.max_abs_error,
                "atol": report.parity.atol,
                "cases": [vars(c) for c in report.parity.cases],
            },
            "metadata": report.metadata.to_props(),
            "ops": report.op_counts,
        })  # fmt: skip
        return
    click.echo(f"exported {report.path} ({report.size_bytes:,} bytes, opset {report.opset})")
    shapes = ", ".join(f"{c.batch}x{c.seq_len}" for c in report.parity.cases)
    click.echo(
        f"parity vs PyTorch at batch x length {shapes}: max abs error "
        f"{report.parity.max_abs_error:.3g} (tolerance {report.parity.atol:g})"
    )


@cli.command("quantize")
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
        _emit_json(report.as_dict())
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


@cli.command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-i",
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Input file: .npy, .npz (arrays by input name) or .csv (time along rows).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write the outputs: .npy (first output) or .npz (all outputs by name).",
)
@click.option(
    "--provider",
    default="auto",
    show_default=True,
    help="Execution provider: " + ", ".join(PROVIDER_CHOICES) + ".",
)
@click.option("--device", help="Device profile whose provider preference and options apply.")
@click.option(
    "--strict-provider",
    is_flag=True,
    help="Fail instead of falling back when the provider is unavailable.",
)
@click.option("--threads", type=int, help="CPU threads per operator [default: physical cores].")
@click.option(
    "--no-normalize",
    is_flag=True,
    help="Feed inputs as given, without the normalization stored in the model.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@verbosity_options
def run_command(model: Path, input_path: Path, output: Path | None, provider: str,
                device: str | None, strict_provider: bool, threads: int | None,
                no_normalize: bool, as_json: bool) -> None:  # fmt: skip
    """Run batch inference on an input file."""
    from rnnedge._fileio import check_output_path
    from rnnedge.runtime import Session, load_array_file
    from rnnedge.runtime.outputs import save_outputs, summarize_predictions
    from rnnedge.runtime.providers import parse_provider

    requested = parse_provider(provider)
    if output is not None:
        check_output_path(output)
        if output.suffix.lower() not in (".npy", ".npz"):
            raise InputError(f"output {str(output)!r} must end in .npy or .npz")
    data = load_array_file(input_path)
    session = Session(model, device=device, provider=requested,
                      strict_provider=strict_provider, threads=threads,
                      normalize=not no_normalize)  # fmt: skip
    outputs = session.run(data, source=f"input {input_path.name}")
    if output is not None:
        save_outputs(output, outputs)
    summary = summarize_predictions(session, outputs)
    if as_json:
        _emit_json({"providers": session.providers, "output_file": output, **summary})
        return
    click.echo(f"providers: {', '.join(session.providers)}")
    for name, shape in summary["outputs"].items():
        click.echo(f"output {name}: shape {tuple(shape)}")
    if "predictions" in summary:
        shown = summary["predictions"][:20]
        more = len(summary["predictions"]) - len(shown)
        click.echo(
            "predictions: " + ", ".join(map(str, shown)) + (f" (+{more} more)" if more > 0 else "")
        )
    if output is not None:
        click.echo(f"wrote {output}")


@cli.command("profile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--device", help="Device name [default: the profile that matches this host].")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size.")
@click.option("--seq-len", type=int, default=100, show_default=True, help="Sequence length.")
@click.option(
    "--provider",
    default="auto",
    show_default=True,
    help="Execution provider: " + ", ".join(PROVIDER_CHOICES) + ".",
)
@click.option(
    "--strict-provider",
    is_flag=True,
    help="Fail instead of falling back when the provider is unavailable.",
)
@click.option("--threads", type=int, help="CPU threads per operator [default: physical cores].")
@click.option("--warmup", type=int, default=20, show_default=True, help="Untimed runs first.")
@click.option("--runs", type=int, default=200, show_default=True, help="Timed runs.")
@click.option(
    "--devices-dir",
    type=click.Path(path_type=Path),
    default=Path("devices"),
    show_default=True,
    help="Folder of the device profiles to update.",
)
@click.option("--no-store", is_flag=True, help="Measure only; leave the device profile as it is.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurement as JSON.")
@verbosity_options
def profile_command(model: Path, device: str | None, batch: int, seq_len: int, provider: str,
                    strict_provider: bool, threads: int | None, warmup: int, runs: int,
                    devices_dir: Path, no_store: bool, as_json: bool) -> None:  # fmt: skip
    """Measure latency and record it in devices/<device>.yaml."""
    from rnnedge.profiling import profile_model
    from rnnedge.runtime.providers import parse_provider

    result = profile_model(
        model, device=device, provider=parse_provider(provider), batch=batch,
        seq_len=seq_len, threads=threads, warmup=warmup, runs=runs,
        strict_provider=strict_provider, store=not no_store, user_dir=devices_dir,
    )  # fmt: skip
    if as_json:
        _emit_json({"device": result.device, "profile": result.profile_path, **result.measurement})
        return
    m = result.measurement
    stats = result.latency
    click.echo(
        f"{m['model']} on {result.device} ({m['provider']}, {m['precision']}, batch {batch}, "
        f"length {seq_len}, {m['threads']} threads)"
    )
    click.echo(
        f"latency ms: p50 {stats.p50_ms:.4f}  p90 {stats.p90_ms:.4f}  p99 {stats.p99_ms:.4f}  "
        f"mean {stats.mean_ms:.4f}  ({stats.count} runs after {warmup} warm-up)"
    )
    click.echo(
        f"throughput {m['throughput_seq_per_s']:,.1f} sequences/s; cold start "
        f"{m['cold_start_ms']:.1f} ms"
    )
    if result.profile_path is not None:
        click.echo(f"recorded in {result.profile_path}")


@cli.command("demo")
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path),
    help="Folder for the artifacts [default: a new rnnedge-demo-<time> folder].",
)
@click.option("--device", help="Device name for the profile [default: this host's].")
@click.option("--epochs", type=int, default=60, show_default=True, help="Training epochs.")
@click.option("--runs", type=int, default=200, show_default=True, help="Timed runs per artifact.")
@click.option(
    "--devices-dir",
    type=click.Path(path_type=Path),
    default=Path("devices"),
    show_default=True,
    help="Folder of the device profiles to update.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print only a JSON document of the results on stdout."
)
@verbosity_options
def demo_command(output_dir: Path | None, device: str | None, epochs: int, runs: int,
                 devices_dir: Path, as_json: bool) -> None:  # fmt: skip
    """Train an LSTM and a GRU on BasicMotions and compare float and int8 on this host."""
    from rnnedge.demo import run_demo
    from rnnedge.profiling.catalog import load_device

    if device is not None:
        load_device(device, devices_dir)  # an unknown name fails before training
    if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output-dir {str(output_dir)!r} is a file; pass a folder")

    def progress(message: str) -> None:
        if _verbosity["level"] >= 0:
            click.echo(message, err=True)

    result = run_demo(output_dir=output_dir, device=device, epochs=epochs, runs=runs,
                      user_dir=devices_dir, progress=progress)  # fmt: skip
    if as_json:
        _emit_json(result.as_json())
        return
    click.echo(f"\nBasicMotions test split, device {result.device}:\n")
    header = (
        f"{'model':<6} {'precision':<9} {'accuracy':>8} {'size':>10} {'p50 ms':>8} {'p99 ms':>8}"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for row in result.rows:
        click.echo(
            f"{row.model:<6} {row.precision:<9} {row.accuracy:>8.3f} "
            f"{row.size_bytes / 1024:>8.1f}KB {row.p50_ms:>8.3f} {row.p99_ms:>8.3f}"
        )
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"\nartifacts in {result.output_dir}/")
    if result.profile_path is not None:
        click.echo(f"device profile: {result.profile_path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn errors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="rnnedge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "rnnedge"
        click.echo(f"error: {exc.format_message()}; see '{command} --help'", err=True)
        return 2
    except RnnedgeError as exc:
        if _verbosity["level"] > 0:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:  # the last resort for bugs: one line unless -v
        if _verbosity["level"] > 0:
            traceback.print_exc()
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(
            f"error: internal error: {type(exc).__name__}: {first_line} "
            "(rerun with -v for the traceback)",
            err=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
