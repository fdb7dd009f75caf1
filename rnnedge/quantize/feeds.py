"""Input feeds for drift checks, calibration and evaluation, from one sequence array.

Quantize reads every sequence array as (batch, time, features), whatever the model's
layout. `DataLayout` transposes it to (time, batch, features) for a time-major model, and
moves the batch axis of the model's output to axis 0. The layout comes from
`rnnedge.runtime.Session`, as `rnnedge run` reads it (see `read_layout`).

A model exported without dynamic axes fixes its batch size, for example [1, 50, 6]. Such a
model gets every array in batches of that size (`DataLayout.batches`); a last batch with
fewer sequences is filled up by repeating its sequences, and the outputs of the repeats
are dropped.

Exported models take one sequence input. Models from elsewhere may take more: recurrent
state, sequence lengths, flags. The sequence array goes to the first float input of rank 3.
Every other input gets a neutral value: zeros for float inputs (an empty initial state),
the full sequence length for integer inputs whose name contains "len", and zeros for other
integer and boolean inputs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.errors import InputError
from rnnedge.runtime.inputs import describe
from rnnedge.runtime.layout import axis_kind, check_fixed_shape_plausible
from rnnedge.runtime.metadata import Layout, ModelMetadata
from rnnedge.runtime.session import Session

logger = logging.getLogger(__name__)

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class DataLayout:
    """The axis orders for feeding (batch, time, features) arrays to a model and reading its
    first output.

    Attributes:
        batch_major: whether the model's sequence input is (batch, time, features); a
            time-major model gets each array transposed to (time, batch, features).
        output_batch_axis: the batch axis of the model's first output, moved to axis 0 so
            that output rows line up with the sequences and their labels.
        guessed: whether nothing decided the layout and batch-major is a default.
        fixed_batch: the batch size that the sequence input fixes, else None.
    """

    batch_major: bool = True
    output_batch_axis: int = 0
    guessed: bool = False
    fixed_batch: int | None = None

    @property
    def name(self) -> str:
        return (Layout.BATCH_MAJOR if self.batch_major else Layout.TIME_MAJOR).value

    @property
    def other_name(self) -> str:
        """Return the name of the other layout, the fix for a wrong guess."""
        return (Layout.TIME_MAJOR if self.batch_major else Layout.BATCH_MAJOR).value

    def batches(self, x: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, int]]:
        """Split the (batch, time, features) array `x` into batches to feed.

        Yields each batch and the number of its sequences that come from `x`. The batches
        hold `size` sequences, or the fixed batch size of the model. A last batch with fewer
        sequences than the fixed size is filled up by repeating its own sequences.
        """
        size = self.fixed_batch or size
        for start in range(0, x.shape[0], size):
            part = x[start : start + size]
            count = part.shape[0]
            if self.fixed_batch and count < self.fixed_batch:
                part = part[np.arange(self.fixed_batch) % count]
            yield part, count

    def first_batch(self, x: np.ndarray, size: int) -> np.ndarray:
        """Return the first batch that `batches` yields for `x`."""
        return next(self.batches(x, size))[0]

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """Return a (batch, time, features) array in the model's layout."""
        if self.batch_major or x.ndim != 3:
            return x
        return x.transpose(1, 0, 2)

    def declared(self, shape: Sequence[Any] | None) -> list[Any]:
        """Return the declared shape of the sequence input as (batch, time, features)."""
        dims = list(shape or [])
        if not self.batch_major and len(dims) == 3:
            dims[0], dims[1] = dims[1], dims[0]
        return dims

    def from_model(self, output: np.ndarray) -> np.ndarray:
        """Return the model's first output with its batch axis first."""
        axis = self.output_batch_axis
        if axis == 0 or output.ndim <= axis:
            return output
        return np.moveaxis(output, axis, 0)


BATCH_MAJOR = DataLayout()


def read_layout(
    model: str | os.PathLike[str], layout: Layout | str | None = None
) -> tuple[DataLayout, Session]:
    """Read the layout of `model`'s sequence input as `rnnedge run` does.

    The layout comes from the model's metadata (`rnnedge.layout`), else from `layout`
    (`--layout`), else from the axis names or a state input (see
    `rnnedge.runtime.layout.decide_layout`). Where nothing decides it, the model is fed
    batch-major with a warning, as `rnnedge profile` does. A model with a state input then
    raises `InputError` instead, because a wrong guess gives the state the wrong batch.

    Returns the layout and the runtime session that read it, whose `check_layout_fits`
    checks an array in the model's layout against the batch of the state inputs.

    Raises:
        InputError: `layout` contradicts the metadata, or the layout of a model with a
            state input is undecided.
    """
    session = Session(model, provider="cpu", threads=1, normalize=False, layout=layout)
    if session.sequence_layout is None:
        return BATCH_MAJOR, session
    sequence = session.data_inputs[0]
    batch_major = session.batch_major
    declared = DataLayout(batch_major).declared(sequence.shape)
    if session.layout_guessed:
        check_fixed_shape_plausible(Path(model).name, sequence.name, declared)
        states = [*session.state_input_names, *(s.input for s in session.unpaired_states)]
        states += [name for name, _ in session.unnamed_state_inputs()]
        undecided = (
            f"{Path(model).name} records no layout, and the axis names of input "
            f"{sequence.name!r} do not decide whether it takes (batch, time, features) or "
            "(time, batch, features)"
        )
        if states:
            raise InputError(
                f"{undecided}, but state input {states[0]!r} needs the batch size; pass "
                "--layout batch-major or --layout time-major"
            )
        logger.warning(
            "%s; quantize feeds it batch-major, so pass --layout time-major if the model "
            "takes time first",
            undecided,
        )
    axis = _output_batch_axis(session.outputs, sequence, batch_major)
    layout = DataLayout(batch_major, axis, guessed=session.layout_guessed)
    fixed = declared[0] if declared else None
    if isinstance(fixed, int) and fixed > 0:
        layout = replace(layout, fixed_batch=fixed)
    return layout, session


def _output_batch_axis(outputs: Sequence[Any], sequence: Any, batch_major: bool) -> int:
    """Return the batch axis of the first output.

    That is axis 0 for a batch-major model or an output of rank 1 or 2. For a time-major
    model it is the one axis named like the sequence input's batch axis (or `batch`), else
    axis 1, as in (time, batch, classes).
    """
    shape = list(outputs[0].shape or []) if outputs else []
    if batch_major or len(shape) < 3:
        return 0
    batch_dim = (sequence.shape or [None, None])[1]
    named = [
        axis
        for axis, dim in enumerate(shape)
        if isinstance(dim, str) and (dim == batch_dim or axis_kind(dim) == "batch")
    ]
    return named[0] if len(named) == 1 else 1


def sequence_input(inputs: Sequence[ort.NodeArg]) -> ort.NodeArg:
    """Return the input that takes the sequence array."""
    for info in inputs:
        if info.type == "tensor(float)" and len(info.shape or []) == 3:
            return info
    if not inputs:
        raise InputError("the model has no inputs; quantize a model that takes a sequence")
    return inputs[0]


def build_feed(
    inputs: Sequence[ort.NodeArg], x: np.ndarray, layout: DataLayout = BATCH_MAJOR
) -> dict[str, np.ndarray]:
    """Build a feed for every model input, with the (batch, time, features) array `x`, in
    the model's `layout`, as the sequence input."""
    primary = sequence_input(inputs)
    batch, steps = int(x.shape[0]), int(x.shape[1]) if x.ndim > 1 else 1
    feed = {primary.name: np.ascontiguousarray(layout.to_model(x), dtype=np.float32)}
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
