"""This host: CPU model and features, clocks, memory, board identity and software."""

from __future__ import annotations

import logging
import os
import platform
import re
from pathlib import Path
from typing import Any

import onnxruntime as ort

logger = logging.getLogger(__name__)

# CPU features that the integer and float kernels of ONNX Runtime depend on.
_X86_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
_ARM_FLAGS = ("asimd", "asimddp", "fphp", "asimdhp", "i8mm", "sve")


def read_text(path: str | os.PathLike[str]) -> str | None:
    """Read a small kernel or system file; None where it is missing or unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_info() -> dict[str, Any]:
    """CPU model, logical and physical core counts and the kernel-relevant flags."""
    text = read_text("/proc/cpuinfo") or ""
    model = None
    for key in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            model = match.group(1).strip()
            break
    flags_match = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.MULTILINE)
    flags = set(flags_match.group(1).split()) if flags_match else set()
    wanted = _ARM_FLAGS if platform.machine().lower() in {"aarch64", "arm64"} else _X86_FLAGS
    cores = {
        (m.group(1), m.group(2))
        for m in re.finditer(r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", text, re.DOTALL)
    }
    return {
        "model": model or platform.processor() or "unknown",
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(cores) or os.cpu_count(),
        "flags": sorted(flag for flag in wanted if flag in flags),
    }


def clock_info(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Frequency governor and clocks of CPU 0, where the kernel exposes them."""
    cpu0 = next((cpu for cpu in cpufreq_info(root) if cpu["cpu"] == 0), {})
    return {key: cpu0.get(key) for key in ("governor", "current_mhz", "max_mhz")}


def memory_mb() -> int | None:
    text = read_text("/proc/meminfo") or ""
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) // 1024 if match else None


def board_info() -> dict[str, Any]:
    """The board's own identification: device tree model and the Jetson L4T release."""
    release = jetson_release()
    return {
        "device_tree_model": read_text("/proc/device-tree/model"),
        "nv_tegra_release": release["l4t_release"] if release else None,
    }


def jetson_release(root: str | os.PathLike[str] = "/") -> dict[str, Any] | None:
    """Read the L4T release of a Jetson, which fixes its JetPack version; None elsewhere.

    `l4t_release` is the first line of `/etc/nv_tegra_release`, and `l4t` the release and
    revision from it, such as "36.4.3" for "# R36 (release), REVISION: 4.3".
    """
    text = _read_under(root, "/etc/nv_tegra_release")
    if text is None:
        return None
    release: dict[str, Any] = {"l4t_release": text.splitlines()[0] if text else ""}
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if match:
        release["l4t"] = f"{match.group(1)}.{match.group(2)}"
    return release


