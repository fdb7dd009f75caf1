"""Session and provider options assembled from a device profile and the caller's overrides.

A device profile stores options under `providers.options`, keyed by rnnedge provider name:

    cpu:      intra_op_num_threads, allow_spinning, graph_optimization_level
    cuda:     device_id, plus any other CUDAExecutionProvider option
    tensorrt: device_id, trt_fp16_enable, trt_engine_cache_enable, trt_engine_cache_path,
              trt_max_workspace_size, plus any other TensorrtExecutionProvider option

The CPU keys become `SessionOptions` settings, because they apply to the whole session.
The CUDA and TensorRT keys are provider options, which ONNX Runtime receives as strings.
Known keys are checked here, so that a typo in a profile fails with the key's name
instead of deep inside ONNX Runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from rnnedge.errors import InputError

logger = logging.getLogger(__name__)

GRAPH_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_CPU_KEYS = {
    "intra_op_num_threads",
    "inter_op_num_threads",
    "allow_spinning",
    "graph_optimization_level",
}
_BOOL_KEYS = {
    "trt_fp16_enable",
    "trt_int8_enable",
    "trt_engine_cache_enable",
    "trt_timing_cache_enable",
    "cudnn_conv_use_max_workspace",
    "do_copy_in_default_stream",
}
_COUNT_KEYS = {"device_id": 0, "trt_max_workspace_size": 1, "gpu_mem_limit": 1}
_PATH_KEYS = {"trt_engine_cache_path", "trt_timing_cache_path"}


@dataclass(frozen=True)
class CpuSettings:
    """Session-wide CPU settings: thread counts, spinning and graph optimization."""

    intra_op_threads: int
    inter_op_threads: int = 1
    allow_spinning: bool | None = None
    graph_optimization_level: str = "all"

    def session_options(self, log_severity: int = 3) -> ort.SessionOptions:
        """Build the `ort.SessionOptions` these settings describe."""
        options = ort.SessionOptions()
        options.graph_optimization_level = GRAPH_OPTIMIZATION_LEVELS[self.graph_optimization_level]
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.log_severity_level = log_severity
        if self.allow_spinning is not None:
            options.add_session_config_entry(
                "session.intra_op.allow_spinning", "1" if self.allow_spinning else "0"
            )
        return options


def cpu_settings(
    cpu_options: Mapping[str, Any], threads: int | None, physical_cores: int
) -> CpuSettings:
    """Combine the profile's `cpu` options with a `threads` override.

    Args:
        cpu_options: the device profile's `providers.options.cpu` mapping.
        threads: the caller's intra-op thread count; it wins over the profile.
        physical_cores: the default thread count when neither gives one. ONNX Runtime's
            own default is one thread per physical core; rnnedge sets it explicitly so
            that the count is known and recorded with measurements.
    """
    unknown = sorted(set(cpu_options) - _CPU_KEYS)
    if unknown:
        raise InputError(
            f"unknown cpu option {unknown[0]!r} (from the device profile or provider_options); "
            f"known options: {', '.join(sorted(_CPU_KEYS))}"
        )
    intra = threads if threads is not None else cpu_options.get("intra_op_num_threads")
    intra = check_thread_count(intra if intra is not None else max(physical_cores, 1))
    inter = check_thread_count(cpu_options.get("inter_op_num_threads", 1), "inter_op_num_threads")
    spinning = cpu_options.get("allow_spinning")
    if spinning is not None and not isinstance(spinning, bool):
        raise InputError(f"cpu option allow_spinning must be true or false, got {spinning!r}")
    level = str(cpu_options.get("graph_optimization_level", "all")).lower()
    if level not in GRAPH_OPTIMIZATION_LEVELS:
        raise InputError(
            f"graph_optimization_level {level!r} is not one of: "
            f"{', '.join(GRAPH_OPTIMIZATION_LEVELS)}"
        )
    return CpuSettings(intra, inter, spinning, level)


def provider_options(provider: str, options: Mapping[str, Any]) -> dict[str, str]:
    """Check and stringify the options of one CUDA or TensorRT provider.

    Booleans become "True" / "False", counts are checked to be whole numbers in range,
    and cache paths are expanded (`~`) and created, because TensorRT writes its engine
    cache there. With `trt_engine_cache_path` set, `trt_engine_cache_enable` defaults to
    true: building an engine takes minutes on a Jetson, so a profile that names a cache
    path wants it used.
    """
    result: dict[str, str] = {}
    for key, value in options.items():
        if key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise InputError(f"{provider} option {key} must be true or false, got {value!r}")
            result[key] = "True" if value else "False"
        elif key in _COUNT_KEYS:
            result[key] = str(_whole_number(f"{provider} option {key}", value, _COUNT_KEYS[key]))
        elif key in _PATH_KEYS:
            path = Path(str(value)).expanduser()
            path.mkdir(parents=True, exist_ok=True)
            result[key] = str(path)
        else:
            result[key] = str(value)
    if "trt_engine_cache_path" in result:
        result.setdefault("trt_engine_cache_enable", "True")
    logger.debug("%s options: %s", provider, result)
    return result


def merge_options(
    base: Mapping[str, Mapping[str, Any]], override: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """Overlay the caller's per-provider options on the profile's, key by key."""
    merged = {name: dict(values) for name, values in base.items()}
    for name, values in (override or {}).items():
        merged.setdefault(name, {}).update(values)
    return merged


def check_thread_count(value: Any, name: str = "threads") -> int:
    """Return `value` if it is a whole number of at least 1; raise naming `name` if not.

    Args:
        name: the setting as the caller spells it, such as `--threads` on the command line.
    """
    return _whole_number(name, value, 1)


def _whole_number(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return value
