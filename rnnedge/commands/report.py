"""`rnnedge report`: one self-contained HTML page from device profiles and reports."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.commands._common import devices_dir_option, verbosity_options

HTML_SUFFIXES = (".html", ".htm")


@click.command("report")
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write (.html or .htm).",
)
@click.option("--title", default="rnnedge report", show_default=True, help="Page title.")
@devices_dir_option(
    "Folder of the device profiles that 'rnnedge profile' writes; read when it lies under a "
    "FOLDER (hidden folders included) or when this option is given."
)
@verbosity_options
def report_command(folders: tuple[Path, ...], output: Path, title: str, devices_dir: Path) -> None:
    """Build an HTML report from the profiles and reports under FOLDERS [default: .].

    It reads device profiles (*.yaml), export and quantize reports (*.report.json, as
    printed by --json) and demo results (results.json). The walk skips hidden folders and
    rnnedge's shipped catalog, so it adds the devices folder that the other commands use,
    ./.rnnedge/devices in a source checkout, itself.
    """
    from rnnedge._fileio import check_output_path
    from rnnedge.errors import InputError
    from rnnedge.report import build_report

    if output.suffix.lower() not in HTML_SUFFIXES:
        raise InputError(
            f"report output {str(output)!r} must end in .html or .htm; the report is an HTML page"
        )
    check_output_path(output)
    source = click.get_current_context().get_parameter_source("devices_dir")
    explicit = source is not click.core.ParameterSource.DEFAULT
    roots = _report_folders(list(folders) or [Path(".")], devices_dir, explicit)
    summary = build_report(roots, output, title=title)
    for text in summary.notices:
        click.echo(f"note: {text}", err=True)
    measurements = _plural(summary.measurements, "measurement")
    profiles = _plural(len(summary.devices), "device profile")
    click.echo(
        f"wrote {summary.path}: {measurements} from {profiles}, plots: "
        f"{', '.join(summary.plots) or 'none'}"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _report_folders(folders: list[Path], devices_dir: Path, explicit: bool) -> list[Path]:
    """Return `folders`, plus `devices_dir` where it is `explicit` or hidden under one of them.

    The walk of a folder skips hidden folders, such as `.rnnedge/devices`, and a devices
    folder that the walk reaches needs no second entry.
    """
    if not devices_dir.is_dir():
        if explicit:
            from rnnedge.errors import InputError

            raise InputError(
                f"--devices-dir {str(devices_dir)!r} not found; pass an existing folder"
            )
        return folders
    if explicit:
        return [*folders, devices_dir]
    target = devices_dir.resolve()
    for folder in folders:
        root = folder.resolve()
        if target.is_relative_to(root):
            hidden = any(part.startswith(".") for part in target.relative_to(root).parts)
            return [*folders, devices_dir] if hidden else folders
    return folders
