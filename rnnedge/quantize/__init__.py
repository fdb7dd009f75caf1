"""Quantization of exported models, with a report. Needs onnx and onnxruntime, not torch.

`quantize_model` and the report classes load on first use, so that importing the mode enums
(as the CLI does for its option choices) needs neither onnx nor onnxruntime.
"""

from __future__ import annotations

from typing import Any

from rnnedge.quantize.modes import CalibrationMethod, GruInt8, QuantMode

__all__ = ["CalibrationMethod", "Drift", "GruInt8", "QuantMode", "QuantizeReport", "quantize_model"]


def __getattr__(name: str) -> Any:
    if name == "quantize_model":
        from rnnedge.errors import require

        require("onnx", "export")  # raises naming the extra that installs onnx
        from rnnedge.quantize.quantizer import quantize_model

        return quantize_model
    if name in ("Drift", "QuantizeReport"):
        from rnnedge.quantize import report

        return getattr(report, name)
    raise AttributeError(f"module 'rnnedge.quantize' has no attribute {name!r}")
