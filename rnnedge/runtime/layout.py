"""The axis order of a sequence input, for a model whose metadata does not record it.

rnnedge's exporter records the layout (`rnnedge.layout`). A model exported elsewhere, such
as by `torch.onnx.export` of an `nn.GRU` with `batch_first=False`, records none. Its layout
is then read from the names of its dynamic axes. Where those say nothing, the batch axis of
a state input decides, because a recurrent state shares it with the sequence input.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

# Prefixes of an axis name that marks the time axis: time, timesteps, seq, seq_len,
# sequence, length, len, steps.
TIME_AXIS_PREFIXES = ("time", "seq", "len", "step")
# Names, and prefixes, of an axis name that marks the batch axis: batch, batch_size, N.
BATCH_AXIS_NAMES = ("n", "b", "bs")
BATCH_AXIS_PREFIXES = ("batch",)


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


def is_time_major(
    data_shape: Sequence[Any], state_shapes: Sequence[Sequence[Any]] = (), model: str = "model"
) -> bool:
    """Infer whether a sequence input of declared shape `data_shape` is (time, batch, ...).

    The rules, in order, and the first that decides wins:

    1. the names of the first two axes: a time name (`time`, `seq`, `sequence`, `length`,
       `steps`) first or a batch name (`batch`, `N`) second means time-major, and the
       reverse means batch-major;
    2. the batch axis of a state input in `state_shapes` (its one dynamic axis name) found
       at exactly one of the first two axes of the sequence input;
    3. batch-major, the layout of `rnnedge export` and of `batch_first=True`.

    The deciding rule is logged at debug level.
    """
    if len(data_shape) < 3:
        return False
    first, second = data_shape[0], data_shape[1]
    by_names = _decide(axis_kind(first) == "time" or axis_kind(second) == "batch",
                       axis_kind(first) == "batch" or axis_kind(second) == "time")  # fmt: skip
    if by_names is not None:
        logger.debug(
            "%s: %s layout from the axis names %s of its sequence input",
            model, _layout_name(by_names), list(data_shape[:2]),
        )  # fmt: skip
        return by_names
    for state_shape in state_shapes:
        batch_dim = _state_batch_dim(state_shape)
        if batch_dim is None:
            continue
        by_state = _decide(second == batch_dim and first != batch_dim,
                           first == batch_dim and second != batch_dim)  # fmt: skip
        if by_state is not None:
            logger.debug(
                "%s: %s layout from the batch axis %r of a state input, which is axis %d "
                "of the sequence input %s",
                model, _layout_name(by_state), batch_dim, 1 if by_state else 0,
                list(data_shape),
            )  # fmt: skip
            return by_state
    logger.debug(
        "%s: batch-major layout by default: neither the axis names %s nor a state input "
        "decide it",
        model, list(data_shape),
    )  # fmt: skip
    return False


def _decide(time_major: bool, batch_major: bool) -> bool | None:
    """Return the layout that exactly one of the two findings supports, else None."""
    if time_major == batch_major:
        return None
    return time_major


def _state_batch_dim(shape: Sequence[Any]) -> Any:
    """Return the name of the one dynamic axis of a state input, its batch axis, or None."""
    dynamic = [dim for dim in shape if not (isinstance(dim, int) and dim > 0)]
    if len(dynamic) == 1 and isinstance(dynamic[0], str) and dynamic[0]:
        return dynamic[0]
    return None


def _layout_name(time_major: bool) -> str:
    return "time-major" if time_major else "batch-major"
