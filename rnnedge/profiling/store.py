"""Merging measurements into `devices/<device>.yaml` without losing any.

The read-modify-write runs under an exclusive `fcntl.flock` on a lock file beside the
profile, so concurrent profile runs each add their measurements. The write goes to a
temporary file that is renamed over the profile, so a run killed mid-write leaves the
previous file intact.

The lock file `.<device>.yaml.lock` stays in the folder after the run: removing it while
another process waits on it would let two writers hold different locks. It is empty, and
deleting it is safe while no rnnedge process runs.

`add_measurements` never writes into the catalog shipped with rnnedge (`catalog_dir()`),
which in a source checkout is the `devices/` folder at the repository root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from rnnedge._fileio import atomic_path
from rnnedge.errors import DeviceProfileError
from rnnedge.profiling.catalog import (
    SAFE_DUMPER,
    USER_DEVICES_DIR,
    DeviceProfile,
    as_user_dir,
    is_catalog_folder,
    read_profile,
)
from rnnedge.profiling.measurement_schema import check_measurement


def check_user_dir(user_dir: str | os.PathLike[str]) -> Path:
    """Return `user_dir` as a path; raise if it is the catalog shipped with rnnedge.

    The catalog is tracked in rnnedge's repository and installed inside the package, so
    measurements written there would change the source tree or the installation.
    """
    user_dir = as_user_dir(user_dir)
    if is_catalog_folder(user_dir):
        raise DeviceProfileError(
            f"{user_dir} is rnnedge's shipped device catalog, which must not contain "
            "measurements; run from another folder or pass --devices-dir with another folder"
        )
    return user_dir


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for `path` (on `.<name>.lock` beside it)."""
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise DeviceProfileError(
            f"cannot create lock file {lock_path}: {exc.strerror}; make {path.parent} writable"
        ) from exc
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def dump_profile(profile: DeviceProfile) -> str:
    return yaml.dump(
        profile.to_dict(),
        Dumper=SAFE_DUMPER,
        sort_keys=False,
        default_flow_style=False,
        width=100,
    )


def add_measurements(
    base: DeviceProfile,
    measurements: Sequence[dict[str, Any]],
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
) -> Path:
    """Append measurements to `user_dir/<device>.yaml`, creating it from `base` if needed.

    Earlier measurements are kept as they are; the new ones are appended in order.
    Returns the path of the profile written.

    Raises:
        DeviceProfileError: `user_dir` is the shipped catalog, a new measurement is
            invalid, or the existing profile cannot be read, validated or written. The
            file is unchanged in each case.
    """
    user_dir = check_user_dir(user_dir)
    path = user_dir / f"{base.name}.yaml"
    # A measurement this rnnedge could not read back (one from a board's rnnedge, say) is
    # rejected before anything is created or written.
    for index, entry in enumerate(measurements):
        check_measurement(entry, f"new measurement {index} for {path}")
    try:
        user_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeviceProfileError(
            f"cannot create {user_dir}: {exc.strerror}; pass --devices-dir with a writable "
            "folder, or run from a writable directory to use the default"
        ) from exc
    with locked(path):
        current = read_profile(path) if path.exists() else _fresh_copy(base)
        current.measurements.extend(dict(m) for m in measurements)
        text = dump_profile(current)
        with atomic_path(path) as tmp:
            try:
                tmp.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise DeviceProfileError(
                    f"cannot write {path}: {exc.strerror}; the previous profile is unchanged"
                ) from exc
    return path


def _fresh_copy(base: DeviceProfile) -> DeviceProfile:
    # A catalog entry contains no measurements of this host, so the user's file starts empty.
    return DeviceProfile(name=base.name, data=dict(base.data), measurements=[])
