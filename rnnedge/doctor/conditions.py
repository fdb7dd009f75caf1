"""Checks of the conditions that spoil a latency measurement.

The facts come from `rnnedge.host.measurement_conditions`, the same record that
`rnnedge profile` stores with each measurement, so doctor and profile judge one record
the same way. Facts this host does not expose (cpufreq and thermal zones in most VMs and
containers) are reported as ok with the reason, not as warnings.
"""

from __future__ import annotations

from typing import Any

from rnnedge.doctor.findings import Area, Finding, Status, ok, warning

_A = Area.CONDITIONS
# A clock this far below the maximum under the performance governor means a cap.
_CLOCK_SLACK = 0.95
# Load above this share of the logical cores means other work competes for the CPU.
_BUSY_LOAD_SHARE = 0.5

_GOVERNOR_FIX = (
    "set the performance governor for the measurement: "
    "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"
)


def check_conditions(conditions: dict[str, Any], logical_cores: int | None) -> list[Finding]:
    """Judge one `measurement_conditions` record."""
    return [
        _governor(conditions),
        _clock(conditions),
        _thermal(conditions),
        _pi_throttled(conditions),
        _power_mode(conditions),
        _swap(conditions),
        _load(conditions, logical_cores),
    ]


def spoilers(conditions: dict[str, Any], logical_cores: int | None = None) -> list[Finding]:
    """Return the warnings among the condition checks: what makes a measurement untrustworthy.

    Without `logical_cores` the load average is not judged: during a profile run it
    counts the measuring process itself.
    """
    return [f for f in check_conditions(conditions, logical_cores) if f.status is not Status.OK]


def _governor(conditions: dict[str, Any]) -> Finding:
    governors = conditions.get("governors") or []
    if not governors:
        return ok(_A, "governor", "no cpufreq governor exposed (typical of VMs and containers)")
    others = [g for g in governors if g != "performance"]
    if others:
        return warning(
            _A, "governor", f"CPU frequency governor {', '.join(governors)}, not performance",
            _GOVERNOR_FIX, governors=governors,
        )  # fmt: skip
    return ok(_A, "governor", "CPU frequency governor performance", governors=governors)


def _clock(conditions: dict[str, Any]) -> Finding:
    clock = conditions.get("clock_mhz") or {}
    current, maximum = clock.get("current_min"), clock.get("max")
    if current is None or maximum is None:
        return ok(_A, "clock", "CPU clocks not exposed")
    message = f"CPU clock {current} MHz (lowest core) of {maximum} MHz maximum"
    if current < maximum * _CLOCK_SLACK:
        return warning(
            _A, "clock", message,
            "with an idle CPU this can be the governor saving power; under load it is a cap: "
            f"{_GOVERNOR_FIX}, then check cooling and the power supply",
            **clock,
        )  # fmt: skip
    return ok(_A, "clock", message, **clock)


def _thermal(conditions: dict[str, Any]) -> Finding:
    thermal = conditions.get("thermal") or {}
    temp = thermal.get("max_temp_c")
    reached = thermal.get("passive_trips_reached") or []
    cooling = thermal.get("cpu_cooling_active") or []
    if temp is None and not cooling:
        return ok(_A, "thermal", "no thermal zones exposed")
    message = f"hottest thermal zone {temp:.1f} °C" if temp is not None else "thermal zones"
    if reached or cooling:
        causes = ", ".join([*reached, *cooling])
        return warning(
            _A, "thermal", f"{message}; the kernel is throttling: {causes}",
            "cool the board (a heatsink and fan), let it cool down, then measure again",
            **thermal,
        )  # fmt: skip
    return ok(_A, "thermal", f"{message}; no throttling", **thermal)


def _pi_throttled(conditions: dict[str, Any]) -> Finding:
    flags = conditions.get("pi_throttled")
    if flags is None:
        return ok(
            _A,
            "pi_throttled",
            "no Raspberry Pi throttling flags (neither the firmware's sysfs file nor vcgencmd)",
        )
    now, since = flags.get("now") or [], flags.get("since_boot") or []
    if now:
        fix = (
            "use the official power supply (under-voltage caps the clock)"
            if "under-voltage" in now
            else "cool the board and measure again"
        )
        return warning(
            _A, "pi_throttled",
            f"firmware reports {flags['raw']}: {', '.join(now)} now", fix, **flags
        )  # fmt: skip
    if since:
        return warning(
            _A, "pi_throttled",
            f"firmware reports {flags['raw']}: {', '.join(since)} since boot, not now",
            "earlier measurements of this boot may be slow; check the power supply and "
            "cooling, then reboot and measure again",
            **flags,
        )  # fmt: skip
    return ok(_A, "pi_throttled", f"firmware reports {flags['raw']}: no throttling", **flags)


def _power_mode(conditions: dict[str, Any]) -> Finding:
    mode = conditions.get("jetson_power_mode")
    if mode is None:
        return ok(_A, "power_mode", "nvpmodel not present (not a Jetson)")
    best = mode.get("max")
    if best is None:
        return ok(_A, "power_mode", f"Jetson power mode {mode.get('name')} (maximum not known)",
                  **mode)  # fmt: skip
    if mode.get("id") != best["id"]:
        return warning(
            _A, "power_mode",
            f"Jetson power mode {mode.get('name')} (id {mode.get('id')}), not the fastest, "
            f"{best['name']}",
            f"sudo nvpmodel -m {best['id']} && sudo jetson_clocks",
            **mode,
        )  # fmt: skip
    return ok(_A, "power_mode", f"Jetson power mode {mode.get('name')} (the fastest)", **mode)


def _swap(conditions: dict[str, Any]) -> Finding:
    used = conditions.get("swap_used_mb")
    if used is None:
        return ok(_A, "swap", "swap use not readable")
    if used > 0:
        return warning(
            _A, "swap", f"{used} MB of swap in use",
            "close other programs or use a smaller model; a page fault in the timed loop "
            "costs milliseconds",
            swap_used_mb=used,
        )  # fmt: skip
    return ok(_A, "swap", "no swap in use", swap_used_mb=used)


def _load(conditions: dict[str, Any], logical_cores: int | None) -> Finding:
    load = conditions.get("load_1min")
    if load is None or not logical_cores:
        return ok(_A, "load", "load average not readable")
    message = f"load average {load:.2f} over the last minute on {logical_cores} logical cores"
    if load > _BUSY_LOAD_SHARE * logical_cores:
        return warning(
            _A, "load", message,
            "stop other work on this host while measuring; competing processes inflate p99",
            load_1min=load,
        )  # fmt: skip
    return ok(_A, "load", message, load_1min=load)
