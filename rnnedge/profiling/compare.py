"""Reading stored measurements back: device listings, per-configuration comparisons and
the regression check of `rnnedge profile --check`.

A configuration is (model hash, precision, provider, batch, sequence length, threads).
Where a device contains several measurements of one configuration, tables show the latest.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnedge.errors import DeviceProfileError, InputError
from rnnedge.profiling.catalog import (
    USER_DEVICES_DIR,
    DeviceProfile,
    is_catalog_folder,
    known_names,
    load_device,
)

CONFIG_FIELDS = ("model_sha256", "precision", "provider", "batch", "seq_len", "threads")
DEFAULT_TOLERANCE = 0.10
# Hex digits of the sha256 that tell apart different files of one name in tables and plots.
SHA256_LABEL_DIGITS = 8
# The maximum number of stored model names listed by the error for a --model that
# matches no measurement.
MAX_NAMES_SHOWN = 10


def config_key(measurement: dict[str, Any]) -> tuple[Any, ...]:
    """The configuration a measurement belongs to."""
    return tuple(measurement.get(field) for field in CONFIG_FIELDS)


def load_profiles(
    names: Sequence[str] = (), user_dir: str | os.PathLike[str] = USER_DEVICES_DIR
) -> list[DeviceProfile]:
    """Load the named devices, or every known device when `names` is empty."""
    return [load_device(name, user_dir) for name in (names or known_names(user_dir))]


def load_readable_profiles(
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
) -> tuple[list[DeviceProfile], list[DeviceProfileError]]:
    """Load every known device, and collect the error of each file that fails to load.

    A user file that cannot be read or validated hides the catalog entry of the same
    name, as a readable one would, so that device appears among the errors only.
    """
    profiles, errors = [], []
    for name in known_names(user_dir):
        try:
            profiles.append(load_device(name, user_dir))
        except DeviceProfileError as exc:
            errors.append(exc)
    return profiles, errors


def p50(measurement: dict[str, Any]) -> float:
    return float(measurement["latency_ms"]["p50_ms"])


def latest_by_config(
    measurements: Iterable[dict[str, Any]],
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The last stored measurement of each configuration, in first-seen order."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for entry in measurements:
        if isinstance(entry.get("latency_ms"), dict) and "p50_ms" in entry["latency_ms"]:
            latest[config_key(entry)] = entry
    return latest


def device_rows(profiles: Sequence[DeviceProfile]) -> list[dict[str, Any]]:
    """One row per device for `rnnedge devices list`."""
    rows = []
    for profile in profiles:
        shipped = profile.path is not None and is_catalog_folder(profile.path.parent)
        source = "catalog" if shipped else "user"
        remote = profile.remote or {}
        rows.append(
            {
                "name": profile.name,
                "description": profile.data.get("description", ""),
                "providers": profile.provider_preference,
                "measurements": len(profile.measurements),
                "remote": remote.get("ssh"),
                "source": source,
                "path": str(profile.path) if profile.path else None,
            }
        )
    return rows


def measurement_row(device: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The fields of one measurement that the tables print."""
    latency = entry.get("latency_ms", {})
    return {
        "device": device,
        "model": entry.get("model"),
        "model_sha256": entry.get("model_sha256"),
        "precision": entry.get("precision"),
        "provider": entry.get("provider"),
        "batch": entry.get("batch"),
        "seq_len": entry.get("seq_len"),
        "threads": entry.get("threads"),
        "p50_ms": latency.get("p50_ms"),
        "p90_ms": latency.get("p90_ms"),
        "p99_ms": latency.get("p99_ms"),
        "throughput_seq_per_s": entry.get("throughput_seq_per_s"),
        "cold_start_ms": entry.get("cold_start_ms"),
        "peak_rss_mb": entry.get("peak_rss_mb"),
        "timestamp": entry.get("timestamp"),
        # Recorded with --force-device on a host that does not match the device.
        "host_mismatch": bool(entry.get("host_mismatch")),
    }


