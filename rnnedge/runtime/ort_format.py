"""Conversion to the ONNX Runtime (`.ort`) format for reduced-size runtime builds.

A minimal ONNX Runtime build for a small device includes only the kernels that its models
use and reads only `.ort` files. This module writes both inputs of such a build: the `.ort`
model, saved by ONNX Runtime itself after graph optimization, and the operator
configuration file (one `domain;opset;op,op` line per opset) that the build script takes
as `--include_ops_by_config`. It needs onnxruntime only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.errors import CheckFailedError, InputError
from rnnedge.runtime.session import Session, open_model_file, starts_like_ort

logger = logging.getLogger(__name__)

# Basic optimizations rewrite the graph with standard operators only, so the saved model
# runs on any provider. The extended and full levels fuse nodes into contrib kernels that
# some providers lack, and the file then suits the provider it was converted for.
OPTIMIZATION_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# The .ort file runs the same kernels on the same inputs as the .onnx file, and graph
# optimizations preserve results, so outputs match to float32 rounding.
PARITY_ATOL = 1e-5
# Severity levels of ONNX Runtime's logger: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
ORT_LOG_ERROR = 3
# The summary of the warning that ONNX Runtime 1.32 prints when it saves a model optimized
# at the `all` level.
HARDWARE_SPECIFIC_NOTE = (
    "--optimization all may save layout optimizations for this CPU (NCHWc); run the .ort "
    "file on the same kind of CPU, or convert with --optimization extended or basic"
)


@dataclass(frozen=True)
class OrtConversion:
    """The files written and the check of the `.ort` model against its source."""

    model: Path
    config: Path
    size_bytes: int
    operators: tuple[str, ...]
    max_abs_error: float
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "model": str(self.model),
            "config": str(self.config),
            "size_bytes": self.size_bytes,
            "operators": list(self.operators),
            "max_abs_error": self.max_abs_error,
            "notes": list(self.notes),
        }


def convert_to_ort(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    optimization: str = "basic",
    type_reduction: bool = False,
    *,
    state_pairs: Sequence[tuple[str, str]] | None = None,
    feeds: Mapping[str, Any] | None = None,
    layout: str | None = None,
) -> OrtConversion:
    """Write `output` (`.ort`) and its operator configuration beside it.

    Args:
        model: the `.onnx` model.
        output: the `.ort` file [default: the model's path with the suffix `.ort`].
        optimization: `basic`, `extended` or `all`; the graph optimizations applied
            before saving (see `OPTIMIZATION_LEVELS`).
        type_reduction: also record the element types each operator needs, for builds
            with `--enable_reduced_operator_type_support`.
        state_pairs: (state input, state output) names for a model whose metadata names
            none; in the check run those inputs start at zero (as `Session` takes them).
        feeds: constant inputs of the check run by name (as `Session` takes them).
        layout: `batch-major` or `time-major`, the axis order of the check run's
            sequence input for a model whose metadata records none (as `Session` takes
            it); None infers it.

    Raises:
        InputError: the model cannot be read, an option is invalid, or an input that
            looks like a recurrent state is neither paired nor fed.
        CheckFailedError: the `.ort` model computes something else than the source.
    """
    source = open_model_file(model)
    if source.suffix.lower() == ".ort" or starts_like_ort(source):
        raise InputError(f"{str(source)!r} is already in the ORT format; pass the .onnx model")
    target = Path(output) if output is not None else source.with_suffix(".ort")
    if target.suffix.lower() != ".ort":
        raise InputError(f"output {str(target)!r} must end in .ort")
    if optimization not in OPTIMIZATION_LEVELS:
        choices = ", ".join(OPTIMIZATION_LEVELS)
        raise InputError(f"unknown optimization level {optimization!r}; choose one of: {choices}")
    suffix = (
        ".required_operators_and_types.config" if type_reduction else ".required_operators.config"
    )
    config_target = target.with_name(target.stem + suffix)

    with _staging_folder(target.parent) as staging:
        staged_model = staging / target.name
        staged_config = staging / config_target.name
        options = ort.SessionOptions()
        options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
        options.optimized_model_filepath = str(staged_model)
        options.add_session_config_entry("session.save_model_format", "ORT")
        # Keep ONNX Runtime's own warnings off the terminal: at the `all` level it warns
        # that the saved model may hold hardware-specific optimizations, which
        # `OrtConversion.notes` states in one line instead. Errors still raise.
        options.log_severity_level = ORT_LOG_ERROR
        try:
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
            raise InputError(f"onnxruntime cannot load {str(source)!r}: {first}") from exc
        error = _compare(source, staged_model, state_pairs, feeds, layout)
        if error > PARITY_ATOL:
            raise CheckFailedError(
                f"the .ort model differs from {source.name} by {error:.3g}, above "
                f"{PARITY_ATOL:g}; convert with --optimization basic"
            )
        _write_operator_config(staged_model, staged_config, target.name, type_reduction)
        operators = _config_operators(staged_config)
        os.replace(staged_model, target)
        os.replace(staged_config, config_target)
    notes = (HARDWARE_SPECIFIC_NOTE,) if optimization == "all" else ()
    return OrtConversion(target, config_target, target.stat().st_size, operators, error, notes)


@contextlib.contextmanager
def _staging_folder(parent: Path) -> Iterator[Path]:
    """A temporary folder beside the outputs, so that the final renames are atomic."""
    if not parent.is_dir():
        raise InputError(f"output directory {str(parent)!r} does not exist; create it first")
    try:
        folder = Path(tempfile.mkdtemp(prefix=".rnnedge-ort-", dir=parent))
    except OSError as exc:
        raise InputError(
            f"cannot write to {str(parent)!r}: {exc.strerror}; pass -o with an .ort path in "
            "a writable folder"
        ) from exc
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _compare(
    source: Path,
    converted: Path,
    state_pairs: Sequence[tuple[str, str]] | None,
    feeds: Mapping[str, Any] | None,
    layout: str | None = None,
) -> float:
    """Largest absolute output difference of the two files on one synthetic batch.

    The batch has 2 sequences of 17 steps, or the sizes that the model's inputs fix.
    """
    from rnnedge.profiling.synthetic import check_inputs, measured_sizes, synthetic_input

    inputs = {"state_pairs": state_pairs, "feeds": feeds, "layout": layout}
    reference = Session(source, provider="cpu", threads=1, normalize=False, **inputs)
    check_inputs(reference, check_run=True)
    batch, seq_len = measured_sizes(reference, default_batch=2, default_seq_len=17)
    candidate = Session(converted, provider="cpu", threads=1, normalize=False, **inputs)
    feed = synthetic_input(reference, batch, seq_len, check_run=True)
    expected = reference.run_prepared(feed)
    actual = candidate.run_prepared(feed)
    error = 0.0
    for name, value in expected.items():
        if np.issubdtype(value.dtype, np.floating):
            difference = np.abs(actual[name].astype(np.float64) - value.astype(np.float64))
            error = max(error, float(difference.max()) if difference.size else 0.0)
    return error


def _write_operator_config(
    model: Path, config: Path, final_name: str, type_reduction: bool
) -> None:
    """Write the operator configuration of `model`, naming it `final_name` in the header."""
    from onnxruntime.tools.ort_format_model import create_config_from_models

    # The tool reports each file it writes at INFO level on its own handler.
    tool_logger = logging.getLogger("ort_format_model.utils")
    level = tool_logger.level
    tool_logger.setLevel(logging.WARNING)
    try:
        create_config_from_models([model], config, type_reduction)
    finally:
        tool_logger.setLevel(level)
    # The header lists the models it was made from ("# - PATH"), here the staged file in
    # the temporary folder, which is renamed once the conversion succeeds.
    lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
    staged = f"# - {model}"
    lines = [f"# - {final_name}\n" if line.rstrip("\n") == staged else line for line in lines]
    config.write_text("".join(lines), encoding="utf-8")


def _config_operators(config: Path) -> tuple[str, ...]:
    lines = config.read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line and not line.startswith("#"))
