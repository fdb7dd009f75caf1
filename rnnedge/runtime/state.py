"""Recurrent state pairs: naming them, checking them against a model, zero-initializing them.

A streaming graph takes its recurrent state as inputs (h0, and c0 for an LSTM) and returns
the updated state as outputs (hn, cn). A state pair names one such input and the output
that feeds it on the next call. rnnedge's exporter records the pairs in the model metadata
(`rnnedge.state_pairs`); for a model from elsewhere the user names them (`--state IN=OUT`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnedge.errors import InputError
from rnnedge.runtime.feeds import split_assignment
from rnnedge.runtime.inputs import _ORT_TO_NUMPY
from rnnedge.runtime.layout import axis_kind

_FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)")


@dataclass(frozen=True)
class StateInput:
    """A state input that starts at zero, with its declared shape and type."""

    input: str
    shape: tuple[Any, ...]
    ort_type: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_ORT_TO_NUMPY.get(self.ort_type, np.float32))

    def zeros(self, batch: int) -> np.ndarray:
        """A zero state for `batch` sequences: the one dynamic axis of the shape is the batch."""
        return np.zeros(self.shape_for(batch), dtype=self.dtype)

    def shape_for_unknown_batch(self) -> tuple[int | None, ...]:
        """Return the state's shape with None on the batch axis, its one dynamic axis."""
        return tuple(dim if isinstance(dim, int) and dim > 0 else None for dim in self.shape)

    def shape_for(self, batch: int) -> tuple[int, ...]:
        dynamic = [i for i, dim in enumerate(self.shape) if not (isinstance(dim, int) and dim > 0)]
        if len(dynamic) > 1:
            raise InputError(
                f"state input {self.input!r} has shape {list(self.shape)} with "
                f"{len(dynamic)} dynamic axes, so its zero state is ambiguous; export it with "
                "only the batch axis dynamic"
            )
        shape = [dim if isinstance(dim, int) and dim > 0 else batch for dim in self.shape]
        if not dynamic and batch not in shape:
            raise InputError(
                f"state input {self.input!r} has the fixed shape {list(self.shape)}, which "
                f"has no axis for a batch of {batch}; feed batches of the exported size or "
                "export the state with a dynamic batch axis"
            )
        return tuple(shape)


@dataclass(frozen=True)
class StatePair(StateInput):
    """A state input and the output that feeds it on the next call."""

    output: str


# Name parts (runs of letters) that mark a hidden state or a cell state, as in h0, hn,
# h_in, state_h, c0, cn, c_out, cell.
_HIDDEN_PARTS = ("h", "hn", "hx", "hidden")
_CELL_PARTS = ("c", "cn", "cx", "cell")


def _state_kind(name: str) -> str | None:
    """Return "h" or "c" where a part of `name` marks a hidden or a cell state, else None."""
    for part in re.findall(r"[a-z]+", name.lower()):
        if part in _HIDDEN_PARTS:
            return "h"
        if part in _CELL_PARTS:
            return "c"
    return None


def crossed_pairs_hint(pairs: Sequence[tuple[str, str]]) -> str | None:
    """Describe two state pairs whose names cross the hidden and cell states, such as
    h_in=c_out and c_in=h_out, with the pairs that were likely intended; else None.

    Both pairs type-check, because an LSTM's h and c states have one shape, so a swap
    would only show as wrong outputs.
    """
    crossed = [
        (state_in, state_out)
        for state_in, state_out in pairs
        if {_state_kind(state_in), _state_kind(state_out)} == {"h", "c"}
    ]
    if len(crossed) != 2 or _state_kind(crossed[0][0]) == _state_kind(crossed[1][0]):
        return None
    (first_in, first_out), (second_in, second_out) = crossed
    return (
        f"state pairs {first_in}={first_out} and {second_in}={second_out} each pair a hidden "
        f"state with a cell state; if that is not intended, pass --state "
        f"{first_in}={second_out} --state {second_in}={first_out}"
    )


