"""Reading input arrays from files and checking them against a model's inputs."""

from __future__ import annotations

import logging
import os
import re
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import InputError
from rnnedge.runtime.layout import axis_kind

logger = logging.getLogger(__name__)

# The name `rnnedge export` gives the input that contains the lengths of a padded batch.
LENGTHS_INPUT = "lengths"
# The effect of a NaN or infinite input on the outputs, for the `--nonfinite warn` warning.
# With onnxruntime 1.32, its LSTM and GRU kernels do not pass a NaN on but return finite
# values for the later steps (tests/test_streaming.py checks both).
NONFINITE_EFFECT = (
    "ONNX Runtime's LSTM and GRU return finite but wrong values for it instead of NaN, "
    "so the outputs are unreliable"
)

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


# The first bytes of each binary format; `np.load` takes a file without them for a pickle.
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


def load_array_file(path: str | os.PathLike[str]) -> np.ndarray | dict[str, np.ndarray]:
    """Load `.npy` (one array), `.npz` (arrays by input name) or `.csv` (time along rows).

    Files are read with `allow_pickle=False`: a pickled object array is rejected.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"input path {str(path)!r} is a directory; pass a .npy, .npz or .csv file")
    if not path.is_file():
        raise InputError(
            f"input file {str(path)!r} not found; pass an existing .npy, .npz or .csv file"
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _load_csv(path)
    if suffix not in (".npy", ".npz"):
        raise InputError(
            f"unsupported input file type {suffix or '(none)'!r} for {str(path)!r}; "
            "use .npy, .npz or .csv"
        )
    _check_magic(path, suffix)
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if "pickle" in str(exc):
            raise InputError(
                f"cannot read {str(path)!r} as {suffix[1:]}: it contains an object array "
                "(pickled data), which rnnedge does not load; save a numeric array instead"
            ) from exc
        raise InputError(
            f"cannot read {str(path)!r} as {suffix[1:]}: {_first_line(exc)}; check that the "
            "file is complete and was written by numpy (np.save or np.savez)"
        ) from exc


def _check_magic(path: Path, suffix: str) -> None:
    """Reject a file whose first bytes are not those of its format."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    if suffix == ".npy":
        valid = head.startswith(_NPY_MAGIC)
        reason, writer = "it does not start with the NPY magic string", "np.save"
    else:
        valid = head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC))
        reason, writer = "it is not a zip archive", "np.savez"
    # An empty file falls through to np.load, whose error reports it as incomplete.
    if head and not valid:
        raise InputError(
            f"input file {str(path)!r} is not a valid {suffix} file ({reason}); write it "
            f"with numpy's {writer}"
        )


def _load_csv(path: Path) -> np.ndarray:
    """Read a CSV of numbers: one row per time step, one column per feature.

    Fields are separated by commas, or by semicolons or tabs where the first row that is
    not blank or a comment has those and no comma. A UTF-8 byte order mark is skipped. A
    first row whose fields are all non-numbers is taken as a header of column names and
    skipped. Blank lines and lines starting with `#` are skipped. A separator at the end of
    every data row (one empty final field on each) is ignored. Any other field that is not
    a number, and a row with another field count than the first, raise `InputError`
    naming the line.
    """
    try:
        # utf-8-sig drops the byte order mark that Excel's "CSV UTF-8" writes.
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(
            f"CSV file {str(path)!r} is not UTF-8 text (byte {exc.start}); write one row of "
            "comma-separated numbers per time step"
        ) from exc
    except OSError as exc:
        raise InputError(f"cannot read CSV file {str(path)!r}: {exc.strerror}") from exc
    delimiter = _csv_delimiter(path, lines)
    start = _first_data_line(lines, delimiter)
    if not any(_is_csv_data(line) for line in lines[start:]):
        _check_lone_row(path, lines, delimiter)
    trimmed = _drop_trailing_separator(lines, start, delimiter)
    if trimmed is not None:
        logger.info("ignoring the separator at the end of every row of %s", path.name)
        lines = trimmed
    with warnings.catch_warnings():
        # numpy warns about input without rows; the error below reports it in one line.
        warnings.filterwarnings("ignore", message=".*input contained no data")
        try:
            # Parsed as float64, so that a value beyond the float32 range is not read as inf.
            array = np.loadtxt(lines[start:], delimiter=delimiter, dtype=np.float64, ndmin=2)
        except ValueError as exc:
            # numpy's parser is fast, but its row numbers start at 0 after the skipped lines.
            # Scan the lines again to name the line and the field at fault.
            _check_csv_lines(path, lines, start, delimiter)
            raise InputError(
                f"cannot read CSV file {str(path)!r}: {_first_line(exc)}; write one row of "
                "comma-separated numbers per time step"
            ) from exc
    if array.size == 0:
        raise InputError(
            f"CSV file {str(path)!r} contains no numbers; write one row per time step and "
            "one column per feature"
        )
    finite = np.abs(array[np.isfinite(array)])
    if finite.size and finite.max() > np.finfo(np.float32).max:
        # Kept as float64: the input check then names the value beyond the float32 range.
        return array
    return array.astype(np.float32)


