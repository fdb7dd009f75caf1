"""Findings: what a check found, how bad it is and what to do about it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """Severity of a finding: fine, suspect, or broken."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


class Area(str, enum.Enum):
    """The groups of checks, in the order the report lists them."""

    MACHINE = "machine"
    ONNXRUNTIME = "onnxruntime"
    MODEL = "model"
    CONDITIONS = "conditions"


@dataclass(frozen=True)
class Finding:
    """One checked fact.

    Attributes:
        area: the group of checks it belongs to.
        check: a stable identifier, such as `cpu.features` or `provider.cuda`.
        status: ok, warning or error.
        message: one line stating what was found.
        fix: what to do about a warning or an error; None for ok findings.
        details: the raw facts behind the message, for `--json`.
    """

    area: Area
    check: str
    status: Status
    message: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status is not Status.OK and not self.fix:
            raise ValueError(f"finding {self.check!r} is {self.status.value} but names no fix")

    def as_dict(self) -> dict[str, Any]:
        return {
            "area": self.area.value,
            "check": self.check,
            "status": self.status.value,
            "message": self.message,
            "fix": self.fix,
            "details": self.details,
        }


def ok(area: Area, check: str, message: str, **details: Any) -> Finding:
    return Finding(area, check, Status.OK, message, None, details)


def warning(area: Area, check: str, message: str, fix: str, **details: Any) -> Finding:
    return Finding(area, check, Status.WARNING, message, fix, details)


def error(area: Area, check: str, message: str, fix: str, **details: Any) -> Finding:
    return Finding(area, check, Status.ERROR, message, fix, details)
