"""Constant inputs given as `--feed NAME=VALUE`.

A model from elsewhere may take inputs beside the sequence that stay fixed for a whole
run, such as a sample rate. These helpers turn the command-line spelling into arrays of
the type and shape that the model declares.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import InputError
from rnnedge.runtime.inputs import _ORT_TO_NUMPY as ORT_TO_NUMPY
from rnnedge.runtime.inputs import describe


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


def constant_feed(value: Any, name: str, shape: Sequence[Any], ort_type: str) -> np.ndarray:
    """Make the array for a constant input from a number, a comma list, a `.npy` path or an array.

    The array takes the model input's element type, and is reshaped to the declared shape
    when that shape is fully known and has the same number of elements (so that `16000`
    feeds an input of shape [1]).
    """
    target = ORT_TO_NUMPY.get(ort_type)
    if target is None:
        raise InputError(f"input {name!r} has type {ort_type}, which --feed cannot fill")
    array = _parse_value_text(value, name) if isinstance(value, str) else np.asarray(value)
    try:
        converted = array.astype(target)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"value {describe(array)} for input {name!r} cannot become "
            f"{np.dtype(target).name}; give a value of that type"
        ) from exc
    if np.issubdtype(target, np.integer) and not np.array_equal(converted, array):
        raise InputError(
            f"input {name!r} takes whole numbers ({np.dtype(target).name}); got {describe(array)}"
        )
    fixed = [d for d in shape if isinstance(d, int) and d > 0]
    if len(fixed) == len(shape) and converted.shape != tuple(shape):
        if converted.size != int(np.prod(fixed, dtype=np.int64)):
            raise InputError(
                f"value {describe(converted)} for input {name!r} does not fit its shape "
                f"{list(shape)}; give {int(np.prod(fixed, dtype=np.int64))} values"
            )
        converted = converted.reshape(shape)
    return np.ascontiguousarray(converted)


def _parse_value_text(text: str, name: str) -> np.ndarray:
    if text.lower().endswith(".npy"):
        path = Path(text)
        if not path.is_file():
            raise InputError(f"--feed {name}={text}: file not found; pass an existing .npy file")
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"--feed {name}={text}: cannot read the .npy file: {exc}") from exc
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError as exc:
        raise InputError(
            f"--feed {name}={text!r} is not a number, a comma-separated list of numbers or "
            "a .npy file"
        ) from exc
    array = np.asarray(numbers)
    if np.all(np.mod(array, 1) == 0):
        array = array.astype(np.int64)
    return array if array.size > 1 else array.reshape(())
