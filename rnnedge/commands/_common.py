"""Options and output helpers shared by the commands."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

logger = logging.getLogger(__name__)

_verbosity = {"level": 0}

PROVIDER_CHOICES = ["auto", "cpu", "cuda", "tensorrt", "arm"]


def verbosity() -> int:
    """The verbosity the user chose: -1 for -q, 0 by default, 1 for -v, 2 for -vv, 3 for
    -vvv."""
    return _verbosity["level"]


def reset_verbosity() -> None:
    _verbosity["level"] = 0


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if not value:
        return
    if param.name == "quiet":
        _verbosity["level"] = -1
    else:
        _verbosity["level"] = max(_verbosity["level"], int(value))
    configure_logging()


def configure_logging() -> None:
    levels = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
    level = levels.get(_verbosity["level"])
    if level is None:
        # -vvv: below DEBUG, which also shows ONNX Runtime's own info and verbose logs.
        from rnnedge.runtime.session import ORT_LOG_LEVEL

        level = ORT_LOG_LEVEL
    package = logging.getLogger("rnnedge")
    package.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in package.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        package.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to `sys.stderr` as it is when a record is emitted.

    `main()` can run several times in one process (tests, notebooks) with stderr replaced
    in between, so a handler bound to the stream of the first run would write to a closed
    file.
    """

    _rnnedge_cli = True  # the mark that tests look for to remove the CLI's handler

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def verbosity_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add -v/-q to a command, so that they work before or after the command name.

    Under -q the command's report lines on stdout are discarded, except a `--json`
    document; errors and warnings go to stderr and stay.
    """
    command = _quiet_stdout(command)
    command = click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, callback=_set_verbosity,
        help="Print errors only.",
    )(command)  # fmt: skip
    return click.option(
        "-v", "--verbose", count=True, expose_value=False, callback=_set_verbosity,
        help="Print progress (-v), debug detail (-vv) and ONNX Runtime's own logs (-vvv); "
        "show tracebacks on errors.",
    )(command)  # fmt: skip


def _quiet_stdout(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        if verbosity() >= 0 or kwargs.get("as_json"):
            return command(*args, **kwargs)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            return command(*args, **kwargs)

    return run


# The `--devices-dir` default when `./devices` is the shipped catalog, as it is at the
# root of an rnnedge source checkout.
CHECKOUT_DEVICES_DIR = Path(".rnnedge") / "devices"


def default_devices_dir() -> Path:
    """Return `./devices`, or `.rnnedge/devices` at the root of the rnnedge source checkout
    that the working directory lies in (whose `devices/` is the shipped catalog), unless
    the working directory has a `devices/` folder of its own."""
    from rnnedge.profiling.catalog import is_catalog_folder

    local = Path("devices")
    if is_catalog_folder(local):
        logger.info(
            "./devices is rnnedge's shipped device catalog; using %s for device profiles",
            CHECKOUT_DEVICES_DIR,
        )
        return CHECKOUT_DEVICES_DIR
    # In a subfolder of a checkout (docs/, say) that has no devices/ yet, the measurements
    # go to the root's folder, as they would from the root, not to a new folder there.
    if local.is_dir():
        return local
    here = Path.cwd()
    for parent in here.parents:
        if is_catalog_folder(parent / "devices"):
            found = Path(os.path.relpath(parent / CHECKOUT_DEVICES_DIR, here))
            logger.info(
                "this folder lies in the rnnedge checkout at %s; using %s for device profiles",
                parent, found,
            )  # fmt: skip
            return found
    return local


def _devices_dir_or_default(ctx: click.Context, param: click.Parameter, value: Any) -> Path:
    return value if value is not None else default_devices_dir()


def devices_dir_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Build the `--devices-dir` option, whose default never points into the shipped catalog."""
    return click.option(
        "--devices-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        callback=_devices_dir_or_default,
        help=f"{help_text} [default: ./devices, or ./{CHECKOUT_DEVICES_DIR} where ./devices is "
        "rnnedge's shipped catalog, as at the root of a source checkout]",
    )


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def state_and_feed_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--state IN=OUT` and `--feed NAME=VALUE` to a command that opens a Session.

    The command receives the raw texts as `states` and `feeds`; `state_and_feed_arguments`
    turns them into the Session's `state_pairs` and `feeds` arguments.
    """
    command = click.option(
        "--feed",
        "feeds",
        multiple=True,
        metavar="NAME=VALUE",
        help="A constant input: a number, comma-separated numbers or a .npy file. Repeatable.",
    )(command)
    return click.option(
        "--state",
        "states",
        multiple=True,
        metavar="IN=OUT",
        help="A state pair: the state input IN starts at zero and, when streaming, is fed "
        "from the output OUT of the previous call. Repeat for each pair; needed where the "
        "model's metadata names none.",
    )(command)


def layout_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--layout batch-major|time-major` to a command that opens a Session.

    The command receives the value as `layout` (None when not given), the Session's
    `layout` argument.
    """
    return click.option(
        "--layout",
        type=click.Choice(["batch-major", "time-major"]),
        default=None,
        help="Axis order of the sequence input for a model whose metadata records none: "
        "batch-major (batch, time, features) or time-major (time, batch, features). "
        "[default: inferred from the axis names, else batch-major]",
    )(command)


def state_and_feed_arguments(states: tuple[str, ...], feeds: tuple[str, ...]) -> dict[str, Any]:
    """Parse `--state` and `--feed` texts into the Session's `state_pairs` and `feeds`."""
    from rnnedge.runtime.feeds import parse_feed_specs
    from rnnedge.runtime.state import parse_state_pairs

    return {
        "state_pairs": parse_state_pairs(states) if states else None,
        "feeds": parse_feed_specs(feeds),
    }


