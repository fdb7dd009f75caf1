"""This host: CPU model and features, clocks, memory, board identity and software."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

import onnxruntime as ort

# CPU features that the integer and float kernels of ONNX Runtime depend on.
_X86_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
_ARM_FLAGS = ("asimd", "asimddp", "fphp", "asimdhp", "i8mm", "sve")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_info() -> dict[str, Any]:
    """CPU model, logical and physical core counts and the kernel-relevant flags."""
    text = _read("/proc/cpuinfo") or ""
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


def clock_info() -> dict[str, Any]:
    """Frequency governor and clocks of CPU 0, where the kernel exposes them."""
    base = "/sys/devices/system/cpu/cpu0/cpufreq"
    governor = _read(f"{base}/scaling_governor")
    current = _read(f"{base}/scaling_cur_freq")
    maximum = _read(f"{base}/cpuinfo_max_freq")
    return {
        "governor": governor,
        "current_mhz": int(current) // 1000 if current and current.isdigit() else None,
        "max_mhz": int(maximum) // 1000 if maximum and maximum.isdigit() else None,
    }


def memory_mb() -> int | None:
    text = _read("/proc/meminfo") or ""
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) // 1024 if match else None


def board_info() -> dict[str, Any]:
    """The board's own identification: device tree model and the Jetson L4T release."""
    tegra = _read("/etc/nv_tegra_release")
    return {
        "device_tree_model": _read("/proc/device-tree/model"),
        "nv_tegra_release": tegra.splitlines()[0] if tegra else None,
    }


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
