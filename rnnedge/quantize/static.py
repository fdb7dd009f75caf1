"""Static int8 in QDQ format, with activation ranges from calibration data.

ONNX Runtime's `quantize_static` inserts QuantizeLinear/DequantizeLinear pairs around MatMul,
Gemm and the other operators its QDQ registry covers, with activation scales from MinMax,
Entropy or Percentile calibration. Its QDQ registry has no LSTM or GRU, so those nodes
compute in float32; rnnedge stores their weights in int8 (weight-only, see `weight_only`)
so the file still shrinks about 4x, and the report lists them as float. The QDQ quantizer
also leaves Loop and Scan bodies alone (onnxruntime 1.32 quantizes subgraphs in dynamic
mode only), so the MatMul and Gemm weights read there get the same weight-only storage.
QDQ is the format TensorRT and other QDQ-aware providers consume.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

from rnnedge.quantize._graph import sort_topologically
from rnnedge.quantize._ort_quantizer import call_quantizer, preprocess
from rnnedge.quantize.modes import CalibrationMethod
from rnnedge.quantize.weight_only import (
    MATRIX_WEIGHT_INPUTS,
    RECURRENT_WEIGHT_INPUTS,
    quantize_weights,
)

# Calibration samples fed per batch: the calibrators keep every intermediate output of a
# batch in memory, so this bounds their memory at a small cost in speed.
CALIBRATION_BATCH = 16


class ArrayReader(CalibrationDataReader):
    """Feeds calibration batches of model-input arrays to ONNX Runtime's calibrators."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._iterator: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = iter(self._feeds)


def quantize_static_int8(
    source: Path,
    feeds: list[dict[str, np.ndarray]],
    method: CalibrationMethod,
    per_channel: bool,
    reduce_range: bool,
) -> tuple[onnx.ModelProto, list[str]]:
    """Quantize `source` to QDQ with activation ranges calibrated on `feeds`.

    Returns the model and the recurrent weights stored in int8 for float compute.
    """
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    ort_method = {
        CalibrationMethod.MINMAX: OrtMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
    }[method]
    with tempfile.TemporaryDirectory(prefix="rnnedge-qdq-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "quantized.onnx"
        preprocess(source, prepared)
        call_quantizer(
            f"static quantization ({method.value} calibration)",
            source,
            lambda: quantize_static(
                str(prepared),
                str(quantized),
                ArrayReader(feeds),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=ort_method,
                calibration_providers=["CPUExecutionProvider"],
            ),
        )
        model = onnx.load(str(quantized))
    # The quantizer reorders the nodes it rewrites without counting the outer-scope values
    # that Loop and Scan bodies read, so a Loop can end up before their producers.
    sort_topologically(model.graph)
    stored = quantize_weights(model, RECURRENT_WEIGHT_INPUTS, per_channel=per_channel)
    stored += quantize_weights(
        model, MATRIX_WEIGHT_INPUTS, per_channel=per_channel, subgraphs_only=True
    )
    return model, stored
