"""The on-device part of rnnedge: sessions, providers and model metadata.

Imports only onnxruntime, numpy and PyYAML, so it installs on a board without torch or
the onnx package.
"""

from __future__ import annotations

from rnnedge.runtime.inputs import load_array_file
from rnnedge.runtime.metadata import Layout, ModelMetadata, Normalization, Task
from rnnedge.runtime.providers import Provider, available_providers, plan_providers
from rnnedge.runtime.session import Session

__all__ = [
    "Layout",
    "ModelMetadata",
    "Normalization",
    "Provider",
    "Session",
    "Task",
    "available_providers",
    "load_array_file",
    "plan_providers",
]
