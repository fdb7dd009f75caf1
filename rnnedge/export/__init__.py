"""PyTorch to ONNX export with parity checks. Needs the `export` extra (torch, onnx)."""

from __future__ import annotations

from rnnedge.errors import MissingDependencyError

try:
    import torch  # noqa: F401 - imported only to check that it is installed
except ImportError as exc:
    # The extra alone would pull the default torch wheel, on Linux a CUDA build of several
    # GB, so the message names the CPU build first.
    raise MissingDependencyError(
        "torch is not installed; install torch first (the CPU build where no GPU is needed: "
        "pip install torch --index-url https://download.pytorch.org/whl/cpu), then "
        "pip install 'rnnedge[export]'"
    ) from exc

# The submodules import torch, so they stay below the check above.
from rnnedge.export.exporters import Exporter
from rnnedge.export.model import (
    Cell,
    Checkpoint,
    ModelConfig,
    Pooling,
    SequenceModel,
    load_checkpoint,
    save_checkpoint,
)
from rnnedge.export.onnx_export import export_checkpoint, export_model
from rnnedge.export.report import ExportReport

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