@dataclass(frozen=True)
class ModelFilter:
    """The stored measurements that a `--model` value selects.

    A value naming an existing file selects the measurements of that file's contents (its
    sha256). Any other value selects by the stored file name or a sha256 prefix.
    """

    text: str
    sha256: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelFilter:
        """Hash `text` where it names an existing file.

        Raises:
            InputError: `text` is a path (it contains a folder separator) to nothing, or
                to something other than a file.
        """
        path = Path(text)
        if path.is_file():
            from rnnedge.profiling.profile import file_sha256

            return cls(text, file_sha256(path))
        if path.exists():
            raise InputError(
                f"--model {text!r} is not a file; pass a model file, a file name or a sha256 prefix"
            )
        if os.sep in text or (os.altsep is not None and os.altsep in text):
            raise InputError(
                f"--model file {text!r} not found; pass an existing model file, the file "
                "name as stored, or a sha256 prefix"
            )
        return cls(text)

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.sha256 is not None:
            return entry.get("model_sha256") == self.sha256
        sha256 = str(entry.get("model_sha256") or "")
        return entry.get("model") == self.text or (bool(self.text) and sha256.startswith(self.text))

    def describe_miss(self, profiles: Sequence[DeviceProfile]) -> str:
        """Explain why no measurement of `profiles` matches, naming the stored models and
        the fix."""
        stored = stored_model_names(profiles)
        listed_names = ", ".join(stored[:MAX_NAMES_SHOWN])
        if len(stored) > MAX_NAMES_SHOWN:
            listed_names += f" and {len(stored) - MAX_NAMES_SHOWN} more"
        if stored:
            choices = (
                f"the stored models are {listed_names}; pass one of them to --model, or "
                "record measurements"
            )
        else:
            choices = "no model is measured yet; record measurements"

        if self.sha256 is None:
            return (
                f"no measurements of model {self.text!r} (a file name or sha256 prefix); "
                f"{choices} with rnnedge profile MODEL"
            )
        name = Path(self.text).name
        others = sorted({
            str(entry.get("model_sha256"))[:SHA256_LABEL_DIGITS]
            for profile in profiles
            for entry in profile.measurements
            if entry.get("model") == name
        })  # fmt: skip
        text = (
            f"no measurements of {self.text} (sha256 {self.sha256[:SHA256_LABEL_DIGITS]}); "
            f"{choices} with rnnedge profile {self.text}"
        )
        if others:
            text += (
                f", or pass a sha256 prefix ({', '.join(others)}) to see the measurements of "
                f"other files named {name}"
            )
        return text


def stored_model_names(profiles: Sequence[DeviceProfile]) -> list[str]:
    """Return the sorted file names of the models measured on `profiles`."""
    return sorted({
        str(entry["model"])
        for profile in profiles
        for entry in profile.measurements
        if entry.get("model")
    })  # fmt: skip


def as_model_filter(model: str | ModelFilter | None) -> ModelFilter | None:
    """Return `model` as a `ModelFilter`, parsing a string with `ModelFilter.parse`."""
    if model is None or isinstance(model, ModelFilter):
        return model
    return ModelFilter.parse(model)


def model_labels(entries: Iterable[dict[str, Any]]) -> dict[tuple[Any, Any], str]:
    """Name each (file name, sha256) of `entries` for a table or a plot legend.

    The label is the file name, followed by `@` and the first 8 hex digits of the sha256
    where `entries` contain files of that name with different contents.
    """
    hashes: dict[Any, set[Any]] = defaultdict(set)
    for entry in entries:
        hashes[entry.get("model")].add(entry.get("model_sha256"))
    labels = {}
    for name, sha256s in hashes.items():
        for sha256 in sha256s:
            suffix = f"@{str(sha256)[:SHA256_LABEL_DIGITS]}" if len(sha256s) > 1 else ""
            labels[(name, sha256)] = f"{name}{suffix}"
    return labels


def compare_rows(
    profiles: Sequence[DeviceProfile], model: str | ModelFilter | None = None
) -> list[dict[str, Any]]:
    """Rows of the latest measurement per device and configuration, sorted for reading.

    `model` keeps the measurements that `ModelFilter.parse(model)` selects.

    Raises:
        InputError: `model` is a path to no file.
    """
    selected = as_model_filter(model)
    rows = []
    for profile in profiles:
        for entry in latest_by_config(profile.measurements).values():
            if selected is not None and not selected.matches(entry):
                continue
            rows.append(measurement_row(profile.name, entry))
    rows.sort(
        key=lambda r: (
            str(r["model"]),
            str(r["model_sha256"]),
            str(r["precision"]),
            r["batch"] or 0,
            r["seq_len"] or 0,
            r["device"],
        )
    )
    return rows


@dataclass(frozen=True)
class CheckResult:
    """The outcome of comparing a new measurement with its stored baseline."""

    regressed: bool
    baseline_p50_ms: float
    new_p50_ms: float
    change: float  # relative: +0.25 is 25% slower
    threshold: float  # relative change above which the check fails
    baseline_count: int
    # The p50 of every measurement the check made, in order: two where the first exceeded
    # the threshold and was measured again (see `rnnedge.profiling.check.confirm_regression`).
    measured_p50s_ms: tuple[float, ...] = ()

    @property
    def remeasured(self) -> bool:
        return len(self.measured_p50s_ms) > 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "regressed": self.regressed,
            "baseline_p50_ms": round(self.baseline_p50_ms, 6),
            "new_p50_ms": round(self.new_p50_ms, 6),
            "change": round(self.change, 4),
            "threshold": round(self.threshold, 4),
            "baseline_measurements": self.baseline_count,
            "measured_p50s_ms": [round(value, 6) for value in self.measured_p50s_ms],
        }


def baseline_for(
    measurement: dict[str, Any], stored: Sequence[dict[str, Any]], source: str
) -> list[dict[str, Any]]:
    """Return the stored measurements of the same configuration as `measurement`.

    Raises:
        InputError: none match. The message tells whether the model changed (another hash
            under the same file name) or the configuration was never measured.
    """
    key = config_key(measurement)
    matching = [m for m in stored if config_key(m) == key and "latency_ms" in m]
    if matching:
        return matching
    same_name = [m for m in stored if m.get("model") == measurement.get("model")]
    if same_name and all(m.get("model_sha256") != measurement["model_sha256"] for m in same_name):
        raise InputError(
            f"{source} has measurements of {measurement['model']} only from a different model "
            f"(sha256 {str(same_name[-1].get('model_sha256'))[:12]}, now "
            f"{measurement['model_sha256'][:12]}); profile the new model without --check first "
            "to record a baseline"
        )
    raise InputError(
        f"{source} has no measurement of {measurement.get('model')} with "
        f"{describe_configuration(measurement)}; profile it without --check first to record "
        "a baseline"
    )


