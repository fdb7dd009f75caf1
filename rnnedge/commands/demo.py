"""`rnnedge demo`: LSTM against GRU, float against int8, on BasicMotions."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from rnnedge.commands._common import (
    devices_dir_option,
    emit_json,
    minimum_option,
    verbosity,
    verbosity_options,
)
from rnnedge.errors import MissingDependencyError


@click.command("demo")
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path),
    help="Folder for the artifacts, which must hold none of the files the demo writes "
    "[default: a new rnnedge-demo-<time> folder].",
)
@click.option("--device", help="Device name for the profile [default: this host's].")
@click.option("--epochs", type=int, default=60, show_default=True, callback=minimum_option(1),
              help="Training epochs.")  # fmt: skip
@click.option("--runs", type=int, default=200, show_default=True, callback=minimum_option(1),
              help="Timed runs per artifact.")  # fmt: skip
@devices_dir_option("Folder of the device profiles to update.")
@click.option(
    "--force-device",
    is_flag=True,
    help="Record under --device even when this host does not match that device's "
    "recognize rules; each measurement is marked host_mismatch: true.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print only a JSON document of the results on stdout."
)
@verbosity_options
def demo_command(output_dir: Path | None, device: str | None, epochs: int, runs: int,
                 devices_dir: Path, force_device: bool, as_json: bool) -> None:  # fmt: skip
    """Train an LSTM and a GRU on BasicMotions and compare float and int8 on this host."""
    # The demo trains (torch), exports and quantizes (onnx) and loads its data (sktime);
    # the `demo` extra installs all three. find_spec checks without importing them.
    needed = ("torch", "onnx", "sktime")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(_missing_message(missing))
    from rnnedge.demo import DemoInterrupted, run_demo
    from rnnedge.demo.pipeline import demo_file_names
    from rnnedge.errors import RunInterruptedError
    from rnnedge.report import write_demo_report

    def progress(message: str) -> None:
        if verbosity() >= 0:
            click.echo(message, err=True)

    # click turns a KeyboardInterrupt that leaves the command into a bare "aborted", so
    # the interrupt is caught here and reported with what was kept.
    try:
        result = run_demo(output_dir=output_dir, device=device, epochs=epochs, runs=runs,
                          user_dir=devices_dir, progress=progress,
                          force_device=force_device)  # fmt: skip
    except DemoInterrupted as exc:
        raise RunInterruptedError(exc.describe()) from None
    try:
        report = write_demo_report(result.as_json(), result.output_dir, devices_dir)
    except KeyboardInterrupt:
        kept_files = [n for n in demo_file_names() if (result.output_dir / n).is_file()]
        stopped = DemoInterrupted(result.output_dir, kept_files, len(result.rows), len(result.rows),
                                  result.profile_path)  # fmt: skip
        raise RunInterruptedError(stopped.describe()) from None
    if as_json:
        emit_json(result.as_json())
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
    if report is not None:
        click.echo(f"HTML report: {report}")


def _missing_message(missing: list[str]) -> str:
    """Name the missing packages and the install commands, torch's CPU build first."""
    verb = "is" if len(missing) == 1 else "are"
    if "torch" not in missing:
        return (
            f"the demo needs {', '.join(missing)}, which {verb} not installed; install "
            "them with: pip install 'rnnedge[demo]'"
        )
    # The extra alone would pull the default torch wheel, on Linux a CUDA build of several
    # GB, so the message names the CPU build first.
    return (
        f"the demo needs {', '.join(missing)}, which {verb} not installed; install torch "
        "first (the CPU build where no GPU is needed: pip install torch --index-url "
        "https://download.pytorch.org/whl/cpu), then pip install 'rnnedge[demo]'"
    )
