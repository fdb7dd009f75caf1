"""Measuring one model configuration on this host and recording it in a device profile."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge import __version__
from rnnedge.errors import InputError
from rnnedge.profiling.catalog import USER_DEVICES_DIR, DeviceProfile, default_device, load_device
from rnnedge.profiling.fingerprint import measurement_host, reset_peak_rss, rss_mb
from rnnedge.profiling.operators import top_operators
from rnnedge.profiling.store import add_measurements
from rnnedge.profiling.timing import LatencyStats, measure
from rnnedge.runtime.memory import check_run_memory
from rnnedge.runtime.providers import Provider
from rnnedge.runtime.session import Session, open_model_file

logger = logging.getLogger(__name__)


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


def synthetic_input(
    session: Session, batch: int, seq_len: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Build a feed of the given batch and length for every input of the model.

    Float sequence inputs are standard-normal; integer inputs of rank 1 (the lengths of
    a padded batch) hold `seq_len` for every sequence; recurrent state inputs start at
    zero and constant inputs keep the session's values.
    """
    if batch < 1:
        raise InputError(f"batch must be at least 1, got {batch}")
    if seq_len < 1:
        raise InputError(f"sequence length must be at least 1, got {seq_len}")
    check_run_memory(session, batch, seq_len)
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for info in session.data_inputs:
        if info.type in ("tensor(int64)", "tensor(int32)") and len(info.shape) == 1:
            dtype = np.int64 if info.type == "tensor(int64)" else np.int32
            feed[info.name] = np.full(batch, seq_len, dtype=dtype)
            continue
        shape = []
        for axis, dim in enumerate(info.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif axis == (0 if session.batch_major else 1):
                shape.append(batch)
            else:
                shape.append(seq_len)
        feed[info.name] = rng.standard_normal(shape).astype(np.float32)
    for pair in session.state_pairs:
        feed[pair.input] = pair.zeros(batch)
    feed.update(session.feeds)
    return feed


def profile_model(
    model: str | Path,
    device: str | DeviceProfile | None = None,
    provider: Provider | str = Provider.AUTO,
    batch: int = 1,
    seq_len: int = 100,
    threads: int | None = None,
    warmup: int = 20,
    runs: int = 200,
    budget_s: float | None = None,
    strict_provider: bool = False,
    store: bool = True,
    user_dir: Path = USER_DEVICES_DIR,
    operators: int = 10,
    operator_runs: int = 10,
) -> ProfileResult:
    """Measure latency of `model` and, if `store`, append it to the device's profile.

    Args:
        device: a device name or profile; this host's recognized profile if None.
        warmup: untimed runs before measuring.
        runs: timed runs (fewer if `budget_s` seconds run out first).
        budget_s: seconds of timed runs after which measuring stops early.
        operators: how many operator types to rank with ONNX Runtime's profiler (0: none).
        operator_runs: runs of the separate, profiled session that ranks the operators.
    """
    path = open_model_file(model)
    profile = resolve_device(device, user_dir)
    if budget_s is not None and budget_s <= 0:
        raise InputError(f"time budget must be positive, got {budget_s} s")

    # Reset first: the peak since the reset is then at least the RSS read just after it.
    peak_reset = reset_peak_rss()
    memory_before = rss_mb()
    started = time.perf_counter()
    session = Session(
        path, device=profile, provider=provider, strict_provider=strict_provider,
        threads=threads, normalize=False,
    )  # fmt: skip
    created = time.perf_counter()
    feed = synthetic_input(session, batch, seq_len)
    session.run_prepared(feed)
    cold_start_ms = (time.perf_counter() - started) * 1e3
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
        "top_operators": ranked,
        "host": measurement_host(),
        "conditions": conditions,
        "rnnedge": __version__,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    written = add_measurements(profile, [measurement], user_dir) if store else None
    return ProfileResult(profile.name, measurement, stats, written)


def resolve_device(
    device: str | DeviceProfile | None, user_dir: Path = USER_DEVICES_DIR
) -> DeviceProfile:
    """Return the profile for a device name, a profile as given, or this host's profile."""
    if isinstance(device, str):
        return load_device(device, user_dir)
    if device is None:
        return default_device(user_dir)
    return device


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
