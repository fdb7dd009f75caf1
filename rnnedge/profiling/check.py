"""`rnnedge profile --check`: re-measure and compare with the stored baseline.

The check never stores its own measurements, so the baseline stays what the user
recorded. See `rnnedge.profiling.compare.check_regression` for the threshold.

Every point must have a stored baseline before anything is measured. A configuration
whose measurement exceeds the threshold is measured once more with the same settings, and
it fails only if that second measurement exceeds the threshold too (see
`confirm_regression`). One slow run on a shared host, where other processes take the cores
for a while, then does not fail the check on its own. The second measurement starts after
a pause as long as the first measurement took (see `repeat_delay_s`), so that a slowdown
of a few seconds does not cover both.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from rnnedge.profiling.catalog import USER_DEVICES_DIR, DeviceProfile, as_user_dir
from rnnedge.profiling.compare import (
    DEFAULT_TOLERANCE,
    CheckResult,
    check_regression,
    stored_baseline,
)
from rnnedge.profiling.profile import ProfileResult, confirm_host, resolve_device
from rnnedge.profiling.sweeps import SweepPoint, measure_point, plan_points

logger = logging.getLogger(__name__)

# The bounds of the pause before a second measurement, in seconds.
MIN_REPEAT_DELAY_S = 1.0
MAX_REPEAT_DELAY_S = 10.0


def check_points(
    points: Sequence[SweepPoint],
    device: str | DeviceProfile | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    on_point: Callable[[int, int, SweepPoint, ProfileResult], None] | None = None,
    *,
    force_device: bool = False,
    sleep: Callable[[float], Any] = time.sleep,
    **options: Any,
) -> list[tuple[ProfileResult, CheckResult]]:
    """Measure every point and compare it with the stored measurements of its configuration.

    Every point's inputs, sizes and baseline are checked before the first is measured.
    A point that exceeds the threshold is measured a second time after a pause of
    `repeat_delay_s` seconds, spent in `sleep`; the result returned for it is the one
    `confirm_regression` chooses.

    Raises:
        InputError: a point cannot be measured or has no stored baseline; the message
            names the cause.
        DeviceProfileError: `device` does not describe this host and `force_device` is
            not set, because its stored measurements come from another machine.
    """
    user_dir = as_user_dir(user_dir)
    profile = resolve_device(device, user_dir)
    mismatch = confirm_host(profile, device is not None, force_device, records=True)
    planned = plan_points(points, profile, **options)
    for item in planned:
        stored_baseline(item.configuration, profile, user_dir)
    checked = []
    for index, item in enumerate(planned, start=1):
        point = item.point
        started = time.perf_counter()
        result = _measure(point, profile, mismatch, options)
        elapsed_s = time.perf_counter() - started
        baseline = stored_baseline(result.measurement, profile, user_dir)
        outcome = check_regression(result.measurement, baseline, tolerance)
        if outcome.regressed:
            delay_s = repeat_delay_s(elapsed_s)
            logger.info(
                "%s: p50 %.4f ms is %+.1f%% against the stored %.4f ms; measuring again "
                "in %.1f s",
                point.label(result.measurement["threads"]), outcome.new_p50_ms,
                outcome.change * 100, outcome.baseline_p50_ms, delay_s,
            )  # fmt: skip
            sleep(delay_s)
            repeat = _measure(point, profile, mismatch, options)
            repeat_outcome = check_regression(repeat.measurement, baseline, tolerance)
            chosen, outcome = confirm_regression(outcome, repeat_outcome)
            result = (result, repeat)[chosen]
        checked.append((result, outcome))
        if on_point is not None:
            on_point(index, len(planned), point, result)
    return checked


def repeat_delay_s(first_s: float) -> float:
    """Return the pause before a second measurement: as long as the first one took, within
    `MIN_REPEAT_DELAY_S` and `MAX_REPEAT_DELAY_S`.

    Another process that slowed the first measurement may run for a few seconds more, and
    a repeat right after the first would then be slowed by it too.
    """
    return min(max(first_s, MIN_REPEAT_DELAY_S), MAX_REPEAT_DELAY_S)


def _measure(
    point: SweepPoint, profile: DeviceProfile, mismatch: bool, options: dict[str, Any]
) -> ProfileResult:
    measurement, stats = measure_point(point, profile, mismatch, **options)
    return ProfileResult(profile.name, measurement, stats, None)


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