def check_threads_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Check a `--threads` value as a Session does, naming the option in the error."""
    from rnnedge.runtime.options import check_thread_count

    return None if value is None else check_thread_count(value, f"--{param.name}")


def minimum_option(
    minimum: int, fix: str = "", maximum: int | None = None, above: str = ""
) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Build a click callback that rejects a value below `minimum` or above `maximum`,
    naming the option.

    Args:
        fix: a clause appended after a value below `minimum`, such as "pass 0 to skip the
            ranking".
        above: the clause appended after a value above `maximum`.
    """

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        from rnnedge.errors import InputError

        if value is None:
            return value
        if maximum is not None and value > maximum:
            suffix = f"; {above}" if above else ""
            raise InputError(f"{param.opts[0]} must be at most {maximum:,}, got {value:,}{suffix}")
        if value >= minimum:
            return value
        bound = "0 or more" if minimum == 0 else f"at least {minimum}"
        suffix = f"; {fix}" if fix else ""
        raise InputError(f"{param.opts[0]} must be {bound}, got {value}{suffix}")

    return check


def file_identity(path: Path) -> tuple[int, int] | None:
    """Return the inode and modification time of `path`, or None where it does not exist."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def interrupted_output(output: Path, before: tuple[int, int] | None) -> Exception:
    """Build the error for a Ctrl-C in a command that writes `output` in one rename.

    `before` is `file_identity(output)` from before the command started, so the message
    reports whether the file was written, is unchanged, or was never created.
    """
    from rnnedge.errors import RunInterruptedError

    now = file_identity(output)
    if now is None:
        return RunInterruptedError(f"interrupted; nothing was written to {output}")
    if now == before:
        return RunInterruptedError(f"interrupted; {output} is unchanged")
    return RunInterruptedError(f"interrupted after {output} was written")


# The maximum of `--warmup`, and of `--runs` without `--budget-s`: a typo with many more
# digits would keep a command measuring for days.
MAX_RUNS = 10_000_000


def positive_seconds_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Reject a duration option that is not a positive, finite number of seconds."""
    import math

    from rnnedge.errors import InputError

    if value is None or (value > 0 and math.isfinite(value)):
        return value
    raise InputError(f"{param.opts[0]} must be a positive number of seconds, got {value}")
