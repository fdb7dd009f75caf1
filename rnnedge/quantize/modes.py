"""Quantization modes offered by `rnnedge quantize`."""

from __future__ import annotations

import enum


class QuantMode(str, enum.Enum):
    """How weights and activations are stored and computed."""

    # int8 weights; activations quantized at run time, per batch.
    DYNAMIC_INT8 = "dynamic-int8"
    # float16 weights and compute, float32 inputs and outputs.
    FP16 = "fp16"

    @property
    def precision(self) -> str:
        return "fp16" if self is QuantMode.FP16 else "int8"
