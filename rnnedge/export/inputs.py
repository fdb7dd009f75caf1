"""The graph inputs of an export: what each one is, its shape, and example values.

rnnedge calls a model as `forward(input[, lengths][, h0[, c0]])`, where the role of each
required parameter after the first comes from its name (see `ROLE_NAMES`). The sequence
input is (batch, time, features) for batch-major models and (time, batch, features) for
time-major ones; `lengths` is (batch,) int64; a state is (layers * directions, batch,
hidden) as for `nn.LSTM` / `nn.GRU`, or (batch, hidden) when the model's recurrent core
is an `nn.LSTMCell` / `nn.GRUCell`.

Shapes are templates whose symbolic entries are the axis names `BATCH` and `SEQUENCE`;
these become the dynamic axes of the ONNX graph.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from rnnedge.errors import InputError

BATCH = "batch"
SEQUENCE = "sequence"


class InputRole(str, enum.Enum):
    SEQUENCE = "sequence"
    LENGTHS = "lengths"
    STATE_H = "state_h"
    STATE_C = "state_c"
    # A carried value that is not a recurrent state, such as a running sum for pooling.
    CARRY = "carry"


# Parameter names that mark a forward parameter's role; matching is case-insensitive.
ROLE_NAMES = {
    InputRole.LENGTHS: {"lengths", "lens", "length", "seq_lens", "seq_lengths", "sequence_lengths"},
    InputRole.STATE_H: {"h0", "h_0", "hx", "h", "hidden", "state", "initial_state"},
    InputRole.STATE_C: {"c0", "c_0", "cx", "c", "cell", "cell_state"},
}
GRAPH_NAMES = {
    InputRole.SEQUENCE: "input",
    InputRole.LENGTHS: "lengths",
    InputRole.STATE_H: "h0",
    InputRole.STATE_C: "c0",
}


@dataclass(frozen=True)
class InputSpec:
    """One graph input: its name, role, dtype and shape template."""

    name: str
    role: InputRole
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def concrete_shape(self, batch: int, seq_len: int) -> tuple[int, ...]:
        sizes = {BATCH: batch, SEQUENCE: seq_len}
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)

    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}


@dataclass(frozen=True)
class Example:
    """The example input of an export: batch size, sequence length, features, layout."""

    batch: int
    seq_len: int
    features: int
    batch_first: bool


RECURRENT_TYPES = (nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell)


def find_recurrent(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return the recurrent submodules of `model` with their names, outermost first.

    Scripted submodules (from TorchScript archives) count by their original class name.
    """
    found = []
    for name, module in model.named_modules():
        kind = recurrent_kind(module)
        if kind is not None:
            found.append((name, module))
    return found


def recurrent_kind(module: nn.Module) -> str | None:
    """Return "LSTM", "GRU", "LSTMCell" or "GRUCell" for a recurrent module, else None."""
    if isinstance(module, RECURRENT_TYPES):
        return type(module).__name__
    name = getattr(module, "recurrent_kind", None) or getattr(module, "original_name", None)
    if name in ("LSTM", "GRU", "LSTMCell", "GRUCell"):
        return name
    return None


def cell_name(model: nn.Module) -> str | None:
    """Return "lstm", "gru" or "lstm+gru" from the model's recurrent submodules."""
    kinds = sorted(
        {recurrent_kind(m).replace("Cell", "").lower() for _, m in find_recurrent(model)}
    )
    return "+".join(kinds) if kinds else None


def state_shapes(module: nn.Module) -> tuple[tuple[int | str, ...], tuple[int | str, ...] | None]:
    """Return the shape templates of the h and c states of one recurrent module.

    The c shape is None for a GRU.
    """
    kind = recurrent_kind(module)
    hidden = int(module.hidden_size)
    if kind in ("LSTMCell", "GRUCell"):
        h_shape: tuple[int | str, ...] = (BATCH, hidden)
        return h_shape, (h_shape if kind == "LSTMCell" else None)
    slots = int(module.num_layers) * (2 if module.bidirectional else 1)
    projected = int(getattr(module, "proj_size", 0) or 0)
    h_shape = (slots, BATCH, projected or hidden)
    return h_shape, ((slots, BATCH, hidden) if kind == "LSTM" else None)


def input_specs(parameters: Sequence[str], model: nn.Module, example: Example) -> list[InputSpec]:
    """Map the required forward parameters of `model` to graph inputs.

    Raises:
        InputError: a parameter has no known role, or a state input has no recurrent
            module to take its shape from.
    """
    sequence_shape = (
        (BATCH, SEQUENCE, example.features)
        if example.batch_first
        else (SEQUENCE, BATCH, example.features)
    )
    specs = [InputSpec(GRAPH_NAMES[InputRole.SEQUENCE], InputRole.SEQUENCE, sequence_shape)]
    for parameter in parameters[1:]:
        role = _role_of(parameter)
        if role is InputRole.LENGTHS:
            specs.append(InputSpec(GRAPH_NAMES[role], role, (BATCH,), "int64"))
            continue
        recurrent = find_recurrent(model)
        if not recurrent:
            raise InputError(
                f"forward parameter {parameter!r} looks like a recurrent state, but the model "
                "has no nn.LSTM, nn.GRU, nn.LSTMCell or nn.GRUCell to give its shape"
            )
        h_shape, c_shape = state_shapes(recurrent[0][1])
        shape = h_shape if role is InputRole.STATE_H else c_shape
        if shape is None:
            raise InputError(
                f"forward parameter {parameter!r} is a cell state, but the first recurrent "
                f"module {recurrent[0][0]!r} is a GRU, which has none"
            )
        specs.append(InputSpec(GRAPH_NAMES[role], role, shape))
    return specs


def _role_of(parameter: str) -> InputRole:
    lowered = parameter.lower()
    for role, names in ROLE_NAMES.items():
        if lowered in names:
            return role
    known = ", ".join(sorted(set().union(*ROLE_NAMES.values())))
    raise InputError(
        f"forward parameter {parameter!r} is not a sequence, lengths or state input; rnnedge "
        f"calls forward(input[, lengths][, h0[, c0]]) and recognizes the names {known}; "
        "give the parameter a default or wrap the model"
    )


def make_arrays(
    specs: Sequence[InputSpec], batch: int, seq_len: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Return random input arrays for one (batch, seq_len) case.

    Lengths are random in [1, seq_len], and the first sequence always has the full
    length, so that padded outputs have `seq_len` steps as in the input.
    """
    arrays = []
    for spec in specs:
        shape = spec.concrete_shape(batch, seq_len)
        if spec.role is InputRole.LENGTHS:
            lengths = rng.integers(1, seq_len + 1, size=shape).astype(np.int64)
            lengths[0] = seq_len
            arrays.append(lengths)
        elif spec.role is InputRole.CARRY:
            arrays.append(np.zeros(shape, dtype=spec.dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(np.float32))
    return arrays


def sort_lengths(specs: Sequence[InputSpec], arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Return `arrays` with the lengths input sorted in decreasing order.

    `pack_padded_sequence(enforce_sorted=True)` raises on lengths in any other order.
    """
    sorted_arrays = list(arrays)
    for index, spec in enumerate(specs):
        if spec.role is InputRole.LENGTHS:
            sorted_arrays[index] = np.sort(arrays[index])[::-1].copy()
    return sorted_arrays


def parse_example_shape(text: str) -> tuple[int, int, int]:
    """Parse "BxTxF" (for example "1x100x6") into (batch, time, features)."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise InputError(
            f"example shape {text!r} is invalid; pass batch x time x features as positive "
            "integers, for example 1x100x6"
        )
    return values  # type: ignore[return-value]
