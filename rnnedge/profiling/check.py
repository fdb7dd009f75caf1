"""`rnnedge profile --check`: re-measure and compare with the stored baseline.

The check never stores its own measurements, so the baseline stays what the user
recorded. See `rnnedge.profiling.compare.check_regression` for the threshold.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from rnnedge.profiling.catalog import USER_DEVICES_DIR, DeviceProfile
from rnnedge.profiling.compare import DEFAULT_TOLERANCE, CheckResult, baseline_for, check_regression
from rnnedge.profiling.profile import ProfileResult, resolve_device
from rnnedge.profiling.sweeps import SweepPoint, run_sweep


def check_points(
    points: Sequence[SweepPoint],
    device: str | DeviceProfile | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    on_point: Callable[[int, int, SweepPoint, ProfileResult], None] | None = None,
    *,
    force_device: bool = False,
    **options: Any,
) -> list[tuple[ProfileResult, CheckResult]]:
    """Measure every point and compare it with the stored measurements of its configuration.

    Raises:
        InputError: a point has no stored baseline; the message names the cause.
        DeviceProfileError: `device` does not describe this host and `force_device` is
            not set, because its stored measurements come from another machine.
    """
    profile = resolve_device(device, user_dir)
    source = str(profile.path) if profile.path else f"device {profile.name!r}"
    results = run_sweep(
        points,
        profile,
        store=False,
        user_dir=user_dir,
        on_point=on_point,
        force_device=force_device,
        compared=True,
        **options,
    )
    checked = []
    for result in results:
        baseline = baseline_for(result.measurement, profile.measurements, source)
        checked.append((result, check_regression(result.measurement, baseline, tolerance)))
    return checked
