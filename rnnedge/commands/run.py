"""`rnnedge run`: batch inference on an input file."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.commands._common import PROVIDER_CHOICES, emit_json, verbosity_options
from rnnedge.errors import InputError


@click.command("run")
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
        emit_json({"providers": session.providers, "output_file": output, **summary})
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
