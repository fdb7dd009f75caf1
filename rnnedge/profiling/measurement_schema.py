"""The schema of one stored measurement: field types and value ranges.

Every reader of a device profile (`profile`, `--check`, `devices show|compare|plot|predict`,
`report`) goes through `check_measurement`, so a hand-edited value such as
`batch: -5` or `p50_ms: fast` is an error naming the file, the measurement's index and the
field, and it never reaches a table, a fit or a rewrite of the file.

Fields are checked where present and not null, because older rnnedge versions stored fewer
fields. Fields this version does not know are kept as they are, because a board running a
newer rnnedge may return measurements with more fields. `latency_ms.p50_ms` is required:
every rnnedge version stores it, and every reader uses it.
"""

from __future__ import annotations

import math
from typing import Any

from rnnedge.errors import DeviceProfileError

# Integer fields and the smallest valid value.
_INTEGERS = {"batch": 1, "seq_len": 1, "threads": 1, "warmup": 0}
# Numeric fields (int or float) that must be finite and at least zero.
_NUMBERS = (
    "throughput_seq_per_s",
    "cold_start_ms",
    "session_create_ms",
    "peak_rss_mb",
    "rss_before_mb",
    "session_rss_mb",
)
_STRINGS = (
    "model",
    "model_sha256",
    "precision",
    "provider",
    "peak_rss_since",
    "remote",
    "rnnedge",
)
_MAPPINGS = ("host", "conditions")
_LISTS = ("providers", "top_operators")
# Keys of `latency_ms` other than `count`; all are milliseconds.
_LATENCY_MS = (
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "p50_ci_low_ms",
    "p50_ci_high_ms",
)
_ARCHITECTURE_INTEGERS = ("features", "hidden_size", "num_layers")


def check_measurement(entry: Any, where: str) -> None:
    """Check the field types and value ranges of one stored measurement.

    Args:
        where: the file and the measurement's index, e.g. `devices/x86-64.yaml:
            measurements[3]`, which starts every message.

    Raises:
        DeviceProfileError: a field is invalid; the message names `where` and the field.
    """
    if not isinstance(entry, dict):
        raise DeviceProfileError(
            f"{where} must be a mapping, got {type(entry).__name__}; fix or delete that measurement"
        )
    for key, minimum in _INTEGERS.items():
        _check_integer(entry, key, minimum, where)
    for key in _NUMBERS:
        _check_number(entry, key, where)
    for key in _STRINGS:
        _check_kind(entry, key, str, where)
    for key in _MAPPINGS:
        _check_kind(entry, key, dict, where)
    for key in _LISTS:
        _check_kind(entry, key, list, where)
    _check_kind(entry, "host_mismatch", bool, where)
    budget = entry.get("budget_s")
    if budget is not None and not (_is_number(budget) and budget > 0 and math.isfinite(budget)):
        _invalid(where, "budget_s", budget, "a positive number of seconds")
    _check_latency(entry.get("latency_ms"), where)
    _check_architecture(entry.get("architecture"), where)


def _check_latency(latency: Any, where: str) -> None:
    if latency is None:
        return
    if not isinstance(latency, dict):
        _invalid(where, "latency_ms", latency, "a mapping")
    if latency.get("p50_ms") is None:
        raise DeviceProfileError(
            f"{where}: missing field 'latency_ms.p50_ms'; fix or delete that measurement"
        )
    _check_integer(latency, "count", 1, where, prefix="latency_ms.")
    for key in _LATENCY_MS:
        _check_number(latency, key, where, prefix="latency_ms.")


def _check_architecture(architecture: Any, where: str) -> None:
    if architecture is None:
        return
    if not isinstance(architecture, dict):
        _invalid(where, "architecture", architecture, "a mapping")
    _check_kind(architecture, "cell", str, where, prefix="architecture.")
    for key in _ARCHITECTURE_INTEGERS:
        _check_integer(architecture, key, 1, where, prefix="architecture.")
    _check_kind(architecture, "bidirectional", bool, where, prefix="architecture.")


def _check_integer(
    mapping: dict[str, Any], key: str, minimum: int, where: str, prefix: str = ""
) -> None:
    value = mapping.get(key)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        _invalid(where, prefix + key, value, f"an integer of at least {minimum}")


def _check_number(mapping: dict[str, Any], key: str, where: str, prefix: str = "") -> None:
    value = mapping.get(key)
    if value is None:
        return
    if not (_is_number(value) and math.isfinite(value) and value >= 0):
        _invalid(where, prefix + key, value, "a finite number of at least 0")


def _check_kind(
    mapping: dict[str, Any], key: str, kind: type, where: str, prefix: str = ""
) -> None:
    value = mapping.get(key)
    if value is None:
        return
    # bool is a subclass of int, so it is only accepted where bool is the expected kind.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = {dict: "a mapping", list: "a list", str: "a string", bool: "true or false"}
        _invalid(where, prefix + key, value, names[kind])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _invalid(where: str, field: str, value: Any, expected: str) -> None:
    # A long value (a whole mapping, say) is named by its type to keep the message one line.
    value_text = repr(value) if len(repr(value)) <= 40 else f"a {type(value).__name__}"
    raise DeviceProfileError(
        f"{where}: field {field!r} must be {expected}, got {value_text}; fix the value or "
        "delete that measurement"
    )
