"""`rnnedge report`: one self-contained HTML page from device profiles and reports."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.commands._common import verbosity_options


@click.command("report")
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write.",
)
@click.option("--title", default="rnnedge report", show_default=True, help="Page title.")
@verbosity_options
def report_command(folders: tuple[Path, ...], output: Path, title: str) -> None:
    """Build an HTML report from the profiles and reports under FOLDERS [default: .].

    It reads device profiles (*.yaml), export and quantize reports (*.report.json, as
    printed by --json) and demo results (results.json).
    """
    from rnnedge._fileio import check_output_path
    from rnnedge.report import build_report

    check_output_path(output)
    summary = build_report(list(folders) or [Path(".")], output, title=title)
    for text in summary.notices:
        click.echo(f"note: {text}", err=True)
    click.echo(
        f"wrote {summary.path}: {summary.measurements} measurements from "
        f"{len(summary.devices)} device profiles, plots: {', '.join(summary.plots) or 'none'}"
    )
