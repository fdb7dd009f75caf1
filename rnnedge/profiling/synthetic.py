"""The synthetic input of a measurement: its batch size and sequence length, and its arrays.

`rnnedge profile` and the check run of `rnnedge convert --ort` feed a model made-up data.
They synthesize only inputs whose values are obvious. A float sequence input of rank 3 is
filled with standard-normal values in the model's layout. The lengths of a padded batch
(the input that `rnnedge export` names `lengths`) are the full sequence length.
Recurrent states start at zero, and every other input needs a value from `--feed`.

A sequence input whose batch or time axis has a fixed size fixes the batch size or the
sequence length of every run. The defaults then give way to that size, and a size that the
caller asked for and that contradicts it raises `InputError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import InputError
from rnnedge.runtime.inputs import _ORT_TO_NUMPY, LENGTHS_INPUT
from rnnedge.runtime.layout import check_fixed_shape_plausible
from rnnedge.runtime.memory import check_run_memory
from rnnedge.runtime.session import Session
from rnnedge.runtime.state import shaped_like_state

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 1
DEFAULT_SEQ_LEN = 100
# The sequence inputs that a synthetic input fills with standard-normal values.
SEQUENCE_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
_AXIS_WORDS = {"batch": "batch size", "seq_len": "sequence length"}
# The model files whose guessed layout has been warned about in this process.
_WARNED_LAYOUT: set[Path] = set()
# The model files whose --layout override has been warned about in this process: a sweep
# opens a session for every point, and each session would warn again.
_WARNED_OVERRIDE: set[Path] = set()


@dataclass(frozen=True)
class FixedSize:
    """A batch size or sequence length that a model input's declared shape fixes."""

    value: int
    input: str
    shape: tuple[Any, ...]
    layout: str

    def describe(self) -> str:
        """Name the input and its shape, such as "input 'x' has the fixed shape [5, 3, 8]
        (time-major)"."""
        shown = [dim if _is_fixed(dim) else (dim or "?") for dim in self.shape]
        return f"input {self.input!r} has the fixed shape {shown} ({self.layout})"


def fixed_sizes(session: Session) -> dict[str, FixedSize]:
    """Find the batch size and sequence length that the synthesized inputs' shapes fix.

    Returns a `FixedSize` by axis ("batch", "seq_len"), from the first input that fixes
    it: a rank-3 float sequence input (batch and time axes as the model's layout gives
    them) or the lengths input (its one axis is the batch).
    """
    batch_axis, time_axis = (0, 1) if session.batch_major else (1, 0)
    layout = session.layout.value
    # An input that looks like a recurrent state is no sequence; `check_inputs` names it.
    states = {name for name, _ in session.unnamed_state_inputs()}
    found: dict[str, FixedSize] = {}
    for info in session.data_inputs:
        if info.name in states:
            continue
        shape = tuple(info.shape or ())
        if is_sequence_input(info):
            axes = {"batch": batch_axis, "seq_len": time_axis}
        elif is_lengths_input(session, info):
            axes = {"batch": 0}
        else:
            continue
        for axis, index in axes.items():
            if axis not in found and _is_fixed(shape[index]):
                found[axis] = FixedSize(int(shape[index]), info.name, shape, layout)
    return found


def measured_sizes(
    session: Session,
    batch: int | None = None,
    seq_len: int | None = None,
    *,
    default_batch: int = DEFAULT_BATCH,
    default_seq_len: int = DEFAULT_SEQ_LEN,
    size_options: Mapping[str, str] | None = None,
) -> tuple[int, int]:
    """Return the batch size and sequence length that a synthetic input of `session` has.

    A size given as None is the model's fixed size where its inputs fix one (logged at
    info level where that differs from the default), else the default.

    Args:
        size_options: the command-line option that set each given size, by axis ("batch",
            "seq_len"), such as "--batch" or "--sweep batch=1,8", for the error message.

    Raises:
        InputError: a given size contradicts a fixed size; the message names the option.
    """
    fixed = fixed_sizes(session)
    chosen = {}
    replaced: dict[str, list[tuple[str, int, int]]] = {}
    for axis, value, default in (
        ("batch", batch, default_batch),
        ("seq_len", seq_len, default_seq_len),
    ):
        size = fixed.get(axis)
        if value is not None and size is not None and value != size.value:
            option = (size_options or {}).get(axis)
            raise _size_error(axis, value, size, session.path.name, option)
        if value is not None:
            chosen[axis] = value
        elif size is None:
            chosen[axis] = default
        else:
            chosen[axis] = size.value
            if size.value != default:
                replaced.setdefault(size.describe(), []).append((axis, size.value, default))
    for described, sizes in replaced.items():
        values = " and ".join(f"{_AXIS_WORDS[axis]} {value}" for axis, value, _ in sizes)
        defaults = " and ".join(str(default) for _, _, default in sizes)
        plural = "s" if len(sizes) > 1 else ""
        logger.info(
            "%s: %s, so the synthetic input has %s instead of the default%s %s",
            session.path.name, described, values, plural, defaults,
        )  # fmt: skip
    return chosen["batch"], chosen["seq_len"]


