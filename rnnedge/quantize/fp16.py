"""fp16: float16 weights and compute, with float32 inputs and outputs kept.

The CPU provider has no float16 LSTM or GRU kernels and inserts casts back to float32, so
on a CPU fp16 halves the file but saves no time. The mode is meant for CUDA and TensorRT.
"""

from __future__ import annotations

import onnx


def convert_fp16(float_model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a float16 copy of `float_model` with float32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(float_model, keep_io_types=True, disable_shape_infer=False)
