"""Measurement conditions beyond `rnnedge.host.host_fingerprint`: clocks of every CPU,
throttling, the Jetson release and power mode, and the process's resident memory.

Every reader returns None where the file is missing or unreadable (containers, other
operating systems), so a fingerprint never fails a profile run.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from rnnedge.host import host_fingerprint


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_clocks() -> list[dict[str, Any]]:
    """Governor, current and maximum clock (MHz) of each CPU that exposes cpufreq."""
    clocks = []
    for folder in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        current = _read(folder / "scaling_cur_freq")
        maximum = _read(folder / "cpuinfo_max_freq")
        clocks.append(
            {
                "cpu": folder.parent.name,
                "governor": _read(folder / "scaling_governor"),
                "current_mhz": int(current) // 1000 if current and current.isdigit() else None,
                "max_mhz": int(maximum) // 1000 if maximum and maximum.isdigit() else None,
            }
        )
    return clocks


def throttling() -> dict[str, Any] | None:
    """Throttling state where the kernel reports it.

    Raspberry Pi firmware exposes a bit field (`get_throttled`): bit 0 under-voltage now,
    bit 2 throttled now, bit 3 soft temperature limit now, bits 16 to 19 the same since
    boot. x86 kernels count thermal throttle events per core.
    """
    state: dict[str, Any] = {}
    pi = _read("/sys/devices/platform/soc/soc:firmware/get_throttled")
    if pi is not None:
        with contextlib.suppress(ValueError):
            bits = int(pi, 16)
            state["raspberry_pi_get_throttled"] = hex(bits)
            state["throttled_now"] = bool(bits & 0b1110)
            state["throttled_since_boot"] = bool(bits & (0b1111 << 16))
    count = _read("/sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count")
    if count is not None and count.isdigit():
        state["cpu0_thermal_throttle_count"] = int(count)
    temperature = _read("/sys/class/thermal/thermal_zone0/temp")
    if temperature is not None and temperature.lstrip("-").isdigit():
        state["thermal_zone0_c"] = int(temperature) / 1000
    return state or None


def jetson_info() -> dict[str, Any] | None:
    """The L4T release (which fixes the JetPack version) and the nvpmodel power mode."""
    release = _read("/etc/nv_tegra_release")
    if release is None:
        return None
    info: dict[str, Any] = {"l4t_release": release.splitlines()[0]}
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    if match:
        info["l4t"] = f"{match.group(1)}.{match.group(2)}"
    status = _read("/var/lib/nvpmodel/status")
    if status:
        mode = re.search(r"pmode:(\d+)", status)
        info["power_mode"] = int(mode.group(1)) if mode else status
    return info


def rss_mb() -> dict[str, float | None]:
    """Resident memory of this process now (`VmRSS`) and at its peak (`VmHWM`), in MB."""
    text = _read("/proc/self/status") or ""
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
    fingerprint["cpu_clocks"] = cpu_clocks()
    fingerprint["throttling"] = throttling()
    jetson = jetson_info()
    if jetson is not None:
        fingerprint["jetson"] = jetson
    return fingerprint
