"""Calling onnxruntime.quantization: its logging and its untyped errors."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from rnnedge.errors import InputError, RnnedgeError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def call_quantizer(step: str, source: Path, function: Callable[[], T]) -> T:
    """Run one onnxruntime.quantization call, turning its errors into `InputError`.

    What the call prints goes to rnnedge's log at debug level: the entropy and percentile
    calibrators print their progress, which would otherwise break `--json` output.
    """
    printed = io.StringIO()
    try:
        with no_root_logging(), contextlib.redirect_stdout(printed):
            return function()
    except RnnedgeError:
        raise
    except Exception as exc:  # onnxruntime's quantizer raises untyped errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{step} of {str(source)!r} failed: {first[:300]}") from exc
    finally:
        for line in printed.getvalue().splitlines():
            if line.strip():
                logger.debug("%s: %s", step, line.strip())


@contextlib.contextmanager
def no_root_logging() -> Iterator[None]:
    """Keep the quantizer's calls to `logging.warning` from configuring the root logger.

    onnxruntime.quantization logs through the root logger, which installs a stderr
    handler on the first call when none exists; a NullHandler prevents that, and its
    messages go to rnnedge's log at debug level instead.
    """
    root = logging.getLogger()
    null = logging.NullHandler()
    added = not root.handlers
    if added:
        root.addHandler(null)

    def demote(record: logging.LogRecord) -> bool:
        if record.name == "root":
            logger.debug("onnxruntime.quantization: %s", record.getMessage())
            return False
        return True

    root.addFilter(demote)
    try:
        yield
    finally:
        root.removeFilter(demote)
        if added:
            root.removeHandler(null)


def preprocess(source: Path, target: Path) -> None:
    """ONNX Runtime's recommended preparation: shape inference and graph optimization."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from rnnedge.runtime.external_data import check_external_data

    if check_external_data(source):
        # quant_pre_process loses a model's external data file (onnxruntime 1.32 looks for
        # it in its own temporary folder), so it gets a copy with the data inside.
        inline = target.with_name(f"{target.stem}.inline.onnx")
        call_quantizer("loading", source, lambda: onnx.save(onnx.load(str(source)), str(inline)))
        source_path = inline
    else:
        source_path = source
    call_quantizer(
        "pre-processing",
        source,
        lambda: quant_pre_process(str(source_path), str(target), skip_symbolic_shape=True),
    )
