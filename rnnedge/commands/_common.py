"""Options and output helpers shared by the commands."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

_verbosity = {"level": 0}

PROVIDER_CHOICES = ["auto", "cpu", "cuda", "tensorrt", "arm"]


def verbosity() -> int:
    """The verbosity the user chose: -1 for -q, 0 by default, 1 for -v, 2 for -vv."""
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
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        _verbosity["level"], logging.DEBUG
    )
    package = logging.getLogger("rnnedge")
    package.setLevel(level)
    if not any(getattr(h, "_rnnedge_cli", False) for h in package.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler._rnnedge_cli = True  # type: ignore[attr-defined]
        package.addHandler(handler)


def verbosity_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add -v/-q to a command, so that they work before or after the command name."""
    command = click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, callback=_set_verbosity,
        help="Print errors only.",
    )(command)  # fmt: skip
    return click.option(
        "-v", "--verbose", count=True, expose_value=False, callback=_set_verbosity,
        help="Print progress (-v) and debug detail (-vv); show tracebacks on errors.",
    )(command)  # fmt: skip


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
