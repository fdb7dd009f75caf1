"""`rnnedge export`: a trained model to ONNX, with the parity check."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.commands._common import (
    emit_json,
    file_identity,
    interrupted_output,
    verbosity_options,
)


@click.command("export")
@click.argument("source")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output .onnx file [default: SOURCE with the suffix .onnx].",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="state_dict file for a file.py:factory or package.module:factory SOURCE.",
)
@click.option(
    "--example-shape",
    metavar="BxTxF",
    help="Example input as batch x time x features, e.g. 1x100x6; needed when SOURCE "
    "records no input size.",
)
@click.option(
    "--batch-first",
    is_flag=True,
    help="Take the input as (batch, time, features). Without --batch-first or --time-major, "
    "the layout comes from the checkpoint or the model's recurrent modules.",
)
@click.option(
    "--time-major",
    is_flag=True,
    help="Take the input as (time, batch, features).",
)
@click.option(
    "--exporter",
    type=click.Choice(["torchscript", "dynamo"]),
    help="Exporter to try first; the other is the fallback [default: torchscript].",
)
@click.option(
    "--opset",
    type=int,
    default=None,
    help="ONNX opset version [default: 17 for torchscript, 18 for dynamo].",
)
@click.option(
    "--atol",
    type=float,
    default=1e-5,
    show_default=True,
    help="Maximum absolute error allowed between PyTorch and ONNX Runtime.",
)
@click.option(
    "--streaming",
    is_flag=True,
    help="Make the recurrent state a graph input and output, checked by feeding chunks.",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Load SOURCE or --weights with full unpickling (weights_only=False). DANGEROUS: "
    "unpickling runs any code the file contains; use it only for files you made or trust.",
)
@click.option(
    "--labels",
    metavar="NAME,NAME,...",
    help="Class names of a classifier, comma-separated, in the order of the output's last "
    "axis; recorded with task=classification, so that 'rnnedge run' prints a label per "
    "sequence. An rnnedge checkpoint records its own.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@verbosity_options
def export_command(
    source: str,
    output: Path | None,
    weights: Path | None,
    example_shape: str | None,
    batch_first: bool,
    time_major: bool,
    exporter: str | None,
    opset: int | None,
    atol: float,
    streaming: bool,
    trust_pickle: bool,
    labels: str | None,
    as_json: bool,
) -> None:
    """Export SOURCE to ONNX and check parity with PyTorch.

    SOURCE is an rnnedge checkpoint, a TorchScript archive, a torch.export .pt2 file,
    or path/to/file.py:factory / package.module:factory (with --weights).
    """
    from rnnedge._fileio import check_output_path
    from rnnedge.errors import InputError
    from rnnedge.export import export_model

    if not atol > 0:  # also rejects NaN, which no error would ever exceed
        raise InputError(
            f"--atol must be positive, got {atol}; pass the max abs error to allow, such as "
            "1e-5 (the default)"
        )
    if batch_first and time_major:
        # Two flags, not a click flag pair, because a pair keeps the last one given.
        raise click.UsageError("--batch-first and --time-major conflict, so pass only one of them")
    layout = None
    if batch_first:
        layout = True
    elif time_major:
        layout = False
    if output is None:
        output = Path(source.rpartition(":")[0] if ":" in source else source).with_suffix(".onnx")
    output = check_output_path(output)
    before = file_identity(output)
    try:
        report = export_model(
            source,
            output,
            weights=weights,
            example_shape=example_shape,
            batch_first=layout,
            exporter=exporter,
            opset=opset,
            atol=atol,
            streaming=streaming,
            trust_pickle=trust_pickle,
            labels=labels.split(",") if labels is not None else None,
        )
    except KeyboardInterrupt:
        raise interrupted_output(output, before) from None
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(report.format_text())
