"""Sweeps: one measurement per point of the product of the swept axes.

Axes are batch, sequence length, threads and precision. A precision axis selects among
the model files given (their precision comes from the rnnedge metadata), because
quantizing needs the onnx package, which a board may not have.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnedge.errors import InputError
from rnnedge.profiling.catalog import USER_DEVICES_DIR, DeviceProfile, as_user_dir
from rnnedge.profiling.profile import (
    ProfileResult,
    confirm_host,
    constant_batch_fix,
    file_sha256,
    measure_configuration,
    open_session,
    resolve_device,
)
from rnnedge.profiling.store import add_measurements, check_user_dir
from rnnedge.profiling.synthetic import check_inputs, measured_sizes, synthetic_input
from rnnedge.profiling.timing import LatencyStats
from rnnedge.runtime.session import Session, open_model_file

logger = logging.getLogger(__name__)

AXES = ("batch", "seq_len", "threads", "precision")
_ALIASES = {
    "seq-len": "seq_len",
    "seq_len": "seq_len",
    "batch": "batch",
    "threads": "threads",
    "precision": "precision",
}


@dataclass(frozen=True)
class SweepPoint:
    """One configuration of a sweep; a size left as None is the model's fixed size or the
    default (see `rnnedge.profiling.synthetic.measured_sizes`)."""

    model: Path
    batch: int | None
    seq_len: int | None
    threads: int | None

    def label(self, threads: int | None = None) -> str:
        """Describe the point; `threads` is the count a session used where the point left
        it to the device profile's default."""
        count = self.threads if self.threads is not None else threads
        shown = "default" if count is None else count
        batch = "default" if self.batch is None else self.batch
        seq_len = "default" if self.seq_len is None else self.seq_len
        return f"{self.model.name} batch {batch} seq_len {seq_len} threads {shown}"


