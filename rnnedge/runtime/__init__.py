"""The on-device part of rnnedge: sessions, streaming, providers and model metadata.

Imports only onnxruntime, numpy and PyYAML, so it installs on a board without torch or
the onnx package.
"""

from __future__ import annotations

from rnnedge.runtime.inputs import load_array_file
from rnnedge.runtime.metadata import Layout, ModelMetadata, Normalization, Task
from rnnedge.runtime.placement import Placement
from rnnedge.runtime.providers import Provider, available_providers, plan_providers
from rnnedge.runtime.session import Session
from rnnedge.runtime.state import StatePair, parse_state_pairs
from rnnedge.runtime.streaming import StreamingSession

__all__ = [
    "Layout",
    "ModelMetadata",
    "Normalization",
    "Placement",
    "Provider",
    "Session",
    "StatePair",
    "StreamingSession",
    "Task",
    "available_providers",
    "load_array_file",
    "parse_state_pairs",
    "plan_providers",
]
