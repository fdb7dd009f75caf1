"""Reading input arrays from files and checking them against a model's inputs."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnedge.errors import InputError

logger = logging.getLogger(__name__)

# The name `rnnedge export` gives the input that contains the lengths of a padded batch.
LENGTHS_INPUT = "lengths"

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def load_array_file(path: str | os.PathLike[str]) -> np.ndarray | dict[str, np.ndarray]:
    """Load `.npy` (one array), `.npz` (arrays by input name) or `.csv` (time along rows).

    Files are read with `allow_pickle=False`: a pickled object array is rejected.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"input file {str(path)!r} not found; pass an existing .npy, .npz or .csv file"
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        if suffix == ".csv":
            return _load_csv(path)
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(
            f"cannot read {str(path)!r} as {suffix[1:]}: {_first_line(exc)}; check that "
            "the file is complete and was written by numpy"
        ) from exc
    raise InputError(
        f"unsupported input file type {suffix or '(none)'!r} for {str(path)!r}; "
        "use .npy, .npz or .csv"
    )


def _load_csv(path: Path) -> np.ndarray:
    """Read a CSV of numbers: one row per time step, one column per feature."""
    with warnings.catch_warnings():
        # numpy warns about a file without rows; the error below reports it in one line.
        warnings.filterwarnings("ignore", message="loadtxt: input contained no data")
        try:
            array = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
        except ValueError:
            # A header row of column names is the usual cause; skip it and try once more.
            array = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2, skiprows=1)
    if array.size == 0:
        raise InputError(
            f"CSV file {str(path)!r} contains no numbers; write one row per time step and "
            "one column per feature"
        )
    return array


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe(array: np.ndarray) -> str:
    """Summarize an array as dtype, shape and range, never its raw values."""
    summary = f"{array.dtype}{list(array.shape)}"
    if array.size and np.issubdtype(array.dtype, np.number):
        summary += f" min={np.nanmin(array):.4g} max={np.nanmax(array):.4g}"
    return summary


def check_sequence_input(
    array: np.ndarray,
    name: str,
    expected_shape: Sequence[int | str | None],
    expected_type: str,
    source: str = "input",
    nonfinite: str = "error",
) -> np.ndarray:
    """Check one input array against the model's declared shape and element type.

    Float arrays of another width are cast to the model's float type; a rank-2 array
    for a rank-3 input is taken as one sequence and given a batch axis of 1. NaN or
    infinite values raise `InputError`, or with `nonfinite="warn"` log a warning.

    Returns the array to feed, C-contiguous and of the model's dtype.
    """
    if not isinstance(array, np.ndarray):
        raise InputError(f"{source} for {name!r} is not a numpy array")
    target = _ORT_TO_NUMPY.get(expected_type)
    expected = _format_shape(expected_shape)
    if target is not None and np.issubdtype(target, np.floating):
        if not np.issubdtype(array.dtype, np.floating):
            raise InputError(
                f"{source} has dtype {array.dtype}, but model input {name!r} expects "
                f"{np.dtype(target).name}; convert it with array.astype('float32')"
            )
        if array.dtype != target:
            limit = np.finfo(target).max
            finite = array[np.isfinite(array)]
            if finite.size and np.abs(finite).max() > limit:
                raise InputError(
                    f"{source} has values up to {np.abs(finite).max():.3g}, beyond the "
                    f"{np.dtype(target).name} range ({limit:.3g}); rescale the input"
                )
            logger.debug("casting %s from %s to %s", name, array.dtype, np.dtype(target).name)
            array = array.astype(target)
    elif target is not None and np.issubdtype(target, np.integer):
        array = _check_integer_input(array, name, np.dtype(target), source)
    rank = len(expected_shape)
    if array.ndim == rank - 1 and rank == 3:
        logger.info("%s has rank 2; running it as one sequence (batch of 1)", source)
        array = array[np.newaxis] if _batch_axis_first(expected_shape) else array[:, np.newaxis]
    if array.ndim != rank:
        raise InputError(
            f"{source} has shape {tuple(array.shape)}, but model input {name!r} expects "
            f"rank {rank} {expected}"
        )
    for axis, (size, want) in enumerate(zip(array.shape, expected_shape, strict=True)):
        if isinstance(want, int) and want > 0 and size != want:
            raise InputError(
                f"{source} has shape {tuple(array.shape)}, but model input {name!r} "
                f"expects {expected}: axis {axis} must be {want}"
            )
        if size == 0:
            raise InputError(
                f"{source} has shape {tuple(array.shape)} with an empty axis {axis}; "
                "every axis needs at least one element"
            )
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        if nonfinite != "warn":
            raise InputError(
                f"{source} contains {bad} NaN or infinite values; clean or impute them "
                "first, or pass --nonfinite warn to run anyway"
            )
        logger.warning("%s contains %d NaN or infinite values; the outputs may be NaN", source, bad)
    return np.ascontiguousarray(array)


def _check_integer_input(array: np.ndarray, name: str, target: np.dtype, source: str) -> np.ndarray:
    """Cast an integer array to the model's integer type when every value fits."""
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(
            f"{source} has dtype {array.dtype}, but model input {name!r} expects "
            f"{target.name}; convert it with array.astype('{target.name}')"
        )
    if array.dtype == target:
        return array
    limits = np.iinfo(target)
    if array.size and (array.min() < limits.min or array.max() > limits.max):
        raise InputError(
            f"{source} has values from {array.min()} to {array.max()}, beyond the "
            f"{target.name} range of model input {name!r}; pass smaller values"
        )
    return array.astype(target)


def check_lengths(lengths: np.ndarray, batch: int, seq_len: int, source: str) -> None:
    """Check the lengths of a padded batch: one per sequence, each from 1 to `seq_len`.

    ONNX Runtime's recurrent operators accept a length of 0 and return zeros for that
    sequence, where PyTorch's `pack_padded_sequence` raises, so an exported model would
    silently return an output for an empty sequence.
    """
    if lengths.ndim != 1 or lengths.shape[0] != batch:
        raise InputError(
            f"{source} has shape {tuple(lengths.shape)}, but the input batch has {batch} "
            "sequences; give one length per sequence"
        )
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > seq_len:
        raise InputError(
            f"{source} has lengths from {low} to {high}, but each must be from 1 to {seq_len} "
            "(the padded length of the input); drop empty sequences from the batch and pad "
            "the input to the longest sequence"
        )


def _batch_axis_first(shape: Sequence[int | str | None]) -> bool:
    first = shape[0]
    return not (isinstance(first, str) and first.lower().startswith(("seq", "time")))


def _format_shape(shape: Sequence[int | str | None]) -> str:
    parts = [str(dim) if dim not in (None, "") else "?" for dim in shape]
    return "(" + ", ".join(parts) + ")"
