"""The package's error tree and the exit codes the CLI maps them to.

Exit codes:
    0  success
    1  unexpected internal error (a bug; rerun with -v for the traceback)
    2  usage error: a bad option, a missing or unreadable file, a wrong input
    3  a check failed: export parity or quantization drift above its tolerance
    4  an execution provider was requested and is not available (strict mode)
    5  the model cannot be exported: an unsupported construct or every exporter failed
    130  interrupted (Ctrl-C), as a shell reports a process that SIGINT ended
"""

from __future__ import annotations


class RnnedgeError(Exception):
    """Root of every error rnnedge raises on purpose."""

    exit_code = 1


class InputError(RnnedgeError, ValueError):
    """A file, option or array that rnnedge cannot use as given."""

    exit_code = 2


class MissingDependencyError(RnnedgeError, ImportError):
    """An optional dependency (torch, onnx, sktime) is not installed."""

    exit_code = 2


class ExportError(RnnedgeError):
    """The PyTorch model could not be exported to ONNX."""

    exit_code = 5


class CheckFailedError(RnnedgeError):
    """A numeric check (parity, drift) exceeded its tolerance."""

    exit_code = 3


class ProviderError(RnnedgeError):
    """A requested execution provider is unavailable and fallback is not allowed."""

    exit_code = 4


class RunInterruptedError(RnnedgeError):
    """An interrupted run (Ctrl-C), whose message names the results that were stored."""

    exit_code = 130


class DeviceProfileError(InputError):
    """A device profile is unknown, invalid or cannot be written."""


def require(module: str, extra: str):
    """Import an optional dependency, or raise naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install 'rnnedge[{extra}]'"
        ) from exc
