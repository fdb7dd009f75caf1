"""Quantization of exported models, with a report. Needs onnx and onnxruntime, not torch."""

from __future__ import annotations

from rnnedge.quantize.modes import QuantMode
from rnnedge.quantize.quantizer import quantize_model
from rnnedge.quantize.report import Drift, QuantizeReport

__all__ = ["Drift", "QuantMode", "QuantizeReport", "quantize_model"]
