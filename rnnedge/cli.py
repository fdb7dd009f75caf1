"""The `rnnedge` command line: each command parses options and calls one library function.

The commands live in `rnnedge.commands`, one module each; this module builds the group
and turns errors into one line on stderr and an exit code (see `rnnedge.errors`).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import traceback

import click

from rnnedge import __version__
from rnnedge.commands import demo, export, profile, quantize, run
from rnnedge.commands._common import configure_logging, verbosity, verbosity_options
from rnnedge.commands.convert import convert_command
from rnnedge.commands.devices import devices_command
from rnnedge.commands.doctor import doctor_command
from rnnedge.commands.report import report_command
from rnnedge.errors import RnnedgeError

FALLBACK_LOGGER = "rnnedge.runtime.providers.fallback"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rnnedge")
@verbosity_options
def cli() -> None:
    """Export, quantize, run and profile PyTorch LSTM and GRU models on edge devices."""
    configure_logging()
    # A provider fallback is never silent: its warning is the one that -q keeps. The name
    # is that of `rnnedge.runtime.providers.fallback_logger`, spelled out so that the CLI
    # does not import onnxruntime before a command needs it.
    logging.getLogger(FALLBACK_LOGGER).setLevel(logging.WARNING)


cli.add_command(export.export_command)
cli.add_command(quantize.quantize_command)
cli.add_command(run.run_command)
cli.add_command(profile.profile_command)
cli.add_command(demo.demo_command)
cli.add_command(doctor_command)
cli.add_command(report_command)
cli.add_command(devices_command)
cli.add_command(convert_command)


class _PipeSafeStdout:
    """Standard output that keeps the command running after its reader closes the pipe.

    `rnnedge profile --sweep ... | head -1` must still measure and store every point, so
    a write or flush that meets a closed pipe sends the rest of the output to /dev/null
    instead of raising.
    """

    def __init__(self, stream) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop_output()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop_output()

    def _drop_output(self) -> None:
        if self.closed_by_reader:
            return
        self.closed_by_reader = True
        # Point file descriptor 1 at /dev/null, so that the final flush at exit (and any
        # native code writing there) no longer meets the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn errors into one line and an exit code."""
    stdout = sys.stdout
    guarded = isinstance(stdout, io.TextIOWrapper) and not stdout.isatty()
    if guarded:
        sys.stdout = _PipeSafeStdout(stdout)
    try:
        return _run(argv)
    finally:
        if guarded:
            sys.stdout = stdout


def _run(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="rnnedge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort as exc:
        # click turns Ctrl-C into Abort; an Abort of its own (a declined prompt) is rare.
        reason = "interrupted" if isinstance(exc.__cause__, KeyboardInterrupt) else "aborted"
        click.echo(f"error: {reason}", err=True)
        return 130
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "rnnedge"
        click.echo(f"error: {_one_line(exc.format_message())}; see '{command} --help'", err=True)
        return 2
    except RnnedgeError as exc:
        if verbosity() > 0:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:  # the last resort for bugs: one line unless -v
        if _interrupted(exc):
            # Ctrl-C inside the import of a compiled module, such as onnxruntime's, comes
            # out as an ImportError caused by the KeyboardInterrupt.
            click.echo("error: interrupted", err=True)
            return 130
        if verbosity() > 0:
            traceback.print_exc()
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(
            f"error: internal error: {type(exc).__name__}: {first_line} "
            "(rerun with -v for the traceback)",
            err=True,
        )
        return 1
    return 0


def _interrupted(exc: BaseException) -> bool:
    """Return whether a KeyboardInterrupt caused `exc`, directly or further down its chain."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _one_line(message: str) -> str:
    """Join click's message onto one line, without the full stop that '; see' would follow.

    click lists the choices of a missing option on lines of their own, tab-indented.
    """
    return " ".join(message.split()).removesuffix(".")


if __name__ == "__main__":
    sys.exit(main())
