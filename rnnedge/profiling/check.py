"""`rnnedge profile --check`: re-measure and compare with the stored baseline.

The check never stores its own measurements, so the baseline stays what the user
recorded. See `rnnedge.profiling.compare.check_regression` for the threshold.

A configuration whose measurement exceeds the threshold is measured once more with the
same settings, and it fails only if that second measurement exceeds the threshold too
(see `confirm_regression`). One slow run on a shared host, where other processes take the
cores for a while, then does not fail the check on its own.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from rnnedge.profiling.catalog import USER_DEVICES_DIR, DeviceProfile
from rnnedge.profiling.compare import DEFAULT_TOLERANCE, CheckResult, baseline_for, check_regression
from rnnedge.profiling.profile import ProfileResult, resolve_device
from rnnedge.profiling.sweeps import SweepPoint, run_sweep

logger = logging.getLogger(__name__)


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

    A point that exceeds the threshold is measured a second time; the result returned for
    it is the one `confirm_regression` chooses.

    Raises:
        InputError: a point has no stored baseline; the message names the cause.
        DeviceProfileError: `device` does not describe this host and `force_device` is
            not set, because its stored measurements come from another machine.
    """
    profile = resolve_device(device, user_dir)
    source = str(profile.path) if profile.path else f"device {profile.name!r}"
    sweep_options = {"store": False, "user_dir": user_dir, "force_device": force_device,
                     "compared": True, **options}  # fmt: skip
    results = run_sweep(points, profile, on_point=on_point, **sweep_options)
    checked = []
    for point, result in zip(points, results, strict=True):
        baseline = baseline_for(result.measurement, profile.measurements, source)
        outcome = check_regression(result.measurement, baseline, tolerance)
        if outcome.regressed:
            logger.info(
                "%s: p50 %.4f ms is %+.1f%% against the stored %.4f ms; measuring again",
                point.label(), outcome.new_p50_ms, outcome.change * 100, outcome.baseline_p50_ms,
            )  # fmt: skip
            (repeat,) = run_sweep([point], profile, **sweep_options)
            repeat_outcome = check_regression(repeat.measurement, baseline, tolerance)
            chosen, outcome = confirm_regression(outcome, repeat_outcome)
            result = (result, repeat)[chosen]
        checked.append((result, outcome))
    return checked


def confirm_regression(first: CheckResult, repeat: CheckResult) -> tuple[int, CheckResult]:
    """Combine the check of a first measurement that regressed with the check of its repeat.

    The configuration regressed only if both measurements exceed their thresholds. The
    outcome reported is that of the better measurement, the one whose change lies
    further below its threshold, so a regression that both confirm is reported at its
    smaller size. The outcome carries both p50s in `measured_p50s_ms`.

    Returns:
        The index of the better measurement (0 for the first, 1 for the repeat) and its
        outcome, with `regressed` set only where both regressed.
    """
    margins = (first.change - first.threshold, repeat.change - repeat.threshold)
    chosen = 0 if margins[0] < margins[1] else 1
    better = (first, repeat)[chosen]
    return chosen, dataclasses.replace(
        better,
        regressed=first.regressed and repeat.regressed,
        measured_p50s_ms=(first.new_p50_ms, repeat.new_p50_ms),
    )
