"""Measuring one model configuration on this host and recording it in a device profile."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnedge import __version__
from rnnedge.errors import DeviceProfileError, InputError
from rnnedge.profiling.catalog import (
    USER_DEVICES_DIR,
    DeviceProfile,
    as_user_dir,
    default_device,
    describe_host,
    describe_recognize,
    host_matches,
    load_device,
)
from rnnedge.profiling.fingerprint import measurement_host, reset_peak_rss, rss_mb
from rnnedge.profiling.operators import top_operators
from rnnedge.profiling.store import add_measurements, check_user_dir
from rnnedge.profiling.synthetic import check_inputs, measured_sizes, synthetic_input
from rnnedge.profiling.timing import LatencyStats, measure
from rnnedge.runtime.providers import Provider
from rnnedge.runtime.session import Session, open_model_file

logger = logging.getLogger(__name__)

# The fix for an unknown --device name where profiling this host is the alternative.
UNKNOWN_DEVICE_HINT = "omit --device to profile this host under its own name"


@dataclass(frozen=True)
class ProfileResult:
    """One measured configuration and where it was stored."""

    device: str
    measurement: dict[str, Any]
    latency: LatencyStats
    profile_path: Path | None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def profile_model(
    model: str | Path,
    device: str | DeviceProfile | None = None,
    provider: Provider | str = Provider.AUTO,
    batch: int | None = None,
    seq_len: int | None = None,
    threads: int | None = None,
    warmup: int = 20,
    runs: int = 200,
    budget_s: float | None = None,
    strict_provider: bool = False,
    store: bool = True,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    operators: int = 10,
    operator_runs: int = 10,
    *,
    force_device: bool = False,
    state_pairs: Sequence[tuple[str, str]] | None = None,
    feeds: Mapping[str, Any] | None = None,
    layout: str | None = None,
) -> ProfileResult:
    """Measure latency of `model` and, if `store`, append it to the device's profile.

    Args:
        device: a device name or profile; this host's recognized profile if None.
        batch, seq_len: the size of the synthetic input; None takes the size that the
            model's inputs fix, else 1 and 100 (see `rnnedge.profiling.synthetic`).
        warmup: untimed runs before measuring.
        runs: timed runs (fewer if `budget_s` seconds run out first).
        budget_s: seconds of timed runs after which measuring stops early.
        user_dir: the folder of the user's device profiles; never the shipped catalog.
        operators: how many operator types to rank with ONNX Runtime's profiler (0: none).
        operator_runs: runs of the separate, profiled session that ranks the operators.
        force_device: store the measurement under `device` even when this host does not
            match its `recognize` rules; the measurement then has `host_mismatch: true`.
        state_pairs: (state input, state output) names for a model whose metadata names
            none; those inputs start at zero (as `Session` takes them).
        feeds: constant inputs by name (as `Session` takes them).
        layout: `batch-major` or `time-major` for a model whose metadata records no
            layout (as `Session` takes it); None infers it.

    Raises:
        DeviceProfileError: `device` does not describe this host and `store` is set
            without `force_device`, or `user_dir` is the shipped catalog.
    """
    path = open_model_file(model)
    user_dir = check_user_dir(user_dir) if store else as_user_dir(user_dir)
    profile = resolve_device(device, user_dir)
    mismatch = confirm_host(profile, device is not None, force_device, records=store)
    measurement, stats = measure_configuration(
        path, profile, provider=provider, batch=batch, seq_len=seq_len, threads=threads,
        warmup=warmup, runs=runs, budget_s=budget_s, strict_provider=strict_provider,
        operators=operators, operator_runs=operator_runs, host_mismatch=mismatch,
        state_pairs=state_pairs, feeds=feeds, layout=layout,
    )  # fmt: skip
    written = add_measurements(profile, [measurement], user_dir) if store else None
    return ProfileResult(profile.name, measurement, stats, written)


def measure_configuration(
    path: Path,
    profile: DeviceProfile,
    provider: Provider | str = Provider.AUTO,
    batch: int | None = None,
    seq_len: int | None = None,
    threads: int | None = None,
    warmup: int = 20,
    runs: int = 200,
    budget_s: float | None = None,
    strict_provider: bool = False,
    operators: int = 10,
    operator_runs: int = 10,
    host_mismatch: bool = False,
    state_pairs: Sequence[tuple[str, str]] | None = None,
    feeds: Mapping[str, Any] | None = None,
    size_options: Mapping[str, str] | None = None,
    layout: str | None = None,
    progress: str | None = None,
) -> tuple[dict[str, Any], LatencyStats]:
    """Measure one configuration on this host; return the measurement and its statistics.

    The device profile supplies the provider preference and options; nothing is stored.
    `batch` and `seq_len` are as for `profile_model`, and `size_options` names the
    command-line option that set each of them (see `measured_sizes`). A `progress` text,
    such as "sweep point 2/4", is logged at info level with the sizes and thread count
    that the measurement uses, once they are resolved.
    """
    # NaN would pass a plain `<= 0` test and then time every run.
    if budget_s is not None and not (budget_s > 0 and math.isfinite(budget_s)):
        raise InputError(f"time budget must be a positive number of seconds, got {budget_s}")
    if operators < 0:
        raise InputError(
            f"operator count must be 0 or more, got {operators}; pass 0 to skip the ranking"
        )

    # Reset first: the peak since the reset is then at least the RSS read just after it.
    peak_reset = reset_peak_rss()
    memory_before = rss_mb()
    started = time.perf_counter()
    session = open_session(
        path, profile, provider=provider, threads=threads, strict_provider=strict_provider,
        state_pairs=state_pairs, feeds=feeds, layout=layout,
    )  # fmt: skip
    created = time.perf_counter()
    check_inputs(session)
    batch, seq_len = measured_sizes(session, batch, seq_len, size_options=size_options)
    if progress is not None:
        logger.info(
            "%s: %s batch %d seq_len %d threads %d",
            progress, path.name, batch, seq_len, session.threads,
        )  # fmt: skip
    feed = synthetic_input(session, batch, seq_len, batch_fix=constant_batch_fix(size_options))
    outputs = session.run_prepared(feed)
    cold_start_ms = (time.perf_counter() - started) * 1e3
    session.check_output_steps(feed, outputs, "the synthetic input", "--seq-len")
    session_ms = (created - started) * 1e3
    logger.info("cold start %.2f ms (session creation %.2f ms)", cold_start_ms, session_ms)

    stats, _ = measure(
        lambda: session.run_prepared(feed), warmup=warmup, runs=runs, budget_s=budget_s
    )
    memory_after = rss_mb()
    from rnnedge.doctor.conditions import spoilers  # judged as `rnnedge doctor` judges them
    from rnnedge.host import measurement_conditions

    conditions = measurement_conditions()
    for spoiler in spoilers(conditions):
        logger.warning("%s: %s; %s", path.name, spoiler.message, spoiler.fix)
    ranked = top_operators(
        path, session.plan.as_ort_list(), session.threads, feed, operator_runs, operators
    )
    measurement = {
        "model": path.name,
        "model_sha256": file_sha256(path),
        "precision": session.metadata.precision,
        "architecture": model_architecture(session),
        "provider": session.primary_provider,
        "providers": list(session.providers),
        "batch": batch,
        "seq_len": seq_len,
        "threads": session.threads,
        "warmup": warmup,
        "budget_s": budget_s,
        "latency_ms": stats.as_dict(),
        "throughput_seq_per_s": round(batch * 1e3 / stats.mean_ms, 3),
        "cold_start_ms": round(cold_start_ms, 3),
        "session_create_ms": round(session_ms, 3),
        # The process's peak RSS since just before the session was created, or since the
        # process started where the kernel cannot reset the peak.
        "peak_rss_mb": memory_after["peak_rss_mb"],
        "rss_before_mb": memory_before["rss_mb"],
        "peak_rss_since": "session" if peak_reset else "process",
        "session_rss_mb": session_rss_mb(memory_before, memory_after, peak_reset),
        "top_operators": ranked,
        "host": measurement_host(),
        "conditions": conditions,
        "rnnedge": __version__,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if host_mismatch:
        measurement["host_mismatch"] = True
    return measurement, stats


def open_session(
    path: Path,
    profile: DeviceProfile,
    provider: Provider | str = Provider.AUTO,
    threads: int | None = None,
    strict_provider: bool = False,
    state_pairs: Sequence[tuple[str, str]] | None = None,
    feeds: Mapping[str, Any] | None = None,
    layout: str | None = None,
) -> Session:
    """Open the session that measures `path` on the device `profile`."""
    return Session(
        path, device=profile, provider=provider, strict_provider=strict_provider,
        threads=threads, normalize=False, state_pairs=state_pairs, feeds=feeds, layout=layout,
    )  # fmt: skip


def constant_batch_fix(size_options: Mapping[str, str] | None) -> str:
    """Name the fix for a `--feed` array whose batch differs from the measurement's.

    Where a sweep sets the batch, that fix is to profile without the batch sweep.
    """
    option = (size_options or {}).get("batch", "")
    if option.startswith("--sweep"):
        return f"remove {option} and profile with --batch {{batch}}"
    return "profile with --batch {batch}"


def session_rss_mb(
    before: Mapping[str, float | None], after: Mapping[str, float | None], peak_reset: bool
) -> float | None:
    """Return the memory that the session and its runs added, in MB, or None if unknown.

    That is the peak RSS since the reset minus the RSS read just after it, so it leaves
    out what the process held before. It is smaller where the process reuses memory that
    it freed earlier: 0.0 MB for the demo's models measured in the process that trained
    them, 14.6 MB for the same LSTM under `rnnedge profile`. Without a reset the peak
    may predate the session, so the result is None.
    """
    peak, start = after.get("peak_rss_mb"), before.get("rss_mb")
    if not peak_reset or peak is None or start is None:
        return None
    return round(max(peak - start, 0.0), 1)


def resolve_device(
    device: str | DeviceProfile | None,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    hint: str | None = None,
) -> DeviceProfile:
    """Return the profile for a device name, a profile as given, or this host's profile.

    Args:
        hint: the fix named in the error for an unknown device name (see `load_device`).
    """
    if isinstance(device, str):
        return load_device(device, user_dir, hint=hint or UNKNOWN_DEVICE_HINT)
    if device is None:
        return default_device(user_dir)
    return device


def confirm_host(profile: DeviceProfile, explicit: bool, force_device: bool, records: bool) -> bool:
    """Check that this host matches the `recognize` rules of the device it is profiled as.

    Args:
        explicit: the caller named the device; this host's own profile needs no check.
        force_device: accept a mismatch with a warning.
        records: the measurements will be stored or compared with stored ones, so a
            mismatch without `force_device` raises; otherwise it is a warning.

    Returns:
        True when this host does not match and the measurement goes ahead anyway.
    """
    if not explicit or host_matches(profile):
        return False
    described = (
        f"this host ({describe_host()}) does not look like device {profile.name!r}, whose "
        f"recognize rules need {describe_recognize(profile)}"
    )
    if records and not force_device:
        raise DeviceProfileError(
            f"{described}; profile on that device (from here: rnnedge profile --remote "
            "USER@HOST), or pass --force-device (force_device=True from Python) to record "
            "this host's measurements under it anyway"
        )
    logger.warning("%s; the measurements of this host are marked host_mismatch: true", described)
    return True


def model_architecture(session: Session) -> dict[str, Any]:
    """The recurrent architecture recorded in the model's rnnedge metadata, where present."""
    meta = session.metadata
    extra = dict(meta.extra)
    architecture: dict[str, Any] = {"cell": meta.cell, "features": meta.features}
    for key in ("hidden_size", "num_layers"):
        value = extra.get(key)
        architecture[key] = int(value) if value is not None and value.isdigit() else None
    bidirectional = extra.get("bidirectional")
    architecture["bidirectional"] = None if bidirectional is None else bidirectional == "true"
    return architecture
