"""Checks of the machine: architecture, CPU features, cores, memory, the board."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from rnnedge.doctor.findings import Area, Finding, error, ok, warning
from rnnedge.host import board_info, cpu_info, memory_mb

_A = Area.MACHINE
_ARM64 = {"aarch64", "arm64"}
_X86_64 = {"x86_64", "amd64"}
# Below this, a float model plus onnxruntime and Python leaves too little for the OS.
_LOW_MEMORY_MB = 1024


def check_machine(user_dir: Path) -> list[Finding]:
    """Run every machine check; `user_dir` is the folder of the user's device profiles."""
    cpu = cpu_info()
    arch = platform.machine().lower()
    return [
        _architecture(arch),
        _cpu_features(arch, cpu),
        _cores_and_memory(cpu),
        _python(),
        _board(user_dir),
    ]


def _architecture(arch: str) -> Finding:
    if arch in _ARM64 or arch in _X86_64:
        return ok(_A, "architecture", f"{arch}, {platform.architecture()[0]} Python", arch=arch)
    if arch.startswith("armv7") or arch.startswith("armv6"):
        return error(
            _A, "architecture",
            f"{arch}: a 32-bit ARM userland",
            "install the 64-bit (arm64) OS image; rnnedge is tested on aarch64 and x86-64 only, "
            "and this onnxruntime build came from outside its tested set",
            arch=arch,
        )  # fmt: skip
    return warning(
        _A, "architecture", f"{arch}: not a tested architecture",
        "run on aarch64 or x86-64, or treat every figure from this host as unchecked",
        arch=arch,
    )  # fmt: skip


def _cpu_features(arch: str, cpu: dict) -> Finding:
    flags = set(cpu["flags"])
    details = {"model": cpu["model"], "flags": sorted(flags)}
    if arch in _ARM64:
        if "asimd" not in flags:
            return warning(
                _A, "cpu.features",
                f"{cpu['model']}: NEON (asimd) not listed in /proc/cpuinfo",
                "check /proc/cpuinfo; every 64-bit ARM core has NEON, so an empty list usually "
                "means an emulator or a container that hides the CPU",
                **details,
            )  # fmt: skip
        has = ", ".join(sorted(flags)) or "none"
        if "asimddp" not in flags:
            return ok(
                _A, "cpu.features",
                f"{cpu['model']}: {has}; no dot-product instructions, so int8 matrix kernels "
                "gain less over float than on newer cores: profile both precisions",
                **details,
            )  # fmt: skip
        return ok(_A, "cpu.features", f"{cpu['model']}: {has}", **details)
    if arch in _X86_64:
        has = ", ".join(sorted(flags)) or "none"
        if "avx2" not in flags:
            return warning(
                _A, "cpu.features",
                f"{cpu['model']}: no AVX2 ({has})",
                "expect slow float and int8 kernels; measure on the target device instead",
                **details,
            )  # fmt: skip
        vnni = flags & {"avx512_vnni", "avx_vnni"}
        note = "" if vnni else "; no VNNI, so rnnedge quantizes weights to 7 bits (reduce_range)"
        return ok(_A, "cpu.features", f"{cpu['model']}: {has}{note}", **details)
    return ok(_A, "cpu.features", f"{cpu['model']}", **details)


def _cores_and_memory(cpu: dict) -> Finding:
    memory = memory_mb()
    message = (
        f"{cpu['physical_cores']} physical cores, {cpu['logical_cores']} logical, "
        f"{memory if memory is not None else 'unknown'} MB memory"
    )
    details = {
        "physical_cores": cpu["physical_cores"],
        "logical_cores": cpu["logical_cores"],
        "memory_mb": memory,
    }
    if memory is not None and memory < _LOW_MEMORY_MB:
        return warning(
            _A, "cores_memory", message + f": below {_LOW_MEMORY_MB} MB",
            "close other programs and use the int8 model; swapping makes latency meaningless",
            **details,
        )  # fmt: skip
    return ok(_A, "cores_memory", message, **details)


def _python() -> Finding:
    version = platform.python_version()
    return ok(_A, "python", f"Python {version} ({sys.executable})", version=version)


def _board(user_dir: Path) -> Finding:
    from rnnedge.errors import DeviceProfileError
    from rnnedge.profiling.catalog import host_device_name, recognize_host

    board = board_info()
    details = {key: value for key, value in board.items() if value}
    try:
        # Strict, as `rnnedge profile` is: a profile that may describe this host but
        # cannot be read stops profile, so the line must not name the fallback profile.
        found = recognize_host(user_dir, strict=True)
    except DeviceProfileError as exc:
        # A warning, because without --device the "device" finding is already an error.
        return warning(
            _A, "board",
            f"the device profile that may describe this host is unreadable: {exc}",
            "fix or delete that file; until then 'rnnedge profile' without --device "
            "stops with exit code 2 and records nothing",
            device=None, **details,
        )  # fmt: skip
    if found is None:
        name = host_device_name()
        described = board.get("device_tree_model") or platform.machine()
        return warning(
            _A, "board",
            f"{described}: no device profile matches this host",
            f"'rnnedge profile' will record it as {name!r}; to use a catalog entry pass "
            "--device NAME, or add devices/<name>.yaml with a 'recognize' rule for this board",
            device=None, **details,
        )  # fmt: skip
    generic = bool(found.data.get("recognize", {}).get("generic"))
    kind = "generic entry for the architecture" if generic else "matched by its board identity"
    return ok(
        _A, "board", f"device profile {found.name!r} ({kind})",
        device=found.name, profile=str(found.path), **details,
    )  # fmt: skip
