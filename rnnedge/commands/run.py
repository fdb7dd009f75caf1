"""`rnnedge run`: inference on an input file, as one batch or streamed chunk by chunk."""

from __future__ import annotations

import os
from pathlib import Path

import click

from rnnedge.commands._common import (
    PROVIDER_CHOICES,
    check_threads_option,
    emit_json,
    layout_option,
    state_and_feed_arguments,
    state_and_feed_options,
    verbosity,
    verbosity_options,
)
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
@click.option(
    "--threads",
    type=int,
    callback=check_threads_option,
    help="CPU threads per operator [default: physical cores].",
)
@click.option(
    "--no-normalize",
    is_flag=True,
    help="Feed inputs as given, without the normalization stored in the model.",
)
@click.option(
    "--stream",
    is_flag=True,
    help="Run the input chunk by chunk, carrying the recurrent state between calls.",
)
@click.option(
    "--chunk",
    type=int,
    default=1,
    show_default=True,
    help="Time steps per call with --stream.",
)
@state_and_feed_options
@layout_option
@click.option(
    "--nonfinite",
    type=click.Choice(["error", "warn"]),
    default="error",
    show_default=True,
    help="What NaN or infinite input values do: fail, or log a warning and run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@verbosity_options
def run_command(model: Path, input_path: Path, output: Path | None, provider: str,
                device: str | None, strict_provider: bool, threads: int | None,
                no_normalize: bool, stream: bool, chunk: int, states: tuple[str, ...],
                feeds: tuple[str, ...], layout: str | None, nonfinite: str,
                as_json: bool) -> None:  # fmt: skip
    """Run inference on an input file, as one batch or streamed chunk by chunk."""
    from rnnedge._fileio import check_output_path
    from rnnedge.runtime import Session, StreamingSession, load_array_file
    from rnnedge.runtime.outputs import save_outputs, summarize_predictions
    from rnnedge.runtime.providers import parse_provider

    requested = parse_provider(provider)
    if output is not None:
        check_output_path(output)
        if output.suffix.lower() not in (".npy", ".npz"):
            raise InputError(f"output {str(output)!r} must end in .npy or .npz")
        if _same_file(output, input_path):
            raise InputError(
                f"output {str(output)!r} is the input file {str(input_path)!r}, which the "
                "outputs would overwrite; choose another output path"
            )
    if chunk < 1:
        raise InputError(f"--chunk must be at least 1 time step, got {chunk}")
    if chunk != 1 and not stream:
        raise InputError("--chunk applies to streaming only; add --stream")
    data = load_array_file(input_path)
    options = {
        "device": device,
        "provider": requested,
        "strict_provider": strict_provider,
        "threads": threads,
        "normalize": not no_normalize,
        **state_and_feed_arguments(states, feeds),
        "nonfinite": nonfinite,
        "layout": layout,
        "report_placement": True,
    }
    source = f"input {input_path.name}"
    if stream:
        streaming = StreamingSession(model, **options)
        session = streaming.session
        outputs = streaming.run(data, chunk=chunk, source=source)
    else:
        session = Session(model, **options)
        outputs = session.run(data, source=source)
    if output is not None:
        save_outputs(output, outputs)
        if stream and output.suffix.lower() == ".npy" and verbosity() >= 0:
            click.echo(_dropped_states_note(output, session), err=True)
    summary = summarize_predictions(session, outputs)
    placement = session.placement.as_dict() if session.placement else {}
    layout = session.describe_layout(data)
    if as_json:
        extra = {"stream": {"chunk": chunk}} if stream else {}
        emit_json({"providers": session.providers,
                   "requested_provider": session.plan.requested.value,
                   "fallback": session.fallback, "placement": placement,
                   "layout": session.sequence_layout,
                   "output_file": output, **extra, **summary})  # fmt: skip
        return
    click.echo(f"providers: {', '.join(session.providers)}")
    if layout:
        click.echo(layout)
    for line in session.placement.describe() if session.placement else []:
        click.echo(f"placement: {line}")
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


def _dropped_states_note(output: Path, session) -> str:
    """Build the note that an .npy output of a stream contains the first output only, so
    the final state, from which a later run resumes, is not written."""
    first = session.output_names[0]
    states = ", ".join(pair.output for pair in session.state_pairs)
    return (
        f"note: {output.name} holds output {first!r} only, so the final state ({states}) was "
        f"not written; -o {output.with_suffix('.npz').name} writes it too, for a later run "
        "to resume from"
    )


def _same_file(first: Path, second: Path) -> bool:
    """Return whether two paths name one file: by inode where both exist, else by resolved path."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return first.resolve() == second.resolve()
