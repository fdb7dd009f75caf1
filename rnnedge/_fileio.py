"""Atomic file writes: a temporary file in the target directory, then a rename.

A reader sees either the old file or the complete new one, never a partial write,
because `os.replace` within one directory is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from rnnedge.errors import InputError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` on success.

    On any exception the temporary file is removed and `target` is left untouched.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(_missing_directory(directory))
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputError(
            f"cannot write to {str(directory)!r}: {exc.strerror}; choose a writable "
            "output directory"
        ) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates the file as 0600; the target gets the mode a plain open() would
        # give it, or keeps its own when it exists.
        os.chmod(tmp, _mode_for(target))
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise InputError(
                f"cannot write {str(target)!r}: {exc.strerror}; free some space or "
                "choose another output path"
            ) from exc


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


# Serializes the set-and-restore of os.umask() between rnnedge's own threads. A thread of
# other code that creates a file in that moment still gets the 0o022 umask.
_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    # /proc/self/status reads the umask without changing it; os.umask() must set it to
    # read it, which races with threads that create files meanwhile.
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:
        current = os.umask(0o022)
        os.umask(current)
    return current


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some file systems refuse to open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_output_path(target: str | os.PathLike[str]) -> Path:
    """Fail early, before any work, if `target` cannot be written."""
    target = Path(target)
    if target.is_dir():
        raise InputError(f"output path {str(target)!r} is a directory; pass a file name")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(_missing_directory(directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(
            f"output directory {str(directory)!r} is not writable; choose another output path"
        )
    return target


def _missing_directory(directory: Path) -> str:
    """Describe an output folder that is not a folder: missing, or an existing file."""
    if directory.exists():
        return (
            f"output directory {str(directory)!r} is a file, not a folder; choose an output "
            "path in a folder"
        )
    return (
        f"output directory {str(directory)!r} does not exist; create it or choose another "
        "output path"
    )
