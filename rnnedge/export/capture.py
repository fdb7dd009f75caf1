"""Keeping what the exporters print off the terminal, and in the debug log instead.

torch 2.13 prints from several places while it exports:

- the TorchScript-based exporter prints the whole Torch IR graph on stdout when a
  conversion fails, through C++ streams;
- `torch.export` prints the partial FX graph of a failed capture (`def forward(self,
  arg0_1: ...`) on `sys.stderr` with `print`, and logs errors through torch's own logging
  handler, which writes to file descriptor 2;
- C++ code logs to file descriptor 2.

`contextlib.redirect_stdout` and `redirect_stderr` catch only Python writes to
`sys.stdout` and `sys.stderr`, so file descriptors 1 and 2 themselves are pointed at
temporary files meanwhile. Everything captured goes to the debug log (`-vv`).

`torch_notices_to_debug` does the same for the few Python warnings that torch raises while
rnnedge runs the source model (probing its outputs, checking parity) and that the user
cannot act on.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

logger = logging.getLogger(__name__)

_STREAMS = {1: "stdout", 2: "stderr"}
# Openings of torch warnings that go to the debug log. torch 2.13 CPU builds warn once per
# process that oneDNN has no projected LSTM kernel and the default one runs instead.
TORCH_NOTICES = ("LSTM with projections is not supported with oneDNN",)


@contextlib.contextmanager
def capture_output(step: str) -> Iterator[None]:
    """Send what `step` prints on stdout and stderr, from Python or from C++, to the debug log."""
    with _capture_descriptor(1, step), _capture_descriptor(2, step):
        yield


@contextlib.contextmanager
def torch_notices_to_debug() -> Iterator[None]:
    """Log the warnings that open with one of `TORCH_NOTICES` at debug level, not on stderr.

    Other warnings are shown as before. Usable as a decorator.
    """
    with warnings.catch_warnings():
        show_default = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if str(message).startswith(TORCH_NOTICES):
                logger.debug("torch warned: %s: %s", category.__name__, message)
                return
            show_default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _capture_descriptor(descriptor: int, step: str) -> Iterator[None]:
    name = _STREAMS[descriptor]
    redirect = contextlib.redirect_stdout if descriptor == 1 else contextlib.redirect_stderr
    python_output = io.StringIO()
    _flush_streams()
    try:
        saved = os.dup(descriptor)
    except OSError:  # no such file descriptor (a detached process): redirect Python only
        try:
            with redirect(python_output):
                yield
        finally:
            _log_output(step, name, python_output.getvalue())
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), descriptor)
        try:
            with redirect(python_output):
                yield
        finally:
            _flush_streams()
            os.dup2(saved, descriptor)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace") + python_output.getvalue()
            _log_output(step, name, text)


def _log_output(step: str, stream: str, text: str) -> None:
    if text.strip():
        logger.debug("%s printed %d lines on %s:\n%s", step, len(text.splitlines()), stream, text)


def _flush_streams() -> None:
    # Text written before the capture belongs on the terminal, and text written during it
    # belongs in the temporary file, so every buffer in front of the two descriptors is
    # flushed at both ends. C++ streams write through the C library's buffers.
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)