def stored_baseline(
    measurement: dict[str, Any],
    profile: DeviceProfile,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
) -> list[dict[str, Any]]:
    """Return the measurements of `measurement`'s configuration in the user's profile of
    the device.

    Baselines live only in the user's folder, so a device that has no profile there, only
    a catalog entry or a profile made from this host's fingerprint, has none.

    Raises:
        InputError: no baseline is stored; the message names the user's profile file, or
            the folder that has no profile of the device yet.
    """
    missing = f"{measurement.get('model')} with {describe_configuration(measurement)}"
    path = _user_profile_path(profile, user_dir, missing)
    return baseline_for(measurement, profile.measurements, shown_path(path))


def require_measured_model(
    name: str,
    sha256: str,
    profile: DeviceProfile,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
) -> None:
    """Check that the user's profile of the device has a measurement of the model file with
    this name and sha256, in any configuration.

    A check on a board gets each point's full configuration (its thread count, for one)
    only from the board's output, so this is the check that can run before connecting.

    Raises:
        InputError: as `stored_baseline` does.
    """
    path = _user_profile_path(profile, user_dir, name)
    stored = [m for m in profile.measurements if "latency_ms" in m]
    if any(m.get("model_sha256") == sha256 for m in stored):
        return
    same_name = [m for m in stored if m.get("model") == name]
    if same_name:
        raise InputError(
            f"{shown_path(path)} has measurements of {name} only from a different model "
            f"(sha256 {str(same_name[-1].get('model_sha256'))[:12]}, now {sha256[:12]}); "
            "profile the new model without --check first to record a baseline"
        )
    raise InputError(
        f"{shown_path(path)} has no measurement of {name}; profile it without --check first "
        "to record a baseline"
    )


def _user_profile_path(
    profile: DeviceProfile, user_dir: str | os.PathLike[str], missing: str
) -> Path:
    """Return the file of the user's profile of the device, which contains its baselines.

    Raises:
        InputError: the device has no profile in the user's folder; `missing` names the
            baseline that is missing.
    """
    path = profile.path
    if path is None or is_catalog_folder(path.parent):
        raise InputError(
            f"no profile of {profile.name} in {shown_path(user_dir)} yet, so no baseline of "
            f"{missing}; profile it without --check first to record one (or pass --devices-dir "
            "with the folder that has the baselines)"
        )
    return path


def describe_configuration(measurement: dict[str, Any]) -> str:
    """Describe a measurement's configuration without the model, such as "precision fp32,
    provider CPUExecutionProvider, batch 1, seq_len 100, threads 2"."""
    return ", ".join(f"{field} {measurement.get(field)}" for field in CONFIG_FIELDS[1:])


def shown_path(path: str | os.PathLike[str]) -> str:
    """Return a path for messages, with "./" before a relative path that does not start
    with "." (so "./devices", not "devices")."""
    text = os.fspath(path)
    return text if os.path.isabs(text) or text.startswith(".") else f"./{text}"


def check_regression(
    measurement: dict[str, Any],
    baseline: Sequence[dict[str, Any]],
    tolerance: float = DEFAULT_TOLERANCE,
) -> CheckResult:
    """Decide whether `measurement` is slower than its baseline beyond the noise.

    The baseline p50 is the median of the stored p50s. The threshold on the relative
    change is the largest of `tolerance` and the noise: the relative half-widths of the
    95% confidence intervals of the baseline's and the new median, plus twice the
    relative standard deviation of the stored p50s (run-to-run drift, where two or more
    are stored).
    """
    if not tolerance >= 0:  # also rejects NaN, which no slowdown would ever exceed
        raise InputError(f"tolerance must be 0 or more, got {tolerance}")
    stored_p50 = [p50(m) for m in baseline]
    base = statistics.median(stored_p50)
    new = p50(measurement)
    noise = _ci_halfwidth(measurement) + statistics.median(_ci_halfwidth(m) for m in baseline)
    if len(stored_p50) >= 2 and base > 0:
        noise += 2 * statistics.stdev(stored_p50) / base
    threshold = max(tolerance, noise)
    change = new / base - 1 if base > 0 else 0.0
    return CheckResult(change > threshold, base, new, change, threshold, len(stored_p50), (new,))


def _ci_halfwidth(measurement: dict[str, Any]) -> float:
    latency = measurement["latency_ms"]
    low, high, median = (latency.get(k) for k in ("p50_ci_low_ms", "p50_ci_high_ms", "p50_ms"))
    if low is None or high is None or not median:
        return 0.0  # measured before rnnedge stored the interval
    return (float(high) - float(low)) / 2 / float(median)
