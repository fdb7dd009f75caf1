"""Loading `torch.save` files with `weights_only=True`, and saying why one does not load.

torch.load's errors explain torch's own loading rules over several lines (the
`weights_only` default of torch 2.6, the two ways to load anyway, links), and for a
truncated file they name a miniz error or just `[Errno 22] Invalid argument`. rnnedge
reports the failure by looking at the file instead: empty, truncated, damaged, not written
by `torch.save`, or a file that needs full unpickling. torch's own message goes to the
debug log.
"""

from __future__ import annotations

import enum
import logging
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from rnnedge.errors import InputError

logger = logging.getLogger(__name__)

# torch.save has written zip archives since torch 1.6. Older files (and files saved with
# _use_new_zipfile_serialization=False) start with a pickled magic number: protocol 2,
# then LONG1 of 10 bytes holding 0x1950A86A20F9469CFC6C (torch/serialization.py).
ZIP_MAGIC = b"PK\x03\x04"
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_GLOBAL_PATTERN = re.compile(r"GLOBAL ([\w.]+)")
_WEIGHTS_ONLY_FAILED = "weights only load failed"


class LoadProblem(str, enum.Enum):
    EMPTY = "empty"
    TRUNCATED = "truncated"
    DAMAGED = "damaged"
    NOT_TORCH = "not-torch"
    NEEDS_UNPICKLING = "needs-unpickling"
    UNREADABLE = "unreadable"


class TorchFileError(InputError):
    """A file that `torch.load(weights_only=True)` cannot load, and why.

    `reason` completes "the file ..." (for example "is empty"); `imports` is the class or
    function a file that needs full unpickling names, where torch reports it.
    """

    def __init__(
        self, path: Path, problem: LoadProblem, reason: str, imports: str | None = None
    ) -> None:
        self.path = path
        self.problem = problem
        self.reason = reason
        self.imports = imports
        super().__init__(f"cannot load {str(path)!r}: the file {reason}")


def load_weights_only(path: str | os.PathLike[str]) -> object:
    """Load `path` with `torch.load(weights_only=True)` onto the CPU.

    Raises:
        TorchFileError: torch.load failed. `problem` and `reason` describe the failure in
            rnnedge's words.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it did not write before failing on them.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, OSError, EOFError, KeyError
        logger.debug("torch.load(%s, weights_only=True) failed: %r", path, exc)
        raise classify_failure(path, exc) from exc


def classify_failure(path: Path, exc: BaseException) -> TorchFileError:
    """Return the `TorchFileError` for a failed `torch.load(path, weights_only=True)`."""
    text = str(exc)
    if "unsupported global" in text.lower():
        # torch names the class it would have to import ("Unsupported global: GLOBAL x",
        # or "unsupported GLOBAL x whose module y is blocked" for os, subprocess and such).
        match = _GLOBAL_PATTERN.search(text)
        imports = match.group(1) if match else None
        named = f" (it imports {imports})" if imports else ""
        return TorchFileError(
            path, LoadProblem.NEEDS_UNPICKLING, f"needs full unpickling{named}", imports
        )
    incomplete = incomplete_file(path)
    if incomplete is not None:
        return incomplete
    head = _read_head(path)
    weights_only_rejected = (
        isinstance(exc, pickle.UnpicklingError) and _WEIGHTS_ONLY_FAILED in text.lower()
    )
    if head.startswith(ZIP_MAGIC):
        return _zip_failure(path, weights_only_rejected)
    if head == LEGACY_MAGIC:
        if weights_only_rejected:
            return TorchFileError(path, LoadProblem.NEEDS_UNPICKLING, "needs full unpickling")
        # The pickle comes first and the tensor data after it: a cut in the pickle raises
        # EOFError, a cut in the data "RuntimeError: unexpected EOF, expected N more bytes".
        if isinstance(exc, EOFError) or "unexpected eof" in text.lower():
            return TorchFileError(path, LoadProblem.TRUNCATED, "is truncated, since it ends early")
        return TorchFileError(
            path, LoadProblem.DAMAGED, "is damaged, since torch.load cannot read its pickled data"
        )
    return TorchFileError(path, LoadProblem.NOT_TORCH, "was not written by torch.save")


def incomplete_file(path: Path) -> TorchFileError | None:
    """Return the error for an unreadable or empty file or a zip archive without its end.

    Returns None for any other file. These checks hold whatever unpickling the caller
    chose, so a failed load with full unpickling uses them too.
    """
    try:
        head = _read_head(path)
    except OSError as error:
        return TorchFileError(path, LoadProblem.UNREADABLE, f"cannot be read ({error.strerror})")
    if not head:
        return TorchFileError(path, LoadProblem.EMPTY, "is empty")
    if head.startswith(ZIP_MAGIC) and not zipfile.is_zipfile(path):
        return TorchFileError(
            path,
            LoadProblem.TRUNCATED,
            "is truncated, since it starts as a zip archive but the end of the archive is missing",
        )
    return None


def _read_head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(len(LEGACY_MAGIC))


def _zip_failure(path: Path, weights_only_rejected: bool) -> TorchFileError:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any("/code/" in name for name in names):
        return TorchFileError(
            path,
            LoadProblem.NOT_TORCH,
            "is a TorchScript archive (written by torch.jit.save), not a torch.save file",
        )
    if weights_only_rejected:
        # A complete torch.save archive whose pickle uses something weights_only rejects.
        return TorchFileError(path, LoadProblem.NEEDS_UNPICKLING, "needs full unpickling")
    return TorchFileError(
        path,
        LoadProblem.DAMAGED,
        "is a zip archive that torch.load cannot read, so it is damaged or was not "
        "written by torch.save",
    )
