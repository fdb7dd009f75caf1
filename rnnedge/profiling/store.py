"""Merging measurements into `devices/<device>.yaml` without losing any.

The read-modify-write runs under an exclusive `fcntl.flock` on a lock file beside the
profile, so concurrent profile runs each add their measurements, and the write goes to a
temporary file that is renamed over the profile, so a run killed mid-write leaves the
previous file intact.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from rnnedge._fileio import atomic_path
from rnnedge.errors import DeviceProfileError
from rnnedge.profiling.catalog import USER_DEVICES_DIR, DeviceProfile, read_profile


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
    return yaml.safe_dump(profile.to_dict(), sort_keys=False, default_flow_style=False, width=100)


def add_measurements(
    base: DeviceProfile,
    measurements: Sequence[dict[str, Any]],
    user_dir: Path = USER_DEVICES_DIR,
) -> Path:
    """Append measurements to `user_dir/<device>.yaml`, creating it from `base` if needed.

    Earlier measurements are kept as they are; the new ones are appended in order.
    Returns the path of the profile written.
    """
    try:
        user_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeviceProfileError(
            f"cannot create {user_dir}: {exc.strerror}; run from a writable directory"
        ) from exc
    path = user_dir / f"{base.name}.yaml"
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
    # A catalog entry holds no measurements of this host; start the user's file empty.
    return DeviceProfile(name=base.name, data=dict(base.data), measurements=[])
