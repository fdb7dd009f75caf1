"""Quantization of exported models, with a report. Needs onnx and onnxruntime, not torch."""

from __future__ import annotations

from rnnedge.quantize.modes import CalibrationMethod, GruInt8, QuantMode
from rnnedge.quantize.quantizer import quantize_model
from rnnedge.quantize.report import Drift, QuantizeReport

__all__ = ["CalibrationMethod", "Drift", "GruInt8", "QuantMode", "QuantizeReport", "quantize_model"]
