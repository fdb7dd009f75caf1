"""Export of an rnnedge checkpoint to ONNX with dynamic batch and time axes.

PyTorch's LSTM and GRU export to the native ONNX `LSTM` and `GRU` operators. The gate
order differs (PyTorch stores LSTM weights as input, forget, cell, output and ONNX
expects input, output, forget, cell; GRU as reset, update, new against ONNX's update,
reset, hidden), and the exporter reorders the weight blocks. GRU exports with
`linear_before_reset=1`, because PyTorch applies the reset gate after the recurrent
matrix product.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from rnnedge import __version__
from rnnedge._fileio import write_bytes_atomic
from rnnedge.errors import CheckFailedError, ExportError, InputError, require
from rnnedge.export.model import Checkpoint, load_checkpoint
from rnnedge.export.parity import DEFAULT_ATOL, ParityReport, check_parity
from rnnedge.runtime.metadata import Layout, ModelMetadata, Normalization, Task

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output"
DEFAULT_OPSET = 17
MIN_OPSET = 14  # the oldest opset the parity tests cover
EXAMPLE_SHAPE = (1, 10)  # (batch, seq_len) of the traced example
PARITY_SHAPES = ((3, 37), (2, 1), (5, 123))


@dataclass(frozen=True)
class ExportReport:
    """The exported file, its metadata and the parity against PyTorch."""

    path: Path
    size_bytes: int
    opset: int
    metadata: ModelMetadata
    parity: ParityReport
    op_counts: dict[str, int]


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
) -> ExportReport:
    """Export an rnnedge checkpoint to ONNX and check it against PyTorch.

    The file is written only when the ONNX checker passes and the parity error at
    batch sizes and lengths other than the example's is within `atol`.

    Raises:
        InputError: the checkpoint or an option is invalid.
        CheckFailedError: the parity error exceeds `atol`; nothing is written.
    """
    onnx = require("onnx", "export")
    if not MIN_OPSET <= opset <= _max_opset(onnx):
        raise InputError(
            f"opset {opset} is outside the supported range {MIN_OPSET} to "
            f"{_max_opset(onnx)}; pass --opset {DEFAULT_OPSET}"
        )
    if atol <= 0:
        raise InputError(f"tolerance must be positive, got {atol}")
    loaded = load_checkpoint(checkpoint)
    metadata = _metadata_for(loaded)
    model_proto = _export_to_proto(loaded, opset)

    try:
        onnx.checker.check_model(model_proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported model fails the ONNX checker: {str(exc)[:300]}") from exc
    model_proto = onnx.shape_inference.infer_shapes(model_proto, check_type=True, strict_mode=True)
    for key, value in metadata.to_props().items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    model_proto.producer_name = "rnnedge"
    model_proto.producer_version = __version__
    data = model_proto.SerializeToString()

    parity = check_parity(loaded.model, data, loaded.config.input_size, PARITY_SHAPES, atol)
    if not parity.passed:
        worst = max(parity.cases, key=lambda c: c.max_abs_error)
        raise CheckFailedError(
            f"parity check failed: max abs error {parity.max_abs_error:.3g} at batch "
            f"{worst.batch}, length {worst.seq_len} exceeds the tolerance {atol:g}; "
            f"nothing was written to {os.fspath(output)!r}"
        )
    write_bytes_atomic(output, data)
    op_counts: dict[str, int] = {}
    for node in model_proto.graph.node:
        op_counts[node.op_type] = op_counts.get(node.op_type, 0) + 1
    return ExportReport(Path(output), len(data), opset, metadata, parity, op_counts)


def _max_opset(onnx) -> int:
    # The TorchScript-based exporter of torch 2.x writes opsets up to 20.
    return min(20, onnx.defs.onnx_opset_version())


def _metadata_for(loaded: Checkpoint) -> ModelMetadata:
    normalization = None
    if loaded.normalization:
        mean = [float(x) for x in loaded.normalization["mean"]]
        std = [float(x) for x in loaded.normalization["std"]]
        if len(mean) != loaded.config.input_size or len(std) != loaded.config.input_size:
            raise InputError(
                f"checkpoint normalization has {len(mean)} means and {len(std)} deviations "
                f"for {loaded.config.input_size} features; store one per feature"
            )
        normalization = Normalization(tuple(mean), tuple(std))
    config = loaded.config
    return ModelMetadata(
        layout=Layout.BATCH_MAJOR,
        features=config.input_size,
        task=Task(config.task),
        labels=tuple(loaded.labels),
        normalization=normalization,
        cell=config.cell,
        precision="fp32",
        extra={
            "hidden_size": str(config.hidden_size),
            "num_layers": str(config.num_layers),
            "bidirectional": str(config.bidirectional).lower(),
        },
    )


def _export_to_proto(loaded: Checkpoint, opset: int):
    import onnx
    import torch

    example = torch.zeros(EXAMPLE_SHAPE[0], EXAMPLE_SHAPE[1], loaded.config.input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # The TorchScript-based exporter warns that it is deprecated and that tracing
        # saw Python booleans in nn.LSTM's shape checks; neither affects the graph,
        # and the parity check at other shapes is what proves the export right.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                loaded.model,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 1: "sequence"},
                    OUTPUT_NAME: {0: "batch"},
                },
                do_constant_folding=True,
            )
        except Exception as exc:  # the exporter raises many unrelated exception types
            raise ExportError(
                f"torch.onnx.export failed: {str(exc).splitlines()[0][:300]}"
            ) from exc
    return onnx.load_from_string(buffer.getvalue())
