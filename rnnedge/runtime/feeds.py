"""Constant inputs given as `--feed NAME=VALUE`.

A model from elsewhere may take inputs beside the sequence that stay fixed for a whole
run, such as a sample rate. These helpers turn the command-line spelling into arrays of
the type and shape that the model declares.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import InputError
from rnnedge.runtime.inputs import _ORT_TO_NUMPY as ORT_TO_NUMPY
from rnnedge.runtime.inputs import NONFINITE_EFFECT, describe, load_array_file

logger = logging.getLogger(__name__)


def split_assignment(text: str, option: str, form: str = "NAME=VALUE") -> tuple[str, str]:
    """Split `NAME=VALUE`; both parts must be non-empty.

    Args:
        form: the option's spelling of the two parts, as its help shows it (`IN=OUT` for
            `--state`), for the error message.
    """
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise InputError(f"{option} {text!r} is not {form}; write it as {option} {form}")
    return name.strip(), value.strip()


def parse_feed_specs(specs: Iterable[str]) -> dict[str, str]:
    """Parse `--feed NAME=VALUE` values into a name-to-text mapping."""
    feeds: dict[str, str] = {}
    for spec in specs:
        name, value = split_assignment(spec, "--feed")
        if name in feeds:
            raise InputError(f"input {name!r} is given twice in --feed; give it once")
        feeds[name] = value
    return feeds


def constant_feed(
    value: Any, name: str, shape: Sequence[Any], ort_type: str, nonfinite: str = "error"
) -> np.ndarray:
    """Make the array for a constant input from a number, a comma list, a `.npy` path or an array.

    Text is parsed by the input's element type: floats for a float input, whole numbers for
    an integer input, 0, 1, true or false for a boolean input. Values must fit that type,
    as for `--input`. NaN or infinite values of a float input raise `InputError`, or with
    `nonfinite="warn"` log a warning. The array is reshaped to the declared shape when
    that shape is fully known and has the same number of elements (so that `16000` feeds
    an input of shape [1]).
    """
    target = ORT_TO_NUMPY.get(ort_type)
    option = feed_label(name, value)
    if target is None:
        raise InputError(f"{option}: input {name!r} has type {ort_type}, which --feed cannot fill")
    dtype = np.dtype(target)
    from_array = not isinstance(value, str) or value.lower().endswith(".npy")
    array = _parse_value_text(value, name, dtype) if isinstance(value, str) else np.asarray(value)
    if np.issubdtype(dtype, np.floating):
        # A number from Python (`feeds={"gain": 2}`) is a 0-d integer array here, which is
        # accepted. An integer .npy file is rejected, whatever its rank.
        from_file = isinstance(value, str) and value.lower().endswith(".npy")
        if from_array and (array.ndim > 0 or from_file) and array.dtype.kind in "iub":
            # As for --input: an integer array for a float input is usually the wrong file.
            raise InputError(
                f"{option}: value {describe(array)} for input {name!r} is an {array.dtype} "
                f"array, but the input takes {dtype.name}; convert it with "
                f"array.astype('{dtype.name}')"
            )
        converted = _to_float(array, name, dtype, nonfinite, option)
    elif np.issubdtype(dtype, np.integer):
        converted = _to_integer(array, name, dtype, option)
    else:
        converted = _to_bool(array, name, option)
    return np.ascontiguousarray(_fit_shape(converted, name, shape, option))


def feed_label(name: str, value: Any) -> str:
    """Name a constant in messages: as the `--feed NAME=TEXT` option that gave it, or for
    an array from Python, as its entry in `feeds`."""
    if isinstance(value, str):
        return f"--feed {name}={value}"
    return f"feeds[{name!r}]"


def _fit_shape(value: np.ndarray, name: str, shape: Sequence[Any], option: str) -> np.ndarray:
    """Check a constant against the declared shape of its input; return it in that shape
    where the shape is fully fixed.

    One value fills a fixed shape here, and a shape with a dynamic axis in
    `fill_constant`. Any other value needs the number of values of a fixed shape, or the
    rank and fixed sizes of a shape with dynamic axes.
    """
    fixed = [d for d in shape if isinstance(d, int) and d > 0]
    if len(fixed) == len(shape):
        count = int(np.prod(fixed, dtype=np.int64))
        if value.shape == tuple(shape):
            return value
        if value.size == count:
            return value.reshape(shape)
        if value.size == 1:
            return np.full(shape, value.reshape(()), dtype=value.dtype)
        kind = " (a scalar)" if not shape else ""
        expected = "one value" if count == 1 else f"one value, which fills it, or {count} values"
        raise InputError(
            f"{option}: value {describe(value)} for input {name!r} does not fit its shape "
            f"{list(shape)}{kind}; give {expected}"
        )
    fits = value.ndim == len(shape) and all(
        not (isinstance(want, int) and want > 0) or size == want
        for size, want in zip(value.shape, shape, strict=True)
    )
    if value.size == 1 or fits:
        return value
    raise InputError(
        f"{option}: value {describe(value)} for input {name!r} does not fit its shape "
        f"{list(shape)}; give one value, which fills it, or a .npy array of that shape"
    )


def fill_constant(value: np.ndarray, shape: Sequence[Any], batch: int) -> np.ndarray:
    """Repeat a one-value constant over the declared `shape`, with `batch` on its dynamic axis.

    A value of lower rank than the shape, such as the `0` of `--feed h0=0` for a state of
    shape [1, "batch", 16], becomes an array of that shape for `batch` sequences. Any other
    value, and any value for a shape with more than one dynamic axis, is returned as it is.
    """
    dynamic = [dim for dim in shape if not (isinstance(dim, int) and dim > 0)]
    if value.size != 1 or value.ndim >= len(shape) or len(dynamic) > 1:
        return value
    filled = [dim if isinstance(dim, int) and dim > 0 else batch for dim in shape]
    return np.full(filled, value.reshape(()), dtype=value.dtype)


def _to_float(
    array: np.ndarray, name: str, dtype: np.dtype, nonfinite: str, option: str
) -> np.ndarray:
    """Cast integer or float values to the float type `dtype` after a range check.

    Args:
        option: the name of the constant in messages (see `feed_label`).
    """
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise InputError(
            f"{option}: value of dtype {array.dtype} for input {name!r} cannot become "
            f"{dtype.name}; give numbers"
        )
    values = array.astype(np.float64) if np.issubdtype(array.dtype, np.integer) else array
    finite = np.isfinite(values)
    limit = np.finfo(dtype).max
    if finite.any() and np.abs(values[finite]).max() > limit:
        raise InputError(
            f"{option}: the value of input {name!r} reaches "
            f"{np.abs(values[finite]).max():.3g}, beyond the {dtype.name} range "
            f"({limit:.3g}); give a smaller value"
        )
    bad = int(values.size - np.count_nonzero(finite))
    if bad:
        if nonfinite != "warn":
            raise InputError(
                f"{option}: the value of input {name!r} contains {bad} NaN or infinite "
                "values; give finite values, or pass --nonfinite warn to run anyway"
            )
        logger.warning(
            "%s: the value of input %r contains %d NaN or infinite values; %s",
            option,
            name,
            bad,
            NONFINITE_EFFECT,
        )
    return values.astype(dtype)


def _to_integer(array: np.ndarray, name: str, dtype: np.dtype, option: str) -> np.ndarray:
    """Cast whole numbers to the integer type `dtype` after a range check."""
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise InputError(
            f"{option}: value of dtype {array.dtype} for input {name!r} cannot become "
            f"{dtype.name}; give whole numbers"
        )
    limits = np.iinfo(dtype)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        whole = finite.all() and bool(np.all(np.mod(array, 1) == 0))
        if not whole:
            raise InputError(
                f"{option}: input {name!r} takes whole numbers ({dtype.name}); got "
                f"{array.dtype} values with a fraction, NaN or infinity"
            )
        # float(limits.max) rounds up to a power of two, which is itself out of range.
        out_of_range = array.size and (
            array.min() < float(limits.min) or array.max() >= float(limits.max) + 1
        )
    else:
        out_of_range = array.size and (array.min() < limits.min or array.max() > limits.max)
    if out_of_range:
        raise InputError(
            f"{option}: the value of input {name!r} ranges from {array.min():.6g} to "
            f"{array.max():.6g}, beyond the {dtype.name} range; give values from "
            f"{limits.min} to {limits.max}"
        )
    return array.astype(dtype)


def _to_bool(array: np.ndarray, name: str, option: str) -> np.ndarray:
    if array.dtype == np.bool_:
        return array
    if not np.issubdtype(array.dtype, np.number) or not np.isin(array, (0, 1)).all():
        raise InputError(
            f"{option}: input {name!r} takes booleans; give 0, 1, true or false for each value"
        )
    return array.astype(np.bool_)


def _parse_value_text(text: str, name: str, dtype: np.dtype) -> np.ndarray:
    """Parse a `.npy` path or comma-separated numbers as values of the input's type."""
    if text.lower().endswith((".npz", ".csv")):
        raise InputError(
            f"--feed {name}={text}: --feed reads one array from a .npy file, not a "
            f"{Path(text).suffix} file; save the value with np.save as .npy, or give the "
            "numbers"
        )
    if text.lower().endswith(".npy"):
        path = Path(text)
        if not path.is_file():
            raise InputError(f"--feed {name}={text}: file not found; pass an existing .npy file")
        try:
            # The checks and messages of --input: the magic string, pickled arrays.
            loaded = load_array_file(path)
        except InputError as exc:
            raise InputError(f"--feed {name}={text}: {exc}") from exc
        assert isinstance(loaded, np.ndarray)  # a .npy file contains one array
        return loaded
    parts = [part.strip() for part in text.split(",")]
    if np.issubdtype(dtype, np.floating):
        array = np.asarray([_parse_float(part, name, text, dtype) for part in parts])
    elif np.issubdtype(dtype, np.integer):
        array = np.asarray([_parse_integer(part, name, text, dtype) for part in parts], dtype)
    else:
        array = np.asarray([_parse_bool(part, name, text) for part in parts])
    return array if array.size > 1 else array.reshape(())


