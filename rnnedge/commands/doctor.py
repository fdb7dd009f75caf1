"""`rnnedge doctor`: check this host, its onnxruntime and a model before trusting numbers."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.commands._common import emit_json, verbosity_options
from rnnedge.errors import CheckFailedError

_MARK = {"ok": "ok", "warning": "WARN", "error": "ERROR"}


@click.command("doctor")
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--device", help="Device profile to check against [default: this host's].")
@click.option(
    "--devices-dir",
    type=click.Path(path_type=Path),
    default=Path("devices"),
    show_default=True,
    help="Folder of the user's device profiles.",
)
@click.option("--json", "as_json", is_flag=True, help="Print every finding as JSON.")
@verbosity_options
def doctor_command(model: Path | None, device: str | None, devices_dir: Path,
                   as_json: bool) -> None:  # fmt: skip
    """Check the machine, onnxruntime, MODEL and the measurement conditions.

    Exits with 0 when no finding is an error (warnings allowed) and 3 when any is.
    """
    from rnnedge.doctor import run_doctor

    report = run_doctor(model, device=device, user_dir=devices_dir)
    if as_json:
        emit_json(report.as_dict())
    else:
        _print_report(report)
    if report.has_errors:
        errors = report.counts()["error"]
        raise CheckFailedError(
            f"doctor found {_plural(errors, 'error')}; apply the fix listed with each"
        )


def _print_report(report) -> None:
    area = None
    for finding in report.findings:
        if finding.area is not area:
            area = finding.area
            click.echo(f"\n{area.value}")
        click.echo(f"  {_MARK[finding.status.value]:<6} {finding.check:<18} {finding.message}")
        if finding.fix:
            click.echo(f"  {'':<6} {'':<18} fix: {finding.fix}")
    counts = report.counts()
    click.echo(
        f"\n{_plural(counts['error'], 'error')}, {_plural(counts['warning'], 'warning')}, "
        f"{counts['ok']} ok" + (f" (device {report.device})" if report.device else "")
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
