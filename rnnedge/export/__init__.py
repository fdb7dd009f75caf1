"""PyTorch to ONNX export with parity checks. Needs the `export` extra (torch, onnx)."""

from __future__ import annotations

from rnnedge.errors import require

require("torch", "export")

from rnnedge.export.model import (  # noqa: E402 - after the dependency check
    Cell,
    Checkpoint,
    ModelConfig,
    Pooling,
    SequenceModel,
    load_checkpoint,
    save_checkpoint,
)
from rnnedge.export.onnx_export import ExportReport, export_checkpoint  # noqa: E402

__all__ = [
    "Cell",
    "Checkpoint",
    "ExportReport",
    "ModelConfig",
    "Pooling",
    "SequenceModel",
    "export_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]