def _csv_delimiter(path: Path, lines: Sequence[str]) -> str:
    """Return the field separator of a CSV file: ",", or ";" or a tab where the first row
    that is not blank or a comment has that and no comma."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if ";" in text and "," in text:
            raise InputError(
                f"CSV file {str(path)!r} line {number} contains both ';' and ','; separate "
                "the fields with one of ',', ';' or a tab, and write numbers with a decimal "
                "point (0.5, not 0,5)"
            )
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs")):
            if delimiter in text and "," not in text:
                logger.info("reading CSV file %s with %s between fields", path.name, name)
                return delimiter
        return ","
    return ","


def _is_csv_data(line: str) -> bool:
    """Return whether a CSV line contains fields: it is neither blank nor a `#` comment."""
    text = line.strip()
    return bool(text) and not text.startswith("#")


def _csv_fields(line: str, delimiter: str) -> list[str]:
    """Split a CSV line into fields without surrounding whitespace.

    The line is split before it is stripped, so that a tab separator at either end of
    the line still delimits an empty field.
    """
    return [field.strip() for field in line.split(delimiter)]


def _first_data_line(lines: Sequence[str], delimiter: str = ",") -> int:
    """Return the index of the first line to parse: after a header row, if there is one."""
    for index, line in enumerate(lines):
        if not _is_csv_data(line):
            continue
        if all(_csv_number(field) is None for field in _csv_fields(line, delimiter)):
            return index + 1
        return index
    return len(lines)


def _drop_trailing_separator(lines: Sequence[str], start: int, delimiter: str) -> list[str] | None:
    """Return `lines` without the final separator of each data row from `start` on, or
    None unless every such row ends with one.

    Some spreadsheet exports end every row with a separator. Where only some rows end
    with one, the caller parses the lines unchanged and `_check_csv_lines` reports the
    empty field.
    """
    trimmed = list(lines)
    rows = 0
    for index in range(start, len(lines)):
        if not _is_csv_data(lines[index]):
            continue
        fields = _csv_fields(lines[index], delimiter)
        if len(fields) < 2 or fields[-1]:
            return None
        trimmed[index] = delimiter.join(fields[:-1])
        rows += 1
    return trimmed if rows else None


def _check_lone_row(path: Path, lines: Sequence[str], delimiter: str) -> None:
    """Raise `InputError` where the only data row, taken as a header, is numbers in
    another format: separated by spaces, or quoted.

    A row of column names alone still gives the error that the file contains no numbers.
    """
    number, text = next(
        ((n, line.strip()) for n, line in enumerate(lines, start=1) if _is_csv_data(line)),
        (0, ""),
    )
    tokens = [token for token in re.split(r"[\s,;\"']+", text) if token]
    if not tokens or any(_csv_number(token) is None for token in tokens):
        return
    where = f"CSV file {str(path)!r} line {number}: {text[:40]!r}"
    if '"' in text or "'" in text:
        raise InputError(
            f"{where} contains numbers in quotes, which are not read as numbers; write the "
            "numbers without quotes, one row per time step"
        )
    raise InputError(
        f"{where} is not numbers separated by commas, semicolons or tabs; separate the "
        "numbers with commas, one row per time step"
    )


def _check_csv_lines(path: Path, lines: Sequence[str], start: int, delimiter: str = ",") -> None:
    """Raise `InputError` for the first field that is empty or not a number, or the first
    ragged row."""
    width = None
    for number, line in enumerate(lines[start:], start=start + 1):
        if not _is_csv_data(line):
            continue
        fields = _csv_fields(line, delimiter)
        for position, field in enumerate(fields, start=1):
            if not field:
                rule = (
                    " (a separator at the end of a row is ignored only when every row ends "
                    "with one)"
                    if position == len(fields)
                    else ""
                )
                raise InputError(
                    f"CSV file {str(path)!r} line {number}: field {position} of "
                    f"{len(fields)} is empty; write a number in every field{rule}"
                )
            if _csv_number(field) is None:
                raise InputError(
                    f"CSV file {str(path)!r} line {number}: field {field[:40]!r} is not a "
                    "number; write one number per field (only a first row of column names "
                    "is skipped)"
                )
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            raise InputError(
                f"CSV file {str(path)!r} line {number} has {len(fields)} fields, but the "
                f"first row has {width}; give every row one value per feature"
            )


def _csv_number(field: str) -> float | None:
    """Parse one CSV field as a number, or return None.

    Python's `float` also takes digit separators (`1_000`), which no CSV writer emits, so
    a field with an underscore is not a number.
    """
    if "_" in field:
        return None
    try:
        return float(field)
    except ValueError:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe(array: np.ndarray) -> str:
    """Summarize an array as dtype, shape and range, never its raw values."""
    summary = f"{array.dtype}{list(array.shape)}"
    if array.size and np.issubdtype(array.dtype, np.number):
        summary += f" min={np.nanmin(array):.4g} max={np.nanmax(array):.4g}"
    return summary


def as_array(value: Any, label: str) -> np.ndarray:
    """Return `value` as a numpy array: a list, tuple or number becomes one.

    Raises:
        InputError: `value` is of another type, named by `label`.
    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list | tuple | int | float | np.generic) and not isinstance(value, bool):
        try:
            return np.asarray(value)
        except ValueError as exc:  # ragged nested lists
            raise InputError(
                f"{label} is a {type(value).__name__} that does not form an array "
                f"({_first_line(exc)}); pass a numpy array"
            ) from exc
    raise InputError(f"{label} is a {type(value).__name__}, not an array; pass a numpy array")


