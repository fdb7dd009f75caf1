"""PyTorch to ONNX export with parity checks. Needs the `export` extra (torch, onnx)."""

from __future__ import annotations

from rnnedge.errors import require

require("torch", "export")

from rnnedge.export.exporters import Exporter  # noqa: E402
from rnnedge.export.model import (  # noqa: E402 - after the dependency check
    Cell,
    Checkpoint,
    ModelConfig,
    Pooling,
    SequenceModel,
    load_checkpoint,
    save_checkpoint,
)
from rnnedge.export.onnx_export import export_checkpoint, export_model  # noqa: E402
from rnnedge.export.report import ExportReport  # noqa: E402

__all__ = [
    "Cell",
    "Checkpoint",
    "ExportReport",
    "Exporter",
    "ModelConfig",
    "Pooling",
    "SequenceModel",
    "export_checkpoint",
    "export_model",
    "load_checkpoint",
    "save_checkpoint",
]