def parse_sweep(specs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse `axis=v1,v2,...` strings, e.g. `seq-len=1,10,100`, into axis -> values."""
    axes: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        axis = _ALIASES.get(name.strip())
        if not sep or axis is None:
            raise InputError(
                f"invalid sweep {spec!r}; use AXIS=V1,V2,... with AXIS one of batch, seq-len, "
                "threads, precision"
            )
        if axis in axes:
            raise InputError(f"sweep axis {name!r} given twice; list all its values once")
        items = [v.strip() for v in values.split(",")]
        if not any(items):
            raise InputError(f"sweep {spec!r} lists no values; e.g. seq-len=1,10,100")
        if not all(items):
            fixed = f"{name.strip()}={','.join(item for item in items if item)}"
            raise InputError(
                f"sweep {spec!r} contains an empty value; remove the extra comma: {fixed}"
            )
        if axis == "precision":
            axes[axis] = _distinct(items, spec)
            continue
        numbers = []
        for item in items:
            try:
                numbers.append(int(item))
            except ValueError as exc:
                raise InputError(
                    f"--sweep {spec!r}: values must be integers, got {item!r}"
                ) from exc
        if min(numbers) < 1:
            raise InputError(f"--sweep {spec!r}: values must be at least 1, got {min(numbers)}")
        axes[axis] = _distinct(numbers, spec)
    return axes


def _distinct(values: list[Any], spec: str) -> list[Any]:
    """Return `values`; raise if one repeats, since each point would be measured twice."""
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise InputError(
            f"sweep {spec!r} lists {', '.join(repeated)} more than once; list each value once"
        )
    return values


def sweep_points(
    models: Sequence[str | Path],
    axes: dict[str, list[Any]],
    batch: int | None = None,
    seq_len: int | None = None,
    threads: int | None = None,
) -> list[SweepPoint]:
    """Expand the axes into points; the values given fill the axes not swept."""
    paths = [open_model_file(m) for m in models]
    if not paths:
        raise InputError("no model given; pass at least one .onnx file")
    if "precision" in axes:
        paths = _select_by_precision(paths, axes["precision"])
    points = []
    for path, b, n, t in itertools.product(
        paths,
        axes.get("batch", [batch]),
        axes.get("seq_len", [seq_len]),
        axes.get("threads", [threads]),
    ):
        points.append(SweepPoint(path, b, n, t))
    return points


def _select_by_precision(paths: list[Path], wanted: list[str]) -> list[Path]:
    import onnxruntime as ort

    from rnnedge.runtime.metadata import ModelMetadata
    from rnnedge.runtime.session import set_load_format

    by_precision: dict[str, list[Path]] = {}
    for path in paths:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        set_load_format(options, path)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        props = session.get_modelmeta().custom_metadata_map
        by_precision.setdefault(ModelMetadata.from_props(props).precision, []).append(path)
    selected = []
    for precision in wanted:
        if precision not in by_precision:
            have = ", ".join(sorted(by_precision)) or "none"
            raise InputError(
                f"no model of precision {precision!r} among the files given (they are: {have}); "
                f"quantize one, e.g. rnnedge quantize MODEL -o MODEL.{precision}.onnx, and pass "
                "every file"
            )
        selected.extend(by_precision[precision])
    return selected


@dataclass(frozen=True)
class PlannedPoint:
    """A sweep point with its sizes resolved, and the configuration it will be stored as."""

    point: SweepPoint
    # The configuration fields of a measurement (see `rnnedge.profiling.compare.CONFIG_FIELDS`)
    # and the model's file name.
    configuration: dict[str, Any]


def plan_points(
    points: Sequence[SweepPoint], profile: DeviceProfile, **options: Any
) -> list[PlannedPoint]:
    """Check that every point can be measured, and resolve its sizes, before measuring any.

    Each model opens one session per thread count, as measuring would, but runs nothing:
    its inputs must be fillable by a synthetic input, and the sizes of each point must fit
    the sizes that the model's inputs fix (see `rnnedge.profiling.synthetic`).

    Args:
        options: the measuring options; provider, strict_provider, state_pairs, feeds,
            layout and size_options are used, the others ignored.

    Raises:
        InputError: a point cannot be measured; the message names the input or option.
    """
    session_options = {
        name: options[name]
        for name in ("provider", "strict_provider", "state_pairs", "feeds", "layout")
        if name in options
    }
    size_options = options.get("size_options")
    groups: dict[tuple[Path, int | None], list[int]] = {}
    for index, point in enumerate(points):
        groups.setdefault((point.model, point.threads), []).append(index)
    planned: list[PlannedPoint | None] = [None] * len(points)
    hashes: dict[Path, str] = {}
    for (model, threads), indices in groups.items():
        path = open_model_file(model)
        # One session at a time, so that a sweep of many models holds only one.
        with _session_logs_held_back():
            session = open_session(path, profile, threads=threads, **session_options)
        check_inputs(session)
        sha256 = hashes.setdefault(path, file_sha256(path))
        for index in indices:
            point = points[index]
            batch, seq_len = measured_sizes(
                session, point.batch, point.seq_len, size_options=size_options
            )
            synthetic_input(session, batch, seq_len, batch_fix=constant_batch_fix(size_options))
            configuration = {
                "model": path.name,
                "model_sha256": sha256,
                "precision": session.metadata.precision,
                "provider": session.primary_provider,
                "batch": batch,
                "seq_len": seq_len,
                "threads": session.threads,
            }
            resolved = SweepPoint(point.model, batch, seq_len, point.threads)
            planned[index] = PlannedPoint(resolved, configuration)
        del session
    return [item for item in planned if item is not None]


@contextlib.contextmanager
def _session_logs_held_back() -> Iterator[None]:
    """Hold back what opening a session logs below ERROR, such as the warning that the
    threads exceed the logical cores.

    A planned point's own session logs it again when the point is measured, so the
    warning comes with the point it concerns rather than before the first point.
    """
    session_logger = logging.getLogger(Session.__module__)

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    session_logger.addFilter(keep)
    try:
        yield
    finally:
        session_logger.removeFilter(keep)


def measure_point(
    point: SweepPoint,
    profile: DeviceProfile,
    host_mismatch: bool = False,
    **options: Any,
) -> tuple[dict[str, Any], LatencyStats]:
    """Measure one point; `options` go to `measure_configuration` (`progress` included)."""
    return measure_configuration(
        open_model_file(point.model),
        profile,
        batch=point.batch,
        seq_len=point.seq_len,
        threads=point.threads,
        host_mismatch=host_mismatch,
        **options,
    )


def run_sweep(
    points: Sequence[SweepPoint],
    device: str | DeviceProfile | None = None,
    store: bool = True,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    on_point: Callable[[int, int, SweepPoint, ProfileResult], None] | None = None,
    *,
    force_device: bool = False,
    compared: bool = False,
    **options: Any,
) -> list[ProfileResult]:
    """Profile every point; each result is stored as soon as it is measured.

    Storing point by point means an interrupted sweep keeps what it measured. A point that
    cannot be measured (see `plan_points`) stops the sweep before anything is stored.
    `options` go to `measure_configuration` (provider, warmup, runs, budget_s, ...), and
    `on_point(done, total, point, result)` reports each point as it completes, with its
    sizes resolved from the second point on.
    `force_device` and `compared` (the results are compared with stored measurements,
    as `--check` does) decide what a device that does not match this host does; see
    `confirm_host`.
    """
    user_dir = check_user_dir(user_dir) if store else as_user_dir(user_dir)
    profile = resolve_device(device, user_dir)
    mismatch = confirm_host(profile, device is not None, force_device, store or compared)
    if not points:
        return []
    total = len(points)
    first = measure_point(
        points[0], profile, mismatch, progress=f"sweep point 1/{total}", **options
    )
    # The other points are checked after the first is measured, because the process would
    # reuse the freed memory of the check's sessions and so lower the first point's memory
    # figures. They are checked before the first point is stored, so a bad one stores nothing.
    rest = [planned.point for planned in plan_points(points[1:], profile, **options)]
    results = []
    for index, point in enumerate([points[0], *rest], start=1):
        if index == 1:
            measurement, stats = first
        else:
            progress = f"sweep point {index}/{total}"
            measurement, stats = measure_point(
                point, profile, mismatch, progress=progress, **options
            )
        written = add_measurements(profile, [measurement], user_dir) if store else None
        result = ProfileResult(profile.name, measurement, stats, written)
        results.append(result)
        if on_point is not None:
            on_point(index, total, point, result)
    return results
