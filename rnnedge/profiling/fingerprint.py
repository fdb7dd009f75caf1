"""The host record stored with each measurement, and the process's resident memory.

`rnnedge.host` reads the host facts (clocks, throttling, the Jetson release and power
mode), and this module arranges them into the `host` field of a measurement. Those readers
return None or an empty list where a file is missing or unreadable (containers, other
operating systems), so a fingerprint never fails a profile run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from rnnedge.host import (
    cpufreq_info,
    host_fingerprint,
    jetson_power_mode,
    jetson_release,
    raspberry_pi_throttled,
    read_text,
    thermal_info,
    thermal_throttle_count,
)


def throttling(root: str | os.PathLike[str] = "/") -> dict[str, Any] | None:
    """Throttling state where the kernel reports it; None where nothing is readable.

    `throttled_now` counts the Raspberry Pi firmware's frequency cap, throttling and soft
    temperature limit, but not under-voltage alone; `throttled_since_boot` counts all four.
    """
    state: dict[str, Any] = {}
    pi = raspberry_pi_throttled(root)
    if pi is not None:
        state["raspberry_pi_get_throttled"] = pi["raw"]
        state["throttled_now"] = any(flag != "under-voltage" for flag in pi["now"])
        state["throttled_since_boot"] = bool(pi["since_boot"])
    count = thermal_throttle_count(root)
    if count is not None:
        state["cpu0_thermal_throttle_count"] = count
    zones = thermal_info(root)["zones"]
    zone0 = next((zone for zone in zones if zone["zone"] == "thermal_zone0"), None)
    if zone0 is not None and zone0["temp_c"] is not None:
        state["thermal_zone0_c"] = zone0["temp_c"]
    return state or None


def jetson_info(root: str | os.PathLike[str] = "/") -> dict[str, Any] | None:
    """Read the L4T release of a Jetson and its nvpmodel power mode id; None elsewhere."""
    info = jetson_release(root)
    if info is None:
        return None
    power = jetson_power_mode(root)
    if power is not None and power["id"] is not None:
        info["power_mode"] = power["id"]
    return info


def rss_mb() -> dict[str, float | None]:
    """Resident memory of this process now (`VmRSS`) and at its peak (`VmHWM`), in MB."""
    text = read_text("/proc/self/status") or ""
    values: dict[str, float | None] = {}
    for key, name in (("VmRSS", "rss_mb"), ("VmHWM", "peak_rss_mb")):
        match = re.search(rf"^{key}:\s*(\d+) kB", text, re.MULTILINE)
        values[name] = round(int(match.group(1)) / 1024, 1) if match else None
    return values


def reset_peak_rss() -> bool:
    """Reset `VmHWM` to the current RSS (Linux 4.0 and later); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def measurement_host() -> dict[str, Any]:
    """The host fingerprint stored with each measurement."""
    fingerprint = host_fingerprint()
    fingerprint["cpu_clocks"] = cpufreq_info()
    fingerprint["throttling"] = throttling()
    jetson = jetson_info()
    if jetson is not None:
        fingerprint["jetson"] = jetson
    return fingerprint
