"""Names of ONNX operators that rnnedge's reports and checks group together."""

from __future__ import annotations

# Operators that compute in integer arithmetic or carry quantized tensors, from the
# ai.onnx domain and ONNX Runtime's com.microsoft domain.
QUANTIZED_OPS = frozenset({
    "DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat",
    "ConvInteger", "QLinearMatMul", "QLinearConv", "QLinearAdd", "QLinearMul", "QAttention",
    "QGemm", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "MatMulNBits",
    "GatherBlockQuantized",
})  # fmt: skip