def check_sequence_input(
    array: np.ndarray,
    name: str,
    expected_shape: Sequence[int | str | None],
    expected_type: str,
    source: str = "input",
    nonfinite: str = "error",
    batch_first: bool | None = None,
) -> np.ndarray:
    """Check one input array against the model's declared shape and element type.

    Float arrays of another width are cast to the model's float type; a rank-2 array
    for a rank-3 input is taken as one sequence and given a batch axis of 1: axis 0 when
    `batch_first`, axis 1 when not, and when None, where the axis names say. NaN or
    infinite values raise `InputError`, or with `nonfinite="warn"` log a warning.

    Returns the array to feed, C-contiguous and of the model's dtype.
    """
    array = as_array(array, f"{source} for {name!r}")
    array = _check_element_type(array, name, expected_type, source, "model input")
    rank = len(expected_shape)
    if array.ndim == rank - 1 and rank == 3:
        logger.info("%s has rank 2; running it as one sequence (batch of 1)", source)
        if batch_first is None:
            batch_first = _batch_axis_first(expected_shape)
        array = array[np.newaxis] if batch_first else array[:, np.newaxis]
    if array.ndim != rank:
        raise InputError(
            f"{source} has shape {tuple(array.shape)}, but model input {name!r} expects "
            f"rank {rank} {_format_shape(expected_shape)}"
        )
    for axis, (size, want) in enumerate(zip(array.shape, expected_shape, strict=True)):
        if isinstance(want, int) and want > 0 and size != want:
            raise InputError(
                f"{source} has shape {tuple(array.shape)}, but model input {name!r} "
                f"expects {_format_shape(expected_shape)}: axis {axis} must be {want}"
            )
        if size == 0:
            raise InputError(
                f"{source} has shape {tuple(array.shape)} with an empty axis {axis}; "
                "every axis needs at least one element"
            )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        _report_nonfinite(array, source, nonfinite)
    return np.ascontiguousarray(array)


