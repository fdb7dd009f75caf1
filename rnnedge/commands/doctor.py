"""`rnnedge doctor`: check this host, its onnxruntime and a model before trusting numbers."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.commands._common import devices_dir_option, emit_json, verbosity_options
from rnnedge.errors import CheckFailedError

_MARK = {"ok": "ok", "warning": "WARN", "error": "ERROR"}


@click.command("doctor")
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--device", help="Device profile to check against [default: this host's].")
@devices_dir_option("Folder of the user's device profiles.")
@click.option("--json", "as_json", is_flag=True, help="Print every finding as JSON.")
@verbosity_options
def doctor_command(model: Path | None, device: str | None, devices_dir: Path,
                   as_json: bool) -> None:  # fmt: skip
    """Check the machine, onnxruntime, MODEL and the measurement conditions.

    Exits with 0 when no finding is an error (warnings allowed) and 3 when any is. A
    missing MODEL file or an unknown --device is a usage error (exit code 2).
    """
    from rnnedge.doctor import run_doctor

    report = run_doctor(model, device=device, user_dir=devices_dir)
    if as_json:
        emit_json(report.as_dict())
    else:
        _print_report(report)
    if report.has_errors:
        errors = report.counts()["error"]
        first = next(f for f in report.findings if f.status.value == "error")
        message = first.message.splitlines()[0] if first.message else first.check
        more = f"; {errors - 1} more listed above" if errors > 1 and not as_json else ""
        raise CheckFailedError(
            f"doctor found {_plural(errors, 'error')}, the first in {first.area.value} "
            f"{first.check}: {message}; fix: {first.fix}{more}"
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
