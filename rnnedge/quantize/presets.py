"""Quantization settings chosen from a device profile (`--target DEVICE`).

A profile's `quantization` section may set `mode`, `reduce_range` (true, false or auto),
`per_channel`, `calibration_method` and `gru_int8_min_hidden`. The rules behind the shipped
profiles:

- x86 CPUs without VNNI compute u8s8 products with `vpmaddubsw`, whose int16 intermediate
  sums saturate for full-range int8 weights, so their weights use 7 bits; `auto` decides
  from this host's CPU flags when the target is an x86 device.
- ARM integer kernels accumulate in 32 bits and do not saturate: full range.
- TensorRT consumes QDQ models or fp16, not ONNX Runtime's com.microsoft int8 operators,
  which would run on the CPU instead: a TensorRT target gets static-int8 or fp16.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rnnedge.errors import InputError
from rnnedge.host import cpu_info
from rnnedge.quantize.modes import CalibrationMethod, QuantMode

logger = logging.getLogger(__name__)

_X86 = {"x86_64", "amd64", "i686"}
_VNNI = {"avx512_vnni", "avx_vnni"}


@dataclass(frozen=True)
class Preset:
    """The settings a device profile asks for; None where it leaves the default."""

    device: str | None = None
    mode: QuantMode | None = None
    reduce_range: bool | str | None = None
    per_channel: bool | None = None
    calibration_method: CalibrationMethod | None = None
    gru_int8_min_hidden: int | None = None
    tensorrt: bool = False
    arch: tuple[str, ...] = ()


def host_needs_reduced_range() -> bool:
    """Whether int8 weights should use 7 bits on this host.

    x86 CPUs without VNNI compute u8s8 products with `vpmaddubsw`, whose int16
    intermediate sums saturate for full-range weights; ARM and VNNI hosts do not.
    """
    info = cpu_info()
    if info["arch"].lower() not in _X86:
        return False
    return not (_VNNI & set(info["flags"]))


def preset_for(profile: Any) -> Preset:
    """Read the quantization preset of a device profile (a `DeviceProfile` or its name)."""
    if isinstance(profile, str):
        from rnnedge.profiling.catalog import load_device

        profile = load_device(profile)
    section = profile.quantization
    source = f"device profile {profile.name!r}"
    mode = _enum(QuantMode, section.get("mode"), f"{source}: quantization.mode")
    method = _enum(
        CalibrationMethod,
        section.get("calibration_method"),
        f"{source}: quantization.calibration_method",
    )
    reduce_range = section.get("reduce_range")
    if reduce_range is not None and reduce_range != "auto" and not isinstance(reduce_range, bool):
        raise InputError(
            f"{source}: quantization.reduce_range is {reduce_range!r}; use true, false or auto"
        )
    min_hidden = section.get("gru_int8_min_hidden")
    if min_hidden is not None and (not isinstance(min_hidden, int) or min_hidden < 0):
        raise InputError(
            f"{source}: quantization.gru_int8_min_hidden is {min_hidden!r}; use an integer >= 0"
        )
    preference = [str(p).lower() for p in profile.provider_preference]
    arch = tuple(str(a).lower() for a in profile.data.get("recognize", {}).get("arch", []))
    return Preset(
        device=profile.name,
        mode=mode,
        reduce_range=reduce_range,
        per_channel=section.get("per_channel"),
        calibration_method=method,
        gru_int8_min_hidden=min_hidden,
        tensorrt=bool(preference) and preference[0] == "tensorrt",
        arch=arch,
    )


def resolve_reduce_range(value: bool | str | None, preset: Preset | None) -> bool:
    """Turn `auto` (or an unset value) into a decision for the target or this host."""
    if isinstance(value, bool):
        return value
    if preset is not None and isinstance(preset.reduce_range, bool):
        return preset.reduce_range
    if preset is not None and preset.arch and not set(preset.arch) & _X86:
        return False
    return host_needs_reduced_range()


def check_mode_for_target(mode: QuantMode, preset: Preset | None) -> None:
    """Warn when a mode's operators would not run on the target's first provider."""
    if preset is None or not preset.tensorrt:
        return
    if mode is QuantMode.DYNAMIC_INT8:
        logger.warning(
            "target %s runs TensorRT first, which has no com.microsoft dynamic int8 "
            "operators, so those nodes would run on the CPU provider; use --mode static-int8 "
            "or --mode fp16 for it",
            preset.device,
        )


def _enum(kind: type, value: Any, where: str):
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(item.value for item in kind)
        raise InputError(f"{where} is {value!r}; use one of: {choices}") from None