def check_state_input(
    array: np.ndarray,
    name: str,
    expected_shape: Sequence[int | None],
    expected_type: str,
    source: str = "state",
    nonfinite: str = "error",
    batch: int | None = None,
) -> np.ndarray:
    """Check a start value of a state input against its shape and element type.

    Args:
        expected_shape: the state's shape for the batch of the data, or None on an axis
            whose size is not known yet (the batch, before the first chunk of a stream).
        batch: the batch size of the data, for the message.

    The element type, range and NaN rules are those of `check_sequence_input`.
    Returns the array to feed, C-contiguous and of the model's dtype.
    """
    array = as_array(array, f"{source} for state input {name!r}")
    array = _check_element_type(array, name, expected_type, source, "state input")
    fits = array.ndim == len(expected_shape) and all(
        want is None or size == want
        for size, want in zip(array.shape, expected_shape, strict=False)
    )
    if not fits:
        raise InputError(
            f"{source} has shape {tuple(array.shape)}, but state input {name!r} expects "
            f"{_format_shape(expected_shape)}"
            + (f" for the batch of {batch} sequences" if batch is not None else "")
            + "; give the state in that shape, or leave it out to start from zero"
        )
    if array.size == 0:
        raise InputError(
            f"{source} has shape {tuple(array.shape)}, which is empty; give a state for "
            "every sequence of the batch"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        _report_nonfinite(array, source, nonfinite)
    return np.ascontiguousarray(array)


def _check_element_type(
    array: np.ndarray, name: str, expected_type: str, source: str, role: str
) -> np.ndarray:
    """Return `array` in the element type of the model's input after a type and range check.

    Args:
        role: the kind of input in messages: "model input" or "state input".
    """
    target = _ORT_TO_NUMPY.get(expected_type)
    # dtype.kind instead of np.issubdtype: this runs on every streaming step.
    kind = np.dtype(target).kind if target is not None else ""
    if kind == "f":
        if array.dtype.kind in "USOVM":
            # Text, objects, records and dates have no float value to convert to.
            raise InputError(
                f"{source} has dtype {array.dtype}, not numbers, but {role} {name!r} "
                f"expects {np.dtype(target).name}; save a numeric array instead"
            )
        if array.dtype.kind != "f":
            raise InputError(
                f"{source} has dtype {array.dtype}, but {role} {name!r} expects "
                f"{np.dtype(target).name}; convert it with array.astype('{np.dtype(target).name}')"
            )
        if array.dtype != target:
            limit = np.finfo(target).max
            finite = array[np.isfinite(array)]
            if finite.size and np.abs(finite).max() > limit:
                raise InputError(
                    f"{source} has values up to {np.abs(finite).max():.3g}, beyond the "
                    f"{np.dtype(target).name} range ({limit:.3g}); rescale the values"
                )
            logger.debug("casting %s from %s to %s", name, array.dtype, np.dtype(target).name)
            array = array.astype(target)
    elif kind in ("i", "u"):
        array = _check_integer_input(array, name, np.dtype(target), source)
    return array


def _report_nonfinite(array: np.ndarray, source: str, nonfinite: str) -> None:
    """Raise `InputError` for NaN or infinite values, or with `nonfinite="warn"` log a warning."""
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if nonfinite != "warn":
        raise InputError(
            f"{source} contains {bad} NaN or infinite values; clean or impute them "
            "first, or pass --nonfinite warn to run anyway"
        )
    logger.warning("%s contains %d NaN or infinite values; %s", source, bad, NONFINITE_EFFECT)


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
    return axis_kind(shape[0]) != "time"


def _format_shape(shape: Sequence[int | str | None]) -> str:
    parts = [str(dim) if dim not in (None, "") else "?" for dim in shape]
    return "(" + ", ".join(parts) + ")"
