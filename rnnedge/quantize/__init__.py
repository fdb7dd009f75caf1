"""Quantization of exported models, with a report. Needs onnx and onnxruntime, not torch.

The modes and the report types import neither; `quantize_model` is imported on first use,
so that the CLI can list the modes on a board where the onnx package is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rnnedge.quantize.modes import CalibrationMethod, GruInt8, QuantMode

if TYPE_CHECKING:
    from rnnedge.quantize.quantizer import quantize_model
    from rnnedge.quantize.report import Drift, QuantizeReport

__all__ = ["CalibrationMethod", "Drift", "GruInt8", "QuantMode", "QuantizeReport", "quantize_model"]


def __getattr__(name: str) -> Any:
    if name == "quantize_model":
        from rnnedge.quantize.quantizer import quantize_model

        return quantize_model
    if name in ("Drift", "QuantizeReport"):
        from rnnedge.quantize import report

        return getattr(report, name)
    raise AttributeError(f"module 'rnnedge.quantize' has no attribute {name!r}")