def _size_error(
    axis: str, value: int, size: FixedSize, model: str, option: str | None
) -> InputError:
    word = _AXIS_WORDS[axis]
    if option is None:
        given, fix = f"{axis} {value}", f"pass {axis}={size.value}, or None to use it"
    elif option.startswith("--sweep"):
        given, fix = f"{word} {value} of {option}", f"remove {option}"
    else:
        given, fix = f"{option} {value}", f"pass {option} {size.value}, or leave {option} out"
    return InputError(
        f"{given} does not fit {model}: {size.describe()}, so every run has {word} "
        f"{size.value}; {fix}"
    )


def synthetic_input(
    session: Session,
    batch: int,
    seq_len: int,
    seed: int = 0,
    batch_fix: str = "profile with --batch {batch}",
    *,
    check_run: bool = False,
) -> dict[str, np.ndarray]:
    """Build a feed of the given batch and length for every input of the model.

    Float sequence inputs of rank 3 are standard-normal in the model's layout. The lengths
    input is `seq_len` for every sequence. Recurrent state inputs start at zero, and
    constant inputs keep the session's values. A constant of one value for an input of
    higher rank fills that input's shape, whose one dynamic axis is the batch.

    Args:
        batch_fix: the other fix named when a constant for a state-shaped input has
            another batch; `{batch}` becomes that constant's batch.
        check_run: the input is for the check run of `rnnedge convert --ort`, not for a
            measurement, so that the warnings and errors name the check run.

    Raises:
        InputError: in each of these cases.
            - An input that the model's metadata does not name looks like a recurrent
              state (see `Session.unnamed_state_inputs`).
            - Another input that is neither a sequence nor the lengths has no value from
              `feeds`.
            - `batch` or `seq_len` contradicts a size that the model's inputs fix.
            - A constant for a state-shaped input has another batch.
            - The layout reads the batch from an axis that a state input's batch does not
              match (see `Session.check_layout_fits`).
    """
    if batch < 1:
        raise InputError(f"batch must be at least 1, got {batch}")
    if seq_len < 1:
        raise InputError(f"sequence length must be at least 1, got {seq_len}")
    check_inputs(session, check_run=check_run)
    measured_sizes(session, batch, seq_len)
    check_run_memory(session, batch, seq_len)
    rng = np.random.default_rng(seed)
    batch_axis = 0 if session.batch_major else 1
    feed: dict[str, np.ndarray] = {}
    for info in session.data_inputs:
        dtype = np.dtype(_ORT_TO_NUMPY[info.type])
        if is_lengths_input(session, info):
            feed[info.name] = np.full(batch, seq_len, dtype=dtype)
            continue
        shape = []
        for axis, dim in enumerate(info.shape):
            if _is_fixed(dim):
                shape.append(int(dim))
            elif axis == batch_axis:
                shape.append(batch)
            else:
                shape.append(seq_len)
        feed[info.name] = rng.standard_normal(shape).astype(dtype)
    _check_layout_fits(session, feed, check_run)
    feed.update(session.zero_states(batch))
    feed.update(session.constant_feeds(batch, batch_fix=batch_fix))
    return feed


