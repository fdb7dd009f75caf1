"""`rnnedge convert`: the ONNX Runtime format and operator list for a reduced build."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.commands._common import (
    emit_json,
    layout_option,
    state_and_feed_arguments,
    state_and_feed_options,
    verbosity_options,
)
from rnnedge.errors import InputError


@click.command("convert")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--ort", "to_ort", is_flag=True, help="Convert to the ONNX Runtime (.ort) format.")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path),
    help="Output .ort file [default: MODEL with the suffix .ort].",
)  # fmt: skip
@click.option(
    "--optimization", type=click.Choice(["basic", "extended", "all"]), default="basic",
    show_default=True,
    help="Graph optimizations saved into the file; basic stays portable across providers.",
)  # fmt: skip
@click.option(
    "--type-reduction", is_flag=True,
    help="Also record the element types of each operator, for a type-reduced build.",
)  # fmt: skip
@state_and_feed_options
@layout_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@verbosity_options
def convert_command(
    model: Path, to_ort: bool, output: Path | None, optimization: str, type_reduction: bool,
    states: tuple[str, ...], feeds: tuple[str, ...], layout: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Write MODEL as .ort plus the operator configuration of a minimal ONNX Runtime build.

    The .ort file is checked against MODEL on one synthetic batch; --state, --feed and
    --layout describe the inputs of that check run for a model without rnnedge metadata.
    """
    from rnnedge.runtime.ort_format import convert_to_ort

    if not to_ort:
        raise InputError("no target format given; pass --ort (the only format so far)")
    result = convert_to_ort(
        model, output, optimization=optimization, type_reduction=type_reduction,
        **state_and_feed_arguments(states, feeds), layout=layout,
    )  # fmt: skip
    if as_json:
        emit_json(result.as_dict())
        return
    click.echo(f"wrote {result.model} ({result.size_bytes:,} bytes)")
    click.echo(f"wrote {result.config}: {len(result.operators)} opset lines")
    for line in result.operators:
        click.echo(f"  {line}")
    click.echo(f"outputs match the .onnx model: max abs error {result.max_abs_error:.3g}")
    for note in result.notes:
        click.echo(f"note: {note}")