def _parse_float(part: str, name: str, text: str, dtype: np.dtype) -> float:
    try:
        number = float(part)
    except ValueError as exc:
        raise InputError(
            f"--feed {name}={text!r}: {part!r} is not a number; give a number, "
            "comma-separated numbers or a .npy file"
        ) from exc
    # float() turns a finite number beyond the double range, such as 1e400, into inf.
    if math.isinf(number) and "inf" not in part.lower():
        raise InputError(
            f"--feed {name}={text!r}: {part} is beyond the {dtype.name} range "
            f"({np.finfo(dtype).max:.3g}); give a smaller value"
        )
    return number


def _parse_integer(part: str, name: str, text: str, dtype: np.dtype) -> int:
    """Parse a whole number, written as an integer (16000) or a float (1.6e4)."""
    try:
        number = int(part)
    except ValueError:
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value.is_integer()):
            raise InputError(
                f"--feed {name}={text!r}: input {name!r} takes whole numbers "
                f"({dtype.name}), and {part!r} is not one"
            ) from None
        number = int(value)
    limits = np.iinfo(dtype)
    if not limits.min <= number <= limits.max:
        raise InputError(
            f"--feed {name}={text!r}: {part} is beyond the {dtype.name} range; give a "
            f"value from {limits.min} to {limits.max}"
        )
    return number


def _parse_bool(part: str, name: str, text: str) -> bool:
    spelled = {"0": False, "1": True, "false": False, "true": True}
    value = spelled.get(part.lower())
    if value is None:
        raise InputError(
            f"--feed {name}={text!r}: input {name!r} takes booleans, and {part!r} is not "
            "one; give 0, 1, true or false"
        )
    return value
