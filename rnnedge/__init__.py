"""rnnedge: take PyTorch LSTM and GRU models to edge devices through ONNX Runtime.

The runtime part (`rnnedge.runtime`, `rnnedge.profiling`) needs only onnxruntime and
numpy. Export needs the `export` extra (torch, onnx); quantization needs onnx.
"""

from __future__ import annotations

__version__ = "0.1.0"