def parse_state_pairs(specs: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Parse `--state IN=OUT` values into (state input, state output) pairs.

    Raises `InputError` when two pairs name the same state input or the same output.
    """
    pairs = tuple(split_assignment(spec, "--state", "IN=OUT") for spec in specs)
    check_distinct_pairs(pairs, "--state")
    return pairs


def check_distinct_pairs(pairs: Sequence[tuple[str, str]], option: str | None = None) -> None:
    """Raise `InputError` when two pairs name one state input or one state output.

    Args:
        option: the command-line option that gave the pairs (`--state`), for the message.
    """
    for side in (0, 1):
        seen: dict[str, tuple[str, str]] = {}
        for pair in pairs:
            if pair[side] not in seen:
                seen[pair[side]] = pair
                continue
            first = seen[pair[side]]
            if option:
                both = f"{option} {'='.join(first)} and {option} {'='.join(pair)}"
            else:
                both = f"state pairs {'='.join(first)} and {'='.join(pair)}"
            if side == 0:
                raise InputError(
                    f"{both} both name the state input {pair[0]!r}; name each state input in "
                    "one pair only"
                )
            raise InputError(
                f"{both} both name the output {pair[1]!r}, but an output carries the state of "
                "one input only; pair each state input with its own output (for example "
                "h0=hn and c0=cn)"
            )


def resolve_state_pairs(
    pairs: Sequence[tuple[str, str]], inputs: Sequence[Any], outputs: Sequence[Any]
) -> tuple[StatePair, ...]:
    """Check each (input, output) pair against the model's inputs and outputs.

    Args:
        pairs: state input and output names.
        inputs: the session's `NodeArg` inputs (name, shape, type).
        outputs: the session's `NodeArg` outputs.
    """
    by_input = {info.name: info for info in inputs}
    by_output = {info.name: info for info in outputs}
    output_names = list(by_output)
    resolved = []
    for state_in, state_out in pairs:
        if state_in not in by_input:
            raise InputError(
                f"state input {state_in!r} is not an input of the model (inputs: "
                f"{', '.join(by_input)}); fix the name in --state IN=OUT"
            )
        if state_out not in output_names:
            raise InputError(
                f"state output {state_out!r} is not an output of the model (outputs: "
                f"{', '.join(output_names)}); fix the name in --state IN=OUT"
            )
        info = by_input[state_in]
        _check_pair_shapes(info, by_output[state_out])
        resolved.append(
            StatePair(input=state_in, shape=tuple(info.shape), ort_type=info.type, output=state_out)
        )
    check_distinct_pairs(pairs)
    return tuple(resolved)


def can_pair(state_in: Any, state_out: Any) -> bool:
    """Return whether an input and an output (`NodeArg`s) have the type and shape of a pair.

    The ranks must be equal and no axis may conflict: two fixed sizes must agree, and a
    fixed size cannot face an axis named like a time axis, nor a time-named axis a
    batch-named one (see `rnnedge.runtime.layout.axis_kind`). Other symbolic or unknown
    axes match anything.
    """
    same_rank = len(state_in.shape) == len(state_out.shape)
    agree = same_rank and not any(
        _axes_conflict(a, b) for a, b in zip(state_in.shape, state_out.shape, strict=True)
    )
    return agree and state_in.type == state_out.type


def _axes_conflict(first: Any, second: Any) -> bool:
    first_fixed = isinstance(first, int) and first > 0
    second_fixed = isinstance(second, int) and second > 0
    if first_fixed and second_fixed:
        return first != second
    if first_fixed or second_fixed:
        return axis_kind(second if first_fixed else first) == "time"
    kinds = {axis_kind(first), axis_kind(second)}
    return kinds == {"time", "batch"}


def _check_pair_shapes(state_in: Any, state_out: Any) -> None:
    if not can_pair(state_in, state_out):
        raise InputError(
            f"state pair {state_in.name}={state_out.name} does not match: the input is "
            f"{state_in.type} {list(state_in.shape)}, the output is {state_out.type} "
            f"{list(state_out.shape)}; a state pair names an input and the output of the "
            "same shape that carries it to the next call (for example h0=hn)"
        )


def shaped_like_state(info: Any) -> bool:
    """Return whether an input (`NodeArg`) has the type and shape of a recurrent state.

    That is a float input of rank 3, [n, batch, hidden], with n and hidden fixed. A middle
    axis named like a time axis marks a time-major sequence input of fixed batch size
    instead.
    """
    shape = list(info.shape or ())
    if info.type not in _FLOAT_TYPES or len(shape) != 3:
        return False
    first_fixed = isinstance(shape[0], int) and shape[0] > 0
    last_fixed = isinstance(shape[2], int) and shape[2] > 0
    return first_fixed and last_fixed and axis_kind(shape[1]) != "time"


def find_unnamed_states(
    data_inputs: Sequence[Any], outputs: Sequence[Any], paired_outputs: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Find the data inputs that look like recurrent states that no pair names.

    Such an input is `shaped_like_state` and has an output of the same declared shape and
    type among `outputs`, other than `paired_outputs`. The first data input is always
    left as the sequence, so a model whose only input is shaped like a state has none.

    Returns (input, likely output) pairs, where the likely output is the one whose name is
    closest to the input's.
    """
    if len(data_inputs) < 2:
        return []
    found = find_state_outputs(data_inputs, outputs, paired_outputs)
    if len(found) == len(data_inputs):
        found = found[1:]
    return found


def find_state_outputs(
    inputs: Sequence[Any], outputs: Sequence[Any], paired_outputs: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Pair each of `inputs` that is `shaped_like_state` with its likely state output.

    The likely output has the input's declared shape and type, is not among
    `paired_outputs` or claimed by an earlier input, and has the name closest to the
    input's. Returns (input, likely output) pairs for the inputs that have one.
    """
    claimed_outputs = set(paired_outputs)
    found = []
    for info in inputs:
        if not shaped_like_state(info):
            continue
        candidates = [
            output
            for output in outputs
            if output.name not in claimed_outputs
            and output.type == info.type
            and same_declared_shape(info.shape, output.shape)
        ]
        if not candidates:
            continue
        # max() keeps the first of equally close names, so ties go to the earlier output.
        likely = max(
            candidates, key=lambda o: difflib.SequenceMatcher(None, info.name, o.name).ratio()
        )
        claimed_outputs.add(likely.name)
        found.append((info.name, likely.name))
    return found


def unnamed_states_error(found: Sequence[tuple[str, str]], streaming: bool = False) -> InputError:
    """Build the error for inputs that `find_unnamed_states` found, naming the fixes.

    With `streaming`, a constant is no fix: it would restart the state on every chunk,
    so the error names only `--state`.
    """
    inputs = _join_names(name for name, _ in found)
    outputs = _join_names(output for _, output in found)
    pairs = " ".join(f"--state {name}={output}" for name, output in found)
    constants = " ".join(f"--feed {name}=VALUE" for name, _ in found)
    one = len(found) == 1
    looks = (
        f"input {inputs} looks like a recurrent state (like output {outputs})"
        if one
        else f"inputs {inputs} look like recurrent states (like outputs {outputs})"
    )
    if streaming:
        return InputError(f"{looks}; name the {'pair' if one else 'pairs'} with {pairs}")
    if one:
        return InputError(
            f"{looks}; name the pair with {pairs}, or give a constant with {constants}"
        )
    return InputError(f"{looks}; name the pairs with {pairs}, or give constants with {constants}")


def fed_states_error(found: Sequence[tuple[str, str]]) -> InputError:
    """Build the error for `--feed` constants of inputs that look like recurrent states, in
    a stream: a constant would restart such a state on every chunk."""
    pairs = " ".join(f"--state {name}={output}" for name, output in found)
    if len(found) == 1:
        return InputError(
            f"{found[0][0]} looks like a recurrent state; under --stream give it a pair "
            f"with {pairs}"
        )
    names = ", ".join(name for name, _ in found[:-1]) + f" and {found[-1][0]}"
    return InputError(
        f"{names} look like recurrent states; under --stream give them pairs with {pairs}"
    )


def _join_names(names: Iterable[str]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def same_declared_shape(first: Sequence[Any], second: Sequence[Any]) -> bool:
    """Return whether two declared shapes have equal fixed sizes and dynamic axes in the same
    places."""
    if len(first) != len(second):
        return False
    for a, b in zip(first, second, strict=True):
        a_fixed = isinstance(a, int) and a > 0
        b_fixed = isinstance(b, int) and b > 0
        if a_fixed != b_fixed or (a_fixed and a != b):
            return False
    return True
