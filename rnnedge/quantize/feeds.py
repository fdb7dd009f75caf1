"""Input feeds for drift checks, calibration and evaluation, from one sequence array.

Exported models take one (batch, time, features) input. Models from elsewhere may take
more: recurrent state, sequence lengths, flags. The sequence array goes to the first
float input of rank 3. Every other input gets a neutral value: zeros for float inputs (an
empty initial state), the full sequence length for integer inputs whose name contains "len",
and zeros for other integer and boolean inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from rnnedge.errors import InputError
from rnnedge.runtime.inputs import describe
from rnnedge.runtime.metadata import ModelMetadata

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def sequence_input(inputs: Sequence[ort.NodeArg]) -> ort.NodeArg:
    """Return the input that takes the (batch, time, features) sequence."""
    for info in inputs:
        if info.type == "tensor(float)" and len(info.shape or []) == 3:
            return info
    if not inputs:
        raise InputError("the model has no inputs; quantize a model that takes a sequence")
    return inputs[0]


def build_feed(inputs: Sequence[ort.NodeArg], x: np.ndarray) -> dict[str, np.ndarray]:
    """Build a feed for every model input, with `x` as the sequence input."""
    primary = sequence_input(inputs)
    batch, steps = int(x.shape[0]), int(x.shape[1]) if x.ndim > 1 else 1
    feed = {primary.name: np.ascontiguousarray(x, dtype=np.float32)}
    for info in inputs:
        if info.name == primary.name:
            continue
        dtype = _NUMPY_TYPES.get(info.type)
        if dtype is None:
            raise InputError(
                f"model input {info.name!r} has type {info.type}, which rnnedge cannot fill "
                "for the drift check; quantize a model whose extra inputs are float, integer "
                "or boolean tensors"
            )
        shape = _concrete_shape(info.shape, batch)
        if np.issubdtype(dtype, np.integer) and "len" in info.name.lower():
            feed[info.name] = np.full(shape, steps, dtype=dtype)
        else:
            feed[info.name] = np.zeros(shape, dtype=dtype)
    return feed


def _concrete_shape(shape: Sequence[int | str | None] | None, batch: int) -> list[int]:
    # NOTE: the first symbolic dimension is taken as the batch axis and any later one as 1;
    # this fits state inputs shaped (layers, batch, hidden) and length inputs (batch,).
    dims, seen_symbolic = [], False
    for dim in shape or []:
        if isinstance(dim, int) and dim >= 0:
            dims.append(dim)
        else:
            dims.append(1 if seen_symbolic else batch)
            seen_symbolic = True
    return dims


def normalize(x: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """Standardize raw inputs with the statistics stored in the model, as `rnnedge run` does."""
    stats = metadata.normalization
    if stats is None:
        return np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[-1] != len(stats.mean):
        raise InputError(
            f"the model's normalization covers {len(stats.mean)} features, the data "
            f"{describe(x)} has {x.shape[-1]}"
        )
    mean = np.asarray(stats.mean, dtype=np.float32)
    std = np.asarray(stats.std, dtype=np.float32)
    return np.ascontiguousarray((x.astype(np.float32) - mean) / std)
