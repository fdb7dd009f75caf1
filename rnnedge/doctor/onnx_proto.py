"""The ONNX wire-format reader, kept importable here for the doctor's callers.

The reader lives in `rnnedge.runtime.onnx_proto`, because the runtime needs it too (to
check external-data locations before ONNX Runtime opens a model) and must not import
the doctor.
"""

from __future__ import annotations

from rnnedge.runtime.onnx_proto import (
    ExternalTensor,
    ModelInfo,
    NodeInfo,
    external_tensors,
    identity_model,
    parse_model,
)

__all__ = [
    "ExternalTensor",
    "ModelInfo",
    "NodeInfo",
    "external_tensors",
    "identity_model",
    "parse_model",
]