def host_fingerprint() -> dict[str, Any]:
    """Everything about this host that bears on a latency figure."""
    return {
        "cpu": cpu_info(),
        "clock": clock_info(),
        "memory_mb": memory_mb(),
        "board": board_info(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": list(ort.get_available_providers()),
    }


# Measurement conditions: facts that change a latency figure without changing the model.
# Every reader takes `root` so that a copied sysfs/procfs tree can stand in for "/".

# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware): low half is the state now,
# bits 16 and up report whether it happened since boot.
_PI_THROTTLE_BITS = {
    0: "under-voltage",
    1: "arm frequency capped",
    2: "throttled",
    3: "soft temperature limit",
}
_SINCE_BOOT_SHIFT = 16


def _read_under(root: str | os.PathLike[str], path: str) -> str | None:
    return read_text(os.path.join(os.fspath(root), path.lstrip("/")))


def _int_under(root: str | os.PathLike[str], path: str) -> int | None:
    text = _read_under(root, path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def cpufreq_info(root: str | os.PathLike[str] = "/") -> list[dict[str, Any]]:
    """Governor and clocks of every CPU that exposes cpufreq; empty in most VMs."""
    base = Path(root) / "sys/devices/system/cpu"
    cpus = sorted(
        (p for p in base.glob("cpu[0-9]*") if (p / "cpufreq").is_dir()),
        key=lambda p: int(p.name[3:]),
    )
    result = []
    for cpu in cpus:
        freq = f"/sys/devices/system/cpu/{cpu.name}/cpufreq"
        current = _int_under(root, f"{freq}/scaling_cur_freq")
        maximum = _int_under(root, f"{freq}/cpuinfo_max_freq")
        capped = _int_under(root, f"{freq}/scaling_max_freq")
        result.append({
            "cpu": int(cpu.name[3:]),
            "governor": _read_under(root, f"{freq}/scaling_governor"),
            "current_mhz": current // 1000 if current is not None else None,
            "max_mhz": maximum // 1000 if maximum is not None else None,
            "scaling_max_mhz": capped // 1000 if capped is not None else None,
        })  # fmt: skip
    return result


def thermal_info(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Thermal zones (temperature and trip points, in °C) and CPU cooling devices.

    The kernel throttles a zone at or above a `passive` trip point. A cooling device of the
    cpufreq kind with a state above 0 caps the clock.
    """
    base = Path(root) / "sys/class/thermal"
    zones = []
    for zone in sorted(base.glob("thermal_zone*")):
        rel = f"/sys/class/thermal/{zone.name}"
        temp = _int_under(root, f"{rel}/temp")
        trips = []
        for trip_type in sorted(zone.glob("trip_point_*_type")):
            prefix = trip_type.name[: -len("_type")]
            trip_temp = _int_under(root, f"{rel}/{prefix}_temp")
            if trip_temp is not None:
                trips.append({"type": read_text(trip_type), "temp_c": trip_temp / 1000})
        zones.append({
            "zone": zone.name,
            "type": _read_under(root, f"{rel}/type"),
            "temp_c": temp / 1000 if temp is not None else None,
            "trips": trips,
        })  # fmt: skip
    cooling = []
    for device in sorted(base.glob("cooling_device*")):
        rel = f"/sys/class/thermal/{device.name}"
        cooling.append({
            "device": device.name,
            "type": _read_under(root, f"{rel}/type"),
            "cur_state": _int_under(root, f"{rel}/cur_state"),
            "max_state": _int_under(root, f"{rel}/max_state"),
        })  # fmt: skip
    return {"zones": zones, "cooling": cooling}


def _run_tool(argv: list[str], timeout_s: float = 3.0) -> str | None:
    """Output of a board tool such as `vcgencmd`, or None where it is absent or fails."""
    import shutil
    import subprocess

    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_pi_throttled(text: str) -> dict[str, Any] | None:
    """Decode `throttled=0x50005` as printed by `vcgencmd get_throttled`."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    if not match:
        return None
    return decode_pi_throttled(int(match.group(1), 0))


def decode_pi_throttled(value: int) -> dict[str, Any]:
    """Name the flags set in the Raspberry Pi firmware's throttling bit field."""
    now = [name for bit, name in _PI_THROTTLE_BITS.items() if value & (1 << bit)]
    since = [
        name for bit, name in _PI_THROTTLE_BITS.items() if value & (1 << (bit + _SINCE_BOOT_SHIFT))
    ]
    return {"raw": hex(value), "now": now, "since_boot": since}


def raspberry_pi_throttled(root: str | os.PathLike[str] = "/") -> dict[str, Any] | None:
    """Read the Raspberry Pi firmware's throttling flags; None on other hosts.

    The kernel's firmware driver exposes the bit field in sysfs as hex digits, which needs
    no subprocess. `vcgencmd get_throttled` is the fallback where that file is missing.
    """
    text = _read_under(root, "/sys/devices/platform/soc/soc:firmware/get_throttled")
    if text is not None:
        try:
            return decode_pi_throttled(int(text, 16))
        except ValueError:
            logger.debug("unreadable get_throttled value %r", text)
    output = _run_tool(["vcgencmd", "get_throttled"])
    return parse_pi_throttled(output) if output else None


def thermal_throttle_count(root: str | os.PathLike[str] = "/") -> int | None:
    """Thermal throttling events of CPU 0 since boot, as x86 kernels count them."""
    return _int_under(root, "/sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count")


def parse_nvpmodel_conf(text: str) -> list[dict[str, Any]]:
    """Power modes (id and name) listed in a Jetson `/etc/nvpmodel.conf`."""
    return [
        {"id": int(m.group(1)), "name": m.group(2)}
        for m in re.finditer(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", text)
    ]


def _max_power_mode(modes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Pick the fastest mode: MAXN_SUPER, then MAXN, else the most watts in the name."""
    for wanted in ("MAXN_SUPER", "MAXN"):
        for mode in modes:
            if mode["name"].upper() == wanted:
                return mode
    watts = [(int(m.group(1)), mode) for mode in modes if (m := re.match(r"(\d+)W", mode["name"]))]
    return max(watts, key=lambda item: item[0])[1] if watts else None


def jetson_power_mode(root: str | os.PathLike[str] = "/") -> dict[str, Any] | None:
    """Read the Jetson power mode from `nvpmodel -q`, with the fastest mode the board offers.

    Where `nvpmodel` is absent, the mode id comes from `/var/lib/nvpmodel/status`, which
    nvpmodel writes, and its name from `/etc/nvpmodel.conf`. None where neither exists
    (every host but a Jetson).
    """
    # NOTE: the formats of `nvpmodel -q`, /etc/nvpmodel.conf and /var/lib/nvpmodel/status
    # read here were not checked on a board.
    modes = parse_nvpmodel_conf(_read_under(root, "/etc/nvpmodel.conf") or "")
    output = _run_tool(["nvpmodel", "-q"])
    if output is not None:
        # `nvpmodel -q` prints "NV Power Mode: <name>" and then the mode id on its own line.
        name_match = re.search(r"NV Power Mode:\s*(\S+)", output)
        id_match = re.search(r"^\s*(\d+)\s*$", output, re.MULTILINE)
        name = name_match.group(1) if name_match else None
        mode_id = int(id_match.group(1)) if id_match else None
    else:
        status = _read_under(root, "/var/lib/nvpmodel/status")
        status_match = re.search(r"pmode:(\d+)", status or "")
        if status_match is None:
            return None
        mode_id = int(status_match.group(1))
        name = next((mode["name"] for mode in modes if mode["id"] == mode_id), None)
    return {"name": name, "id": mode_id, "max": _max_power_mode(modes), "modes": modes}


def swap_used_mb(root: str | os.PathLike[str] = "/") -> int | None:
    """Swap in use, from `/proc/meminfo`; None where it cannot be read."""
    text = _read_under(root, "/proc/meminfo") or ""
    total = re.search(r"^SwapTotal:\s*(\d+) kB", text, re.MULTILINE)
    free = re.search(r"^SwapFree:\s*(\d+) kB", text, re.MULTILINE)
    if not total or not free:
        return None
    return (int(total.group(1)) - int(free.group(1))) // 1024


def load_average_1min() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def measurement_conditions(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Record the conditions that spoil a latency figure, compactly, for each measurement.

    Fields are None (or empty) where this host does not expose them: cpufreq and thermal
    zones are absent in most VMs and containers, `vcgencmd` exists only on a Raspberry Pi
    and `nvpmodel` only on a Jetson.
    """
    cpus = cpufreq_info(root)
    currents = [c["current_mhz"] for c in cpus if c["current_mhz"] is not None]
    maxima = [c["max_mhz"] for c in cpus if c["max_mhz"] is not None]
    thermal = thermal_info(root)
    temps = [z["temp_c"] for z in thermal["zones"] if z["temp_c"] is not None]
    power = jetson_power_mode(root)
    if power is not None:
        power = {key: power[key] for key in ("name", "id", "max")}
    return {
        "governors": sorted({c["governor"] for c in cpus if c["governor"]}),
        "clock_mhz": {
            "current_min": min(currents) if currents else None,
            "current_max": max(currents) if currents else None,
            "max": max(maxima) if maxima else None,
        },
        "thermal": {
            "max_temp_c": max(temps) if temps else None,
            "passive_trips_reached": passive_trips_reached(thermal),
            "cpu_cooling_active": cpu_cooling_active(thermal),
        },
        "pi_throttled": raspberry_pi_throttled(),
        "jetson_power_mode": power,
        "swap_used_mb": swap_used_mb(root),
        "load_1min": load_average_1min(),
    }


def passive_trips_reached(thermal: dict[str, Any]) -> list[str]:
    """Thermal zones at or above one of their `passive` trip points (kernel throttling)."""
    reached = []
    for zone in thermal["zones"]:
        if zone["temp_c"] is None:
            continue
        for trip in zone["trips"]:
            if trip["type"] == "passive" and zone["temp_c"] >= trip["temp_c"]:
                reached.append(f"{zone['type'] or zone['zone']} {zone['temp_c']:.1f} °C")
                break
    return reached


def cpu_cooling_active(thermal: dict[str, Any]) -> list[str]:
    """CPU-frequency cooling devices in a state above 0, that is, capping the clock."""
    return [
        f"{device['type']} state {device['cur_state']}/{device['max_state']}"
        for device in thermal["cooling"]
        if device["type"]
        and ("cpufreq" in device["type"] or device["type"] == "Processor")
        and (device["cur_state"] or 0) > 0
    ]
