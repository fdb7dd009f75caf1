"""Quantization modes, calibration methods and the int8 GRU policy offered by `rnnedge quantize`."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from rnnedge.errors import InputError


class QuantMode(str, enum.Enum):
    """The storage and compute precision of weights and activations."""

    # int8 weights; activations quantized at run time, per batch.
    DYNAMIC_INT8 = "dynamic-int8"
    # int8 weights and activations in QDQ format; activation ranges from calibration data.
    STATIC_INT8 = "static-int8"
    # float16 weights and compute, float32 inputs and outputs.
    FP16 = "fp16"
    # int8 storage of every weight, dequantized to float32 when the session loads.
    WEIGHT_INT8 = "weight-int8"

    @property
    def precision(self) -> str:
        """The value stored as `rnnedge.precision`; weight-only int8 computes in float32."""
        return {
            QuantMode.FP16: "fp16",
            QuantMode.WEIGHT_INT8: "int8-weights",
        }.get(self, "int8")

    @property
    def file_suffix(self) -> str:
        """The default output suffix, as in `model.int8.onnx`."""
        return {
            QuantMode.DYNAMIC_INT8: ".int8.onnx",
            QuantMode.STATIC_INT8: ".qdq.onnx",
            QuantMode.FP16: ".fp16.onnx",
            QuantMode.WEIGHT_INT8: ".int8w.onnx",
        }[self]


class CalibrationMethod(str, enum.Enum):
    """The calibrator that derives static activation ranges from calibration data."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class GruInt8(str, enum.Enum):
    """Whether dynamic int8 rewrites GRU nodes into the int8 Scan path."""

    # Only GRU nodes at or above the hidden-size threshold, where the rewrite is faster.
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


# Options of `rnnedge quantize` (and their `quantize_model` arguments) by the modes that use
# them; the other modes reject them rather than ignore them.
OPTION_MODES = {
    "--reduce-range/--full-range": (QuantMode.DYNAMIC_INT8, QuantMode.STATIC_INT8),
    "--per-channel/--per-tensor": (
        QuantMode.DYNAMIC_INT8,
        QuantMode.STATIC_INT8,
        QuantMode.WEIGHT_INT8,
    ),
    "--calibration-method": (QuantMode.STATIC_INT8,),
    "--gru-int8": (QuantMode.DYNAMIC_INT8,),
    "--gru-int8-min-hidden": (QuantMode.DYNAMIC_INT8,),
}


def check_options_apply(mode: QuantMode, passed: Mapping[str, bool]) -> None:
    """Raise `InputError` for the first passed option that `mode` does not use.

    Args:
        passed: option name (a key of `OPTION_MODES`) -> whether the caller set it.
    """
    for option, is_passed in passed.items():
        modes = OPTION_MODES[option]
        if is_passed and mode not in modes:
            values = [m.value for m in modes]
            names = " or ".join([", ".join(values[:-1]), values[-1]] if values[:-1] else values)
            raise InputError(
                f"{option} applies to --mode {names}, not {mode.value}; drop the option or "
                "choose one of those modes"
            )