def _check_layout_fits(session: Session, feed: Mapping[str, np.ndarray], check_run: bool) -> None:
    """Run the check of `rnnedge run` that the layout reads the batch from the axis that
    the state inputs match, before the zero states take their batch from it."""
    data_inputs = session.data_inputs
    if not data_inputs or data_inputs[0].name not in feed:
        return
    name = data_inputs[0].name
    label = (
        f"the check run's synthetic input {name!r}" if check_run else f"synthetic input {name!r}"
    )
    warn_override = session.path not in _WARNED_OVERRIDE
    session.check_layout_fits(feed[name], label, warn_override=warn_override)
    _WARNED_OVERRIDE.add(session.path)


def check_inputs(session: Session, *, check_run: bool = False) -> None:
    """Raise InputError naming the data inputs that a synthetic input cannot fill.

    Inputs that look like recurrent states but have no state pair are named first (see
    `Session.check_unnamed_states`). Then every input that is neither a rank-3 float
    sequence input nor the lengths input is named, because it needs a value from
    `--feed`, as `rnnedge run` needs one. `check_run` is as for `synthetic_input`.
    """
    session.check_unnamed_states()
    _check_layout_decided(session, check_run)
    unfilled = [
        info
        for info in session.data_inputs
        if not (is_sequence_input(info) or is_lengths_input(session, info))
    ]
    if not unfilled:
        return
    described = _join(
        [f"{info.name!r} ({_type_name(info.type)} {list(info.shape or [])})" for info in unfilled]
    )
    feeds = " ".join(f"--feed {info.name}=VALUE" for info in unfilled)
    subject, verb, them = (
        ("input", "needs a value", "it")
        if len(unfilled) == 1
        else ("inputs", "need values", "them")
    )
    raise InputError(
        f"{subject} {described} {verb}: the synthetic input fills only float sequence "
        f"inputs of rank 3 and the {LENGTHS_INPUT!r} input of a padded batch; give {them} "
        f"with {feeds}"
    )


def _check_layout_decided(session: Session, check_run: bool) -> None:
    """Raise InputError, or log a warning, where the layout of a synthesized sequence input
    is batch-major only because nothing decides it.

    With a state input, whose batch must match the sequence input's, a wrong guess fails
    inside ONNX Runtime, so it raises. Without one the model runs either way, but a wrong
    guess swaps the batch size and the sequence length that the measurement records.
    """
    sequences = [info for info in session.data_inputs if is_sequence_input(info)]
    if not session.layout_guessed or not sequences:
        return
    check_fixed_shape_plausible(session.path.name, sequences[0].name, list(sequences[0].shape))
    states = [state.input for state in (*session.state_pairs, *session.unpaired_states)]
    states += [info.name for info in session.inputs
               if info.name in session.feeds and shaped_like_state(info)]  # fmt: skip
    undecided = (
        f"{session.path.name} records no layout, and the axis names of input "
        f"{sequences[0].name!r} do not decide whether it is (batch, time, features) or (time, "
        "batch, features)"
    )
    if states:
        raise InputError(
            f"{undecided}, but state input {states[0]!r} needs the batch size; pass "
            "--layout batch-major or --layout time-major"
        )
    # Once per model file and process: a sweep builds a synthetic input for every point.
    if session.path in _WARNED_LAYOUT:
        return
    _WARNED_LAYOUT.add(session.path)
    use = "the check run of the .ort file feeds it" if check_run else "measuring it"
    logger.warning(
        "%s; %s as batch-major, so pass --layout time-major if the model takes time first",
        undecided, use,
    )  # fmt: skip


def is_sequence_input(info: Any) -> bool:
    """Return whether a model input (`NodeArg`) is a float input of rank 3."""
    return info.type in SEQUENCE_TYPES and len(info.shape or ()) == 3


def is_lengths_input(session: Session, info: Any) -> bool:
    """Return whether a model input is the lengths of a padded batch: an integer input of
    rank 1 named `lengths` or given the role `lengths` in the rnnedge metadata."""
    if info.type not in ("tensor(int64)", "tensor(int32)") or len(info.shape or ()) != 1:
        return False
    return info.name == LENGTHS_INPUT or session.metadata.input_roles.get(info.name) == "lengths"


def _is_fixed(dim: Any) -> bool:
    return isinstance(dim, int) and dim > 0


def _type_name(ort_type: str) -> str:
    dtype = _ORT_TO_NUMPY.get(ort_type)
    return np.dtype(dtype).name if dtype is not None else ort_type


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
