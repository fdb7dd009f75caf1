"""Quantization of an exported float model into an int8 or fp16 model.

Dynamic int8 uses ONNX Runtime's `quantize_dynamic` after its recommended pre-processing
(shape inference and graph optimization). It turns `LSTM` into the int8
`DynamicQuantizeLSTM` kernel and MatMul/Gemm into integer products, but has no int8 GRU,
so a GRU stays float; the report lists it among the float compute operators.

fp16 converts weights and compute to float16 and keeps float32 inputs and outputs. The
CPU provider has no float16 LSTM or GRU kernels and inserts casts back to float32, so on
a CPU fp16 halves the file but saves no time; it is meant for CUDA and TensorRT.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge._fileio import write_bytes_atomic
from rnnedge.errors import InputError, RnnedgeError, require
from rnnedge.host import cpu_info
from rnnedge.quantize.modes import QuantMode
from rnnedge.quantize.report import QuantizeReport, count_ops, measure_drift
from rnnedge.runtime.metadata import ModelMetadata, Task
from rnnedge.runtime.session import open_model_file

logger = logging.getLogger(__name__)

SAMPLE_SHAPE = (16, 50)  # (batch, seq_len) of the random drift inputs


def parse_mode(name: str | QuantMode) -> QuantMode:
    if isinstance(name, QuantMode):
        return name
    try:
        return QuantMode(name)
    except ValueError:
        choices = ", ".join(m.value for m in QuantMode)
        raise InputError(f"unknown quantization mode {name!r}; choose one of: {choices}") from None


def host_needs_reduced_range() -> bool:
    """Whether int8 weights should use 7 bits on this host.

    x86 CPUs without VNNI compute u8s8 products with `vpmaddubsw`, whose int16
    intermediate sums saturate for full-range weights; ARM and VNNI hosts do not.
    """
    info = cpu_info()
    if info["arch"].lower() not in {"x86_64", "amd64", "i686"}:
        return False
    return not ({"avx512_vnni", "avx_vnni"} & set(info["flags"]))


def quantize_model(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    mode: QuantMode | str = QuantMode.DYNAMIC_INT8,
    reduce_range: bool | str = "auto",
    per_channel: bool = False,
    samples: np.ndarray | None = None,
) -> QuantizeReport:
    """Quantize `model` into `output` and report sizes, operators and drift.

    Args:
        mode: `dynamic-int8` or `fp16`.
        reduce_range: 7-bit int8 weights; `auto` decides from this host's CPU.
        per_channel: one scale per output channel of MatMul/Gemm weights.
        samples: float32 (batch, time, features) inputs for the drift check; random
            standard-normal inputs when None.
    """
    onnx = require("onnx", "export")
    mode = parse_mode(mode)
    source = open_model_file(model)
    try:
        float_model = onnx.load(str(source))
    except Exception as exc:  # protobuf raises DecodeError, onnx raises its own
        raise InputError(f"{str(source)!r} is not a valid ONNX model; pass an .onnx file") from exc
    metadata = ModelMetadata.from_props({p.key: p.value for p in float_model.metadata_props})
    if metadata.precision != "fp32":
        raise InputError(
            f"{str(source)!r} is already quantized ({metadata.precision}); quantize the "
            "float32 model instead"
        )
    if reduce_range == "auto":
        reduce_range = host_needs_reduced_range()
    settings: dict[str, Any] = {"mode": mode.value}

    if mode is QuantMode.DYNAMIC_INT8:
        settings.update(
            reduce_range=bool(reduce_range), per_channel=per_channel, weight_type="int8"
        )
        quantized = _dynamic_int8(source, bool(reduce_range), per_channel)
    else:
        settings.update(keep_io_types=True)
        quantized = _fp16(float_model)

    _set_props(quantized, {
        "rnnedge.precision": mode.precision,
        "rnnedge.quantization": mode.value,
    })  # fmt: skip
    data = quantized.SerializeToString()

    inputs = _drift_inputs(float_model, metadata, samples)
    drift = measure_drift(
        str(source), data, inputs, classification=metadata.task is Task.CLASSIFICATION
    )
    write_bytes_atomic(output, data)
    notes = []
    ops_after = count_ops(quantized)
    if mode is QuantMode.DYNAMIC_INT8 and ops_after.get("GRU"):
        notes.append("GRU stays float: ONNX Runtime's dynamic quantization has no int8 GRU kernel")
    if mode is QuantMode.FP16:
        notes.append(
            "the CPU provider casts fp16 LSTM/GRU back to float32: smaller file, no speed-up"
        )
    return QuantizeReport(
        mode=mode.value,
        output=os.fspath(output),
        size_before=source.stat().st_size,
        size_after=len(data),
        ops_before=count_ops(float_model),
        ops_after=ops_after,
        drift=drift,
        settings=settings,
        notes=tuple(notes),
    )


def _dynamic_int8(source: Path, reduce_range: bool, per_channel: bool):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="rnnedge-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "quantized.onnx"
        try:
            with _no_root_logging():
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
                quantize_dynamic(
                    str(prepared),
                    str(quantized),
                    weight_type=QuantType.QInt8,
                    per_channel=per_channel,
                    reduce_range=reduce_range,
                )
        except RnnedgeError:
            raise
        except Exception as exc:  # onnxruntime's quantizer raises untyped errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"dynamic quantization of {str(source)!r} failed: {first[:300]}"
            ) from exc
        return onnx.load(str(quantized))


def _fp16(float_model):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(float_model, keep_io_types=True, disable_shape_infer=False)


@contextlib.contextmanager
def _no_root_logging() -> Iterator[None]:
    """Keep the quantizer's calls to `logging.warning` from configuring the root logger.

    onnxruntime.quantization logs through the root logger, which installs a stderr
    handler on the first call when none exists; a NullHandler prevents that, and its
    messages go to rnnedge's log at debug level instead.
    """
    root = logging.getLogger()
    null = logging.NullHandler()
    added = not root.handlers
    if added:
        root.addHandler(null)

    def demote(record: logging.LogRecord) -> bool:
        if record.name == "root":
            logger.debug("onnxruntime.quantization: %s", record.getMessage())
            return False
        return True

    root.addFilter(demote)
    try:
        yield
    finally:
        root.removeFilter(demote)
        if added:
            root.removeHandler(null)


def _set_props(model, values: dict[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for prop in kept:
        model.metadata_props.append(prop)
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _drift_inputs(float_model, metadata: ModelMetadata, samples: np.ndarray | None) -> np.ndarray:
    if samples is not None:
        return np.ascontiguousarray(samples, dtype=np.float32)
    features = metadata.features
    if features is None:
        dims = float_model.graph.input[0].type.tensor_type.shape.dim
        features = dims[-1].dim_value if dims and dims[-1].dim_value > 0 else None
    if features is None:
        raise InputError(
            "the model's feature count is unknown; pass sample inputs for the drift check"
        )
    rng = np.random.default_rng(0)
    return rng.standard_normal((*SAMPLE_SHAPE, features)).astype(np.float32)
