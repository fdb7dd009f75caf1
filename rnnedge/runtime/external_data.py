"""Checks on the external data of an ONNX model, made before ONNX Runtime opens the file.

A tensor of an ONNX model may keep its data in another file, named by the `location`
entry of its `external_data` (with `offset` and `length` in bytes). The runtime loads that
file from the path relative to the model's folder. A model from elsewhere could name any
file the process can read (`../../home/user/.ssh/id_rsa`, `/etc/shadow`, or a link that
resolves to one), and then the contents would flow into the outputs. ONNX Runtime 1.32
rejects such paths itself; rnnedge checks them anyway, before ONNX Runtime opens the file,
so that the rule holds with whatever onnxruntime build a board has and the error names the
tensor and the fix.

rnnedge therefore accepts a location only when it is a relative path without `..`
components, and when the path, with every link resolved, names a regular file inside the
model's folder (subfolders allowed). Each `offset` and `length` must be whole numbers
that fit in the file. Everything is read from the model's bytes with the wire-format
reader in `rnnedge.runtime.onnx_proto`, so the check needs neither the onnx package nor
ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
from pathlib import Path

from rnnedge.errors import InputError
from rnnedge.runtime.onnx_proto import ExternalTensor, external_tensors

logger = logging.getLogger(__name__)

# Separators of either platform: a model written on Windows may use backslashes.
_SEPARATORS = re.compile(r"[\\/]+")
_DRIVE = re.compile(r"^[A-Za-z]:")
# The file identifier of ONNX Runtime's own model format, at bytes 4 to 8.
_ORT_FORMAT_ID = b"ORTM"


def check_external_data(path: str | os.PathLike[str]) -> list[ExternalTensor]:
    """Check every external-data reference of the model at `path`.

    Returns:
        The tensors that keep their data in other files; empty for a self-contained model.

    Raises:
        InputError: the file is not a valid ONNX protobuf message, or a location is
            absolute, contains `..`, resolves outside the model's folder, is missing, or
            an offset or length is invalid or past the end of its file.
    """
    path = Path(path)
    try:
        tensors = _read_external_tensors(path)
    except (ValueError, UnicodeError) as exc:
        raise InputError(
            f"{str(path)!r} is not a valid ONNX model (the protobuf data is invalid: {exc}); "
            "export it with rnnedge export"
        ) from exc
    except OSError as exc:
        raise InputError(
            f"cannot read model file {str(path)!r}: {exc.strerror}; check the file's permissions"
        ) from exc
    if not tensors:
        return []
    folder = path.parent if str(path.parent) else Path(".")
    for tensor in tensors:
        _check_tensor(path, folder, tensor)
    logger.debug("%s: %d tensors with external data, all inside %s", path, len(tensors), folder)
    return tensors


def model_size_bytes(path: str | os.PathLike[str]) -> int:
    """Return the size of a model: its file and each distinct external data file it names.

    Raises:
        InputError: as `check_external_data` does.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    locations = {
        location for tensor in check_external_data(path) for location in tensor.values("location")
    }
    return path.stat().st_size + sum((folder / location).stat().st_size for location in locations)


def is_ort_format(data: bytes | memoryview) -> bool:
    """Return whether `data` is an ONNX Runtime format (`.ort`) model, a flatbuffer."""
    return bytes(data[4:8]) == _ORT_FORMAT_ID


def _read_external_tensors(path: Path) -> list[ExternalTensor]:
    # A memory map: a large self-contained model is scanned without a copy in memory.
    with open(path, "rb") as handle:
        try:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # an empty file cannot be mapped
            raise ValueError("the file is empty") from exc
    view = memoryview(mapped)
    problem = None
    try:
        # NOTE: ORT-format files are flatbuffers, not protobuf, and are left to ONNX Runtime.
        tensors = [] if is_ort_format(view) else external_tensors(view)
    except (ValueError, UnicodeError) as exc:
        # Only the text is kept: the traceback's frames hold slices of the map, which
        # must be gone before the map can close.
        problem = str(exc)
    view.release()
    # NOTE: a slice that outlives the scan keeps the map open; it closes when collected.
    with contextlib.suppress(BufferError):
        mapped.close()
    if problem is not None:
        raise ValueError(problem)
    return tensors


def _check_tensor(model: Path, folder: Path, tensor: ExternalTensor) -> None:
    label = f"{str(model)!r}: tensor {tensor.name!r} ({tensor.where})"
    locations = tensor.values("location")
    if not locations:
        raise InputError(
            f"{label} is marked as external data but names no location; save the model "
            "again with onnx.save_model(..., save_as_external_data=True)"
        )
    for location in locations:
        data_file = _resolve_location(folder, location, label)
        _check_range(data_file, location, tensor, label)


def _resolve_location(folder: Path, location: str, label: str) -> Path:
    fix = (
        "keep external data files inside the model's folder and name them by a relative "
        "path, as onnx.save_model(..., location='weights.bin') does"
    )
    if not location or "\0" in location:
        raise InputError(f"{label} has an empty or invalid external-data location; {fix}")
    if location.startswith(("/", "\\")) or _DRIVE.match(location) or os.path.isabs(location):
        raise InputError(
            f"{label} reads its data from the absolute path {location!r}, which rnnedge "
            f"rejects because a model could name any file on this machine; {fix}"
        )
    if ".." in _SEPARATORS.split(location):
        raise InputError(
            f"{label} reads its data from {location!r}, which leaves the model's folder "
            f"through '..'; {fix}"
        )
    candidate = folder / location
    resolved = candidate.resolve()
    root = folder.resolve()
    if resolved != root and root not in resolved.parents:
        raise InputError(
            f"{label} reads its data from {location!r}, a link that resolves to "
            f"{str(resolved)!r}, outside the model's folder; copy the file into the folder "
            "instead of linking to it"
        )
    if not resolved.is_file():
        state = "is not a regular file" if resolved.exists() else "is not found"
        raise InputError(
            f"{label} reads its data from {location!r}, which {state} in "
            f"{str(folder)!r}; copy the data file next to the model"
        )
    return resolved


def _check_range(data_file: Path, location: str, tensor: ExternalTensor, label: str) -> None:
    offset = _whole_number(tensor, "offset", label, default=0)
    length = _whole_number(tensor, "length", label, default=None)
    size = data_file.stat().st_size
    end = offset + (length or 0)
    if offset > size or end > size:
        needed_range = f"bytes {offset} to {end}" if length is not None else f"offset {offset}"
        raise InputError(
            f"{label} needs {needed_range} of {location!r}, but the file has {size} bytes; the "
            "data file is truncated or belongs to another model, so copy it again"
        )


def _whole_number(tensor: ExternalTensor, key: str, label: str, default: int | None) -> int | None:
    values = tensor.values(key)
    if not values:
        return default
    text = values[-1]
    if not text.isascii() or not text.isdigit():
        raise InputError(
            f"{label} has external-data {key} {text[:40]!r}, not a whole number of bytes; "
            "save the model again with onnx.save_model(..., save_as_external_data=True)"
        )
    return int(text)
