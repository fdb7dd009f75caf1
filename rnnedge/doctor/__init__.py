"""`rnnedge doctor`: check a host, its onnxruntime, a model and the measurement conditions.

Each check returns `Finding`s (ok, warning or error, with a message and, for the last two,
the fix). A check that fails unexpectedly becomes an error finding of its own, so one
broken step never hides the others. Needs onnxruntime, numpy and PyYAML only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnedge.doctor.findings import Area, Finding, Status, error, warning
from rnnedge.errors import CheckFailedError

logger = logging.getLogger(__name__)

# The exit code of `rnnedge doctor` when any finding is an error ("a check failed").
ERROR_EXIT_CODE = CheckFailedError.exit_code

__all__ = ["ERROR_EXIT_CODE", "Area", "DoctorReport", "Finding", "Status", "run_doctor"]


@dataclass(frozen=True)
class DoctorReport:
    """All findings of one doctor run, in the order they were checked."""

    findings: tuple[Finding, ...]
    device: str | None
    model: str | None

    @property
    def has_errors(self) -> bool:
        return any(f.status is Status.ERROR for f in self.findings)

    @property
    def exit_code(self) -> int:
        return ERROR_EXIT_CODE if self.has_errors else 0

    def counts(self) -> dict[str, int]:
        return {s.value: sum(f.status is s for f in self.findings) for s in Status}

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "model": self.model,
            "counts": self.counts(),
            "exit_code": self.exit_code,
            "findings": [f.as_dict() for f in self.findings],
        }


def run_doctor(
    model: str | os.PathLike[str] | None = None,
    device: str | None = None,
    user_dir: str | os.PathLike[str] = Path("devices"),
) -> DoctorReport:
    """Check this host, its onnxruntime and, if given, a model.

    Args:
        model: an `.onnx` file to check against this onnxruntime.
        device: a device profile name whose provider preference applies; the profile that
            recognizes this host when None.
        user_dir: the folder of the user's own device profiles.

    Raises:
        InputError: `model` does not exist or is a directory, or `device` is unknown or
            its profile cannot be read. Both are usage errors, not findings, because no
            check can run on them.
    """
    from rnnedge.doctor.conditions import check_conditions
    from rnnedge.doctor.machine import check_machine
    from rnnedge.doctor.model import check_model
    from rnnedge.doctor.providers import check_onnxruntime
    from rnnedge.host import cpu_info, measurement_conditions

    user_dir = Path(os.fspath(user_dir))
    if model is not None:
        _check_model_path(Path(os.fspath(model)))
    findings: list[Finding] = []
    profile = _device_profile(device, user_dir, findings)
    preference = profile.provider_preference if profile is not None else []
    options = profile.provider_options if profile is not None else {}

    findings += _guarded(Area.MACHINE, lambda: check_machine(user_dir))
    generic = bool(profile is not None and profile.data.get("recognize", {}).get("generic"))
    findings += _guarded(Area.ONNXRUNTIME, lambda: check_onnxruntime(preference, generic))
    if model is not None:
        findings += _guarded(Area.MODEL, lambda: check_model(model, preference, options))
    findings += _guarded(
        Area.CONDITIONS,
        lambda: check_conditions(measurement_conditions(), cpu_info()["logical_cores"]),
    )
    name = profile.name if profile is not None else None
    return DoctorReport(tuple(findings), name, str(model) if model is not None else None)


def _check_model_path(path: Path) -> None:
    from rnnedge.errors import InputError

    if not path.exists():
        raise InputError(f"model file {str(path)!r} not found; pass the path to an .onnx file")
    if path.is_dir():
        raise InputError(f"model path {str(path)!r} is a directory; pass the path to an .onnx file")


def _device_profile(device: str | None, user_dir: Path, findings: list[Finding]):
    """Load the named device, or find this host's; record a mismatch or an unreadable file.

    A named device that is unknown or unreadable raises `DeviceProfileError`.
    """
    from rnnedge.errors import DeviceProfileError
    from rnnedge.profiling.catalog import (
        describe_host,
        describe_recognize,
        host_matches,
        load_device,
        recognize_host,
    )

    if device:
        profile = load_device(
            device, user_dir, hint="omit --device to check against this host's own profile"
        )
        if not host_matches(profile):
            findings.append(warning(
                Area.MACHINE, "device",
                f"this host ({describe_host()}) does not look like device {profile.name!r}, "
                f"whose recognize rules need {describe_recognize(profile)}",
                "run rnnedge doctor on that device, or omit --device to check this host "
                "against its own profile",
                device=profile.name,
            ))  # fmt: skip
        return profile
    try:
        return recognize_host(user_dir, strict=True)
    except DeviceProfileError as exc:
        findings.append(error(Area.MACHINE, "device", str(exc),
                              "fix or delete the device profile named in the message"))  # fmt: skip
        return None


def _guarded(area: Area, check: Callable[[], list[Finding]]) -> list[Finding]:
    try:
        return check()
    except Exception as exc:  # a bug in one check must not hide the others
        logger.debug("the %s checks failed", area.value, exc_info=True)
        return [error(
            area, "internal", f"the {area.value} checks failed: {type(exc).__name__}: {exc}",
            "rerun with -vv and report the traceback as an rnnedge bug",
        )]  # fmt: skip
