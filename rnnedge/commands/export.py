"""`rnnedge export`: a checkpoint to ONNX, with the parity check."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.commands._common import emit_json, verbosity_options
from rnnedge.errors import InputError


@click.command("export")
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
        emit_json({
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
