"""The axis order of a sequence input, for a model whose metadata does not record it.

rnnedge's exporter records the layout (`rnnedge.layout`). A model exported elsewhere, such
as by `torch.onnx.export` of an `nn.GRU` with `batch_first=False`, records none. Its layout
is then read from the names of its dynamic axes. Where the names decide nothing, the batch
axis of a state input decides, because a recurrent state shares it with the sequence input.
That axis is found by its name, or by its size where the exporter fixed the shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rnnedge.errors import InputError

logger = logging.getLogger(__name__)

# Prefixes of an axis name that marks the time axis: time, timesteps, seq, seq_len,
# sequence, length, len, steps.
TIME_AXIS_PREFIXES = ("time", "seq", "len", "step")
# Names, and prefixes, of an axis name that marks the batch axis: batch, batch_size, N.
BATCH_AXIS_NAMES = ("n", "b", "bs")
BATCH_AXIS_PREFIXES = ("batch",)

# The rules of `decide_layout`, as `LayoutRule.rule` names the one that decided.
BY_AXIS_NAMES = "axis names"
BY_STATE_INPUT = "state input"
BY_DEFAULT = "default"


@dataclass(frozen=True)
class LayoutRule:
    """An inferred layout and the rule of `decide_layout` that decided it."""

    time_major: bool
    rule: str

    @property
    def guessed(self) -> bool:
        """Whether no rule decided, so that the layout is batch-major by default."""
        return self.rule == BY_DEFAULT


def axis_kind(dim: Any) -> str | None:
    """Return "time" or "batch" for a symbolic axis name that says which it is, else None."""
    if not isinstance(dim, str):
        return None
    name = dim.strip().lower()
    if name.startswith(TIME_AXIS_PREFIXES):
        return "time"
    if name in BATCH_AXIS_NAMES or name.startswith(BATCH_AXIS_PREFIXES):
        return "batch"
    return None


def decide_layout(
    data_shape: Sequence[Any],
    state_shapes: Sequence[Sequence[Any]] = (),
    model: str = "model",
    log: bool = True,
) -> LayoutRule:
    """Infer whether a sequence input of declared shape `data_shape` is (time, batch, ...).

    The rules, in order, and the first that decides wins:

    1. the names of the first two axes: a time name (`time`, `seq`, `sequence`, `length`,
       `steps`) first or a batch name (`batch`, `N`) second means time-major, and the
       reverse means batch-major;
    2. the batch axis of a state input in `state_shapes`, found at exactly one of the first
       two axes of the sequence input. A dynamic batch axis is matched by name. For a state
       of fixed shape [n, batch, hidden], axis 1 is matched by size, so a fixed [5, 3, 8]
       sequence with a [1, 3, 16] state is time-major;
    3. batch-major, the layout of `rnnedge export` and of `batch_first=True`.

    With `log`, the deciding rule is logged at debug level.
    """
    if len(data_shape) < 3:
        return LayoutRule(False, BY_DEFAULT)
    first, second = data_shape[0], data_shape[1]
    by_names = _decide(axis_kind(first) == "time" or axis_kind(second) == "batch",
                       axis_kind(first) == "batch" or axis_kind(second) == "time")  # fmt: skip
    if by_names is not None:
        if log:
            logger.debug(
                "%s: %s layout from the axis names %s of its sequence input",
                model, _layout_name(by_names), list(data_shape[:2]),
            )  # fmt: skip
        return LayoutRule(by_names, BY_AXIS_NAMES)
    for state_shape in state_shapes:
        batch_dim = _state_batch_dim(state_shape)
        if batch_dim is None:
            continue
        by_state = _decide(second == batch_dim and first != batch_dim,
                           first == batch_dim and second != batch_dim)  # fmt: skip
        if by_state is not None:
            if log:
                logger.debug(
                    "%s: %s layout from the batch axis %r of a state input, which is axis "
                    "%d of the sequence input %s",
                    model, _layout_name(by_state), batch_dim, 1 if by_state else 0,
                    list(data_shape),
                )  # fmt: skip
            return LayoutRule(by_state, BY_STATE_INPUT)
    if log:
        logger.debug(
            "%s: batch-major layout by default: neither the axis names %s nor a state input "
            "decide it",
            model, list(data_shape),
        )  # fmt: skip
    return LayoutRule(False, BY_DEFAULT)


def _decide(time_major: bool, batch_major: bool) -> bool | None:
    """Return the layout that exactly one of the two findings supports, else None."""
    if time_major == batch_major:
        return None
    return time_major


def _state_batch_dim(shape: Sequence[Any]) -> Any:
    """Return the batch axis of a state input, or None where the shape does not show it.

    That is the name of its one dynamic axis, or the size of axis 1 of a fixed
    [n, batch, hidden] shape.
    """
    dynamic = [dim for dim in shape if not (isinstance(dim, int) and dim > 0)]
    if len(dynamic) == 1 and isinstance(dynamic[0], str) and dynamic[0]:
        return dynamic[0]
    if not dynamic and len(shape) == 3:
        return shape[1]
    return None


def _layout_name(time_major: bool) -> str:
    return "time-major" if time_major else "batch-major"


def state_batch_size(
    data_shape: Sequence[Any], array_shape: Sequence[int], state_shape: Sequence[Any]
) -> int | None:
    """Return the batch size that a state input requires of a sequence array.

    The state's batch axis, found as in `decide_layout` rule 2, decides. A dynamic axis
    name that is exactly one of the first two axes of the declared `data_shape` requires
    the array's size on that axis. A fixed [n, batch, hidden] state requires `batch`.
    Returns None where the declared shapes do not tell.
    """
    if len(data_shape) < 3 or len(array_shape) < 3:
        return None
    batch_dim = _state_batch_dim(state_shape)
    if isinstance(batch_dim, str):
        axes = [axis for axis in (0, 1) if data_shape[axis] == batch_dim]
        return int(array_shape[axes[0]]) if len(axes) == 1 else None
    if isinstance(batch_dim, int) and batch_dim > 0:
        return batch_dim
    return None


def check_fixed_shape_plausible(model: str, name: str, shape: Sequence[Any]) -> None:
    """Raise InputError where the default batch-major reading of a fixed input shape is a
    batch of several sequences of one time step each.

    `torch.onnx.export` without dynamic axes fixes the shape of its example input, so a
    time-major model exported with one sequence of 50 steps has the shape [50, 1, 6]. Read
    batch-major, that is 50 sequences of 1 step, which a recurrent model seldom takes.
    Only a default reading is checked: `--layout batch-major` confirms it.
    """
    if len(shape) != 3:
        return
    batch, steps = shape[0], shape[1]
    if not (isinstance(batch, int) and isinstance(steps, int) and batch > 1 and steps == 1):
        return
    raise InputError(
        f"{model} records no layout, and input {name!r} has the fixed shape {list(shape)}, "
        f"which read batch-major (the default) is {batch} sequences of 1 time step each; "
        f"pass --layout time-major if the model takes {batch} time steps of 1 sequence, or "
        f"--layout batch-major if it does take {batch} sequences of 1 step"
    )
