"""Streaming inference: a sequence fed chunk by chunk, the recurrent state carried between calls.

A streaming model takes its state as inputs (h0, and c0 for an LSTM) and returns the next
state as outputs (hn, cn); the state pairs come from the model's metadata or from the
caller. `StreamingSession` starts the state at zero for the batch of the first chunk,
feeds each call's state outputs to the next call, and `reset()` starts over. Run over
chunks, a model gives the same outputs as over the whole sequence in one call, up to
float rounding.

After the first call at a given chunk shape, the steps go through IO binding with
preallocated buffers (see `rnnedge.runtime.binding`).
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rnnedge.errors import InputError
from rnnedge.runtime.binding import BoundStep, StateBuffers
from rnnedge.runtime.external_data import is_ort_format
from rnnedge.runtime.layout import axis_kind
from rnnedge.runtime.onnx_proto import parse_model
from rnnedge.runtime.ort_errors import input_rejection
from rnnedge.runtime.providers import CUDA_EP, TENSORRT_EP, Provider
from rnnedge.runtime.session import Session
from rnnedge.runtime.state import (
    can_pair,
    fed_states_error,
    find_state_outputs,
    unnamed_states_error,
)

logger = logging.getLogger(__name__)

# A chunk shape seen once more than this many times apart is rebound; a stream has one
# chunk shape plus the shorter last chunk, so a small cache holds all of them.
_MAX_BOUND_SHAPES = 4
# The operators with a `direction` attribute: ONNX's and ONNX Runtime's quantized LSTM.
_RECURRENT = frozenset({"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"})


class StreamingSession:
    """A session that runs a sequence in chunks and carries the recurrent state.

    Args:
        path: the `.onnx` file; the other arguments up to `normalize` are those of
            `Session`.
        state_pairs: (state input, state output) names, for a model whose metadata does
            not record them: pairs such as `[("h0", "hn")]` or a mapping such as
            `{"h0": "hn"}`.
        feeds: constant inputs by name, as for `Session`.
        layout: `batch-major` or `time-major` for a model whose metadata records no
            layout, as for `Session`; streaming a model whose layout is only batch-major
            by default raises `InputError`.
        io_binding: run the steps through preallocated IO-bound buffers; False runs each
            step with `InferenceSession.run`, for comparison.
        state_on_device: keep the state in buffers that ONNX Runtime allocates on the
            primary provider's device. None (the default) does so on CUDA and TensorRT,
            where it saves two copies per state tensor and step. True on the CPU
            provider makes ONNX Runtime allocate the buffers in host memory.
        session_kwargs: further keyword arguments of `Session` (`provider_options`,
            `preference`, `nonfinite`, `report_placement`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: Any = None,
        provider: Provider | str = Provider.AUTO,
        strict_provider: bool = False,
        threads: int | None = None,
        normalize: bool = True,
        *,
        state_pairs: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        feeds: Mapping[str, Any] | None = None,
        layout: str | None = None,
        io_binding: bool = True,
        state_on_device: bool | None = None,
        **session_kwargs: Any,
    ) -> None:
        self.session = Session(
            path, device=device, provider=provider, strict_provider=strict_provider,
            threads=threads, normalize=normalize, state_pairs=state_pairs, feeds=feeds,
            layout=layout, **session_kwargs,
        )  # fmt: skip
        _check_graph(self.session)
        self._check_states_carried()
        if not self.session.state_pairs and not self._has_possible_state():
            fix = "run it without --stream"
            if self.session.metadata.cell is not None:  # recorded by rnnedge export
                fix += " (a model from rnnedge export streams once exported again with --streaming)"
            else:
                fix += ", or export it with its recurrent state as inputs and outputs"
            raise InputError(
                f"{self.session.path.name} has no state inputs to carry between chunks, so it "
                f"cannot stream; {fix}"
            )
        if not self.session.state_pairs:
            raise self._no_pairs_error()
        if self.session.unpaired_states:
            # Streaming would restart such a state from zero on every chunk.
            names = [state.input for state in self.session.unpaired_states]
            raise InputError(
                f"state input {names[0]!r} of {self.session.path.name} has no state pair, so "
                f"it cannot be carried between chunks; name the output that carries it with "
                f"--state {names[0]}=OUT (outputs: {', '.join(self.session.output_names)})"
            )
        if not self.session.data_inputs:
            raise InputError(
                f"{self.session.path.name} has no input left to stream: every input is a "
                "state or a constant; remove one of them from --state or --feed"
            )
        sequence = self.session.data_inputs[0]
        if self.session.layout_guessed and len(sequence.shape or ()) == 3:
            raise InputError(
                f"{self.session.path.name} records no layout, and the axis names "
                f"{list(sequence.shape)} of its input {sequence.name!r} do not say which axis "
                "is time, along which streaming cuts chunks; pass --layout batch-major or "
                "--layout time-major"
            )
        self.io_binding = io_binding
        self.state_device = _state_device(self.session, io_binding, state_on_device)
        self.time_axis = 1 if self.session.batch_major else 0
        state_outputs = {pair.output for pair in self.session.state_pairs}
        self.output_names = [n for n in self.session.output_names if n not in state_outputs]
        self._states: StateBuffers | None = None
        # Checked start values by state input name, loaded when the next stream starts.
        self._start: dict[str, np.ndarray] = {}
        # Looked up once: a step of a few microseconds feels every Python attribute access.
        self._data_names = [info.name for info in self.session.data_inputs]
        self._batch_axis = 0 if self.session.batch_major else 1
        self._bound: dict[tuple[tuple[int, ...], ...], BoundStep] = {}
        # The per-step outputs whose declared time axis has a fixed size, and the one
        # number of steps per call that fixed time sizes require (None: any).
        self._fixed_step_outputs = self.session.fixed_step_outputs()
        self.chunk_steps, self._chunk_steps_reason = self._fixed_time_size()

    def _check_states_carried(self) -> None:
        """Reject an input that looks like a recurrent state but would not be carried: a
        `--feed` constant, which would restart the state on every chunk, or an input that
        no pair names."""
        session = self.session
        paired = [pair.output for pair in session.state_pairs]
        fed = [info for info in session.inputs if info.name in session.feeds]
        found = find_state_outputs(fed, session.outputs, paired)
        if found:
            raise fed_states_error(found)
        unnamed = session.unnamed_state_inputs()
        if unnamed:
            raise unnamed_states_error(unnamed, streaming=True)

    def _no_pairs_error(self) -> InputError:
        """Build the error for a model with possible state inputs but no state pair, naming
        the likely pairs.

        `rnnedge export --streaming` is no fix here: it rejects a model whose forward
        takes state inputs, which is what the model's possible state inputs come from.
        """
        session = self.session
        roles = {state.input for state in session.unpaired_states}
        candidates = [info for info in session.inputs if info.name in roles]
        candidates += [info for info in session.data_inputs[1:] if info.name not in roles]
        likely = find_state_outputs(candidates, session.outputs)
        found = {name for name, _ in likely}
        pairs = [f"--state {name}={output}" for name, output in likely]
        pairs += [f"--state {info.name}=OUT" for info in candidates if info.name in roles - found]
        if pairs:
            fix = f"name each pair with --state IN=OUT, here likely {' '.join(pairs)}"
        else:
            fix = "name each pair with --state IN=OUT"
        return InputError(
            f"{session.path.name} records no state pairs in its metadata, so it cannot "
            f"stream; {fix} (inputs: {', '.join(session.input_names)}; outputs: "
            f"{', '.join(session.output_names)})"
        )

    def _fixed_time_size(self) -> tuple[int | None, str]:
        """Return the number of steps that every call must take, and the declared shape that
        fixes it; (None, "") where the time axes are dynamic.

        Raises InputError where two fixed time sizes differ, so that no chunk fits both.
        """
        sizes: dict[int, str] = {}
        for info in self.session.data_inputs:
            shape = list(info.shape or ())
            if (
                len(shape) == 3
                and isinstance(shape[self.time_axis], int)
                and shape[self.time_axis] > 0
            ):
                sizes.setdefault(shape[self.time_axis], f"input {info.name!r} {shape}")
        for name, steps in self._fixed_step_outputs.items():
            info = next(o for o in self.session.outputs if o.name == name)
            sizes.setdefault(steps, f"output {name!r} {list(info.shape)}")
        if len(sizes) > 1:
            (first, first_reason), (second, second_reason) = list(sizes.items())[:2]
            raise InputError(
                f"{self.session.path.name} declares {first_reason} with {first} time steps and "
                f"{second_reason} with {second}, so no chunk length fits both; export it with a "
                "dynamic time axis to stream it"
            )
        if not sizes:
            return None, ""
        steps, reason = next(iter(sizes.items()))
        return steps, reason

    def _check_chunk_length(self, chunk: int) -> None:
        if self.chunk_steps is not None and chunk != self.chunk_steps:
            raise InputError(
                f"{self.session.path.name} declares {self._chunk_steps_reason}, a fixed "
                f"{self.chunk_steps} time steps per call, so it streams only in chunks of "
                f"{self.chunk_steps}; pass --chunk {self.chunk_steps}"
            )

    def _has_possible_state(self) -> bool:
        """Return whether an input could be a recurrent state: one with a state role, or an
        input after the sequence input with an output of its type and shape."""
        if self.session.unpaired_states:
            return True
        outputs = self.session.outputs
        return any(
            can_pair(info, output) for info in self.session.data_inputs[1:] for output in outputs
        )

    @property
    def metadata(self):
        return self.session.metadata

    @property
    def providers(self) -> list[str]:
        return self.session.providers

    @property
    def state_pairs(self):
        return self.session.state_pairs

    @property
    def batch(self) -> int | None:
        """The batch size of the carried state, or None before the first step."""
        return self._states.batch if self._states is not None else None

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the current state by state input name (empty before the first step)."""
        if self._states is None:
            return {}
        return {name: array.copy() for name, array in self._states.state().items()}

    def reset(self, states: Mapping[str, np.ndarray] | None = None) -> None:
        """Start the next step from a zero state with any batch size, or from `states`.

        Args:
            states: start values by state input name, or by the name of the output that
                carries the state, so that the whole mapping that `run` returns may be
                passed (its other outputs are left out). A state left out starts at zero.
                The values are checked here, and their batch axis against the next
                chunk's batch when it runs.
        """
        if states is not None and not isinstance(states, Mapping):
            raise InputError(
                f"reset(states=...) takes a mapping of arrays by state input or output name, "
                f"not a {type(states).__name__}; for example reset(states=stream.state)"
            )
        self._states = None
        self._bound.clear()
        self._start = {}
        if not states:
            return
        # Warned about after the checks, so that a bad array is reported alone.
        given = self.session.given_states(states, "reset(states=...)", warn=False)
        used = {key for key, _ in given.values()}
        extra = sorted(set(states) - used - set(self.output_names))
        if extra:
            names = [f"{pair.input} (or {pair.output})" for pair in self.session.state_pairs]
            raise InputError(
                f"start state {extra[0]!r} is not a state of {self.session.path.name}; name "
                f"each start state by its state input: {', '.join(names)}"
            )
        self._set_start(given, lambda key: f"start state {key!r}")
        self.session.warn_partial_states(given, "reset(states=...)")

    def _set_start(
        self,
        given: Mapping[str, tuple[str, Any]],
        label: Callable[[str], str],
        batch: int | None = None,
    ) -> None:
        """Check start states (as from `Session.given_states`) and keep them for the next
        stream; `label` names a given array in messages."""
        self._states = None
        self._bound.clear()
        pairs = {pair.input: pair for pair in self.session.state_pairs}
        self._start = {
            name: self.session.check_state(array, pairs[name], batch, label(key))
            for name, (key, array) in given.items()
        }

    def step(
        self, chunk: np.ndarray | Mapping[str, np.ndarray], source: str = "chunk"
    ) -> dict[str, np.ndarray]:
        """Check and normalize one chunk, run it from the carried state, return copies of
        the non-state outputs by name.

        State arrays in a mapping `chunk` (by state input or output name) restart the
        stream from them, as `reset(states=...)` does.
        """
        feed = self.session.prepare_inputs(chunk, source)
        if self.chunk_steps is not None:
            steps = feed[self._data_names[0]].shape[self.time_axis]
            if steps != self.chunk_steps:
                raise InputError(
                    f"{source} has {steps} time steps, but {self.session.path.name} declares "
                    f"{self._chunk_steps_reason}, a fixed {self.chunk_steps} per call; give "
                    f"chunks of {self.chunk_steps} steps"
                )
        # The ndarray test first: it is cheaper than the ABC check, on every step.
        if not isinstance(chunk, np.ndarray) and isinstance(chunk, Mapping):
            given = self.session.given_states(chunk, source)
            if given:
                self._set_start(
                    given, lambda key: f"{source}[{key}]", self.session.batch_size(feed)
                )
        return {name: array.copy() for name, array in self.step_prepared(feed).items()}

    def step_prepared(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one prepared chunk (as from `Session.prepare_inputs`) with no further checks.

        With IO binding, the returned arrays are the session's output buffers, which the
        next step at the same chunk shape overwrites: copy what you keep. Constant inputs
        are bound once from the first step's `feed` at a chunk shape, so later values for
        them in `feed` are not read.
        """
        names = self._data_names
        key = tuple(feed[name].shape for name in names)
        states = self._states
        if states is None or key[0][self._batch_axis] != states.batch:
            states = self._start_states(key[0][self._batch_axis])
        bound = self._bound.get(key)
        if bound is None:
            return self._run_unbound(feed, names, key)
        for name in names:
            np.copyto(bound.inputs[name], feed[name])
        try:
            return bound.run()
        except Exception as exc:
            raise (input_rejection(exc, self.session.path.name) or exc) from exc

    def _start_states(self, batch: int) -> StateBuffers:
        if self._states is not None:
            raise InputError(
                f"chunk has batch {batch}, but the carried state has batch "
                f"{self._states.batch}; call reset() before changing the batch size"
            )
        states = StateBuffers(self.session.state_pairs, batch, self.state_device)
        if self._start:
            pairs = {pair.input: pair for pair in self.session.state_pairs}
            states.load(
                {
                    name: self.session.check_state(
                        array, pairs[name], batch, f"start state {name!r}"
                    )
                    for name, array in self._start.items()
                }
            )
        self._states = states
        return states

    def run(
        self, data: np.ndarray | Mapping[str, np.ndarray], chunk: int, source: str = "input"
    ) -> dict[str, np.ndarray]:
        """Run a whole input in chunks of `chunk` time steps, continuing the carried state.

        Where `data` is a mapping that gives state arrays (by state input or state output
        name), the run starts from them, as after `reset(states=...)`.

        Returns every output by name, in the model's order. A per-step output is
        concatenated along the time axis, and any other output, such as a classifier's
        logits, is the last chunk's. A state output contains the final state, so that a later
        run given these outputs as its start states continues the stream.
        """
        # numbers.Integral admits numpy integers, which chunk sizes computed with numpy are.
        if isinstance(chunk, bool | np.bool_) or not isinstance(chunk, numbers.Integral):
            raise InputError(
                f"chunk must be a whole number of time steps, at least 1; got {chunk!r}"
            )
        chunk = int(chunk)
        if chunk < 1:
            raise InputError(
                f"chunk must be a whole number of time steps, at least 1; got {chunk!r}"
            )
        # A layout that contradicts the states also misplaces a fixed time size, so its
        # error comes before the chunk size check.
        self.session.check_layout(data, source)
        self._check_chunk_length(chunk)
        # A fixed time size applies to each chunk, checked below, not to the whole input.
        feed = self.session.prepare_inputs(data, source, any_length=True)
        if isinstance(data, Mapping):
            given = self.session.given_states(data, source)
            if given:
                self._set_start(
                    given, lambda key: f"{source}[{key}]", self.session.batch_size(feed)
                )
        names = self._data_names
        length = feed[names[0]].shape[self.time_axis]
        if self.chunk_steps is not None and length % self.chunk_steps:
            self._reject_length(length, source)
        batch = self.session.batch_size(feed)
        pieces: list[dict[str, np.ndarray]] = []
        lengths: list[int] = []
        for start in range(0, length, chunk):
            part = dict(feed)
            for name in names:
                if feed[name].ndim == 3:
                    part[name] = np.ascontiguousarray(
                        np.take(
                            feed[name], range(start, min(start + chunk, length)), self.time_axis
                        )
                    )
            outputs = self.step_prepared(part)
            pieces.append({name: array.copy() for name, array in outputs.items()})
            lengths.append(min(chunk, length - start))
        logger.info("streamed %d steps in %d chunks of up to %d", length, len(pieces), chunk)
        final = self.state
        state_outputs = {pair.output: final[pair.input] for pair in self.session.state_pairs}
        return {
            name: state_outputs[name]
            if name in state_outputs
            else self._combine(name, [p[name] for p in pieces], lengths, batch)
            for name in self.session.output_names
        }

    def _reject_length(self, length: int, source: str) -> None:
        steps = self.chunk_steps
        assert steps is not None
        shorter = length - length % steps
        fix = (
            f"trim it to {shorter} or pad it to {shorter + steps}"
            if shorter
            else (f"pad it to {steps}")
        )
        raise InputError(
            f"{source} has {length} time steps, but {self.session.path.name} declares "
            f"{self._chunk_steps_reason}, a fixed {steps} per call, so the last chunk would "
            f"be short: the input length must be a multiple of {steps}; {fix} steps"
        )

    def _run_unbound(
        self, feed: Mapping[str, np.ndarray], names: Sequence[str], key: tuple
    ) -> dict[str, np.ndarray]:
        assert self._states is not None
        full = dict(feed)
        full.update(self._states.state())
        outputs = self.session.run_prepared(full)
        self._check_state_outputs(outputs)
        self._states.store_next(outputs)
        result = {name: outputs[name] for name in self.output_names}
        if self.io_binding:
            if len(self._bound) >= _MAX_BOUND_SHAPES:
                self._bound.pop(next(iter(self._bound)))
            self._bound[key] = BoundStep(
                self.session.inference_session,
                {name: feed[name] for name in names},
                # The constants as filled for this chunk's batch (`Session.constant_feeds`).
                {name: np.ascontiguousarray(feed[name]) for name in self.session.feeds},
                result,
                self._states,
            )
        return result

    def _check_state_outputs(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Raise InputError where a state output's shape differs from its state input's.

        The declared shapes may not rule such a pair out, and feeding the output back
        would fail inside numpy or ONNX Runtime.
        """
        assert self._states is not None
        current = self._states.state()
        for pair in self.session.state_pairs:
            returned = outputs[pair.output].shape
            expected = current[pair.input].shape
            if returned != expected:
                raise InputError(
                    f"state output {pair.output!r} returned shape {tuple(returned)}, but state "
                    f"input {pair.input!r} takes {tuple(expected)}; pair {pair.input} with the "
                    f"output of its shape in --state {pair.input}=OUT (outputs: "
                    f"{', '.join(self.session.output_names)})"
                )

    def _combine(
        self, name: str, arrays: list[np.ndarray], lengths: list[int], batch: int
    ) -> np.ndarray:
        if len(arrays) == 1 or not self._has_time_axis(name, arrays, lengths, batch):
            return arrays[-1]
        return np.concatenate(arrays, axis=self.time_axis)

    def _has_time_axis(
        self, name: str, arrays: list[np.ndarray], lengths: list[int], batch: int
    ) -> bool:
        """Return whether output `name` is per-step: rank 3 with the time axis where the sequence
        input has it.

        The declared axis at that place decides by its name. The name of the sequence
        input's time axis or a time name (`seq`, `time`) means per-step. The name of its
        batch axis, a batch name or a fixed size means not. An axis name that says neither
        is per-step when the arrays have the chunks' lengths there and the batch on the
        batch axis.
        """
        if arrays[0].ndim != 3:
            return False
        info = next(o for o in self.session.outputs if o.name == name)
        declared = list(info.shape) if info.shape else []
        if len(declared) != 3:
            return False
        dim = declared[self.time_axis]
        if isinstance(dim, int) and dim > 0:
            return name in self._fixed_step_outputs and all(steps == dim for steps in lengths)
        data_shape = list(self.session.data_inputs[0].shape or ())
        if len(data_shape) != 3:
            data_shape = [None, None, None]
        if isinstance(dim, str) and dim:
            if dim == data_shape[self.time_axis]:
                return True
            if dim == data_shape[self._batch_axis]:
                return False
            kind = axis_kind(dim)
            if kind is not None:
                return kind == "time"
        # NOTE: with batch 1 and chunks of 1 step, an output of shape (1, batch, ...) in a
        # batch-major model also passes this size check.
        return all(
            array.shape[self.time_axis] == steps and array.shape[self._batch_axis] == batch
            for array, steps in zip(arrays, lengths, strict=True)
        )


def _check_graph(session: Session) -> None:
    """Check the graph for what streaming cannot carry.

    A bidirectional or reverse LSTM, GRU or RNN starts its backward pass at the last step
    of its input. Run over chunks, it would start again at the end of every chunk, so the
    outputs would differ from those of a run over the whole sequence: InputError. A state
    input that no node reads drops the state carried into it, which a warning names.
    """
    path = session.path
    data = path.read_bytes()
    if is_ort_format(data):
        # NOTE: the graph of an .ort file is not read, so a bidirectional model in the
        # ONNX Runtime format streams without these checks.
        return
    model = parse_model(data)
    for node in model.nodes:
        if node.op_type in _RECURRENT and node.direction != "forward":
            raise InputError(
                f"{path.name} has a {node.direction} {node.op_type} node "
                f"{node.name or node.op_type!r}, whose backward pass starts at the last time "
                "step, so it cannot run chunk by chunk; run it without --stream, on the "
                "whole sequence"
            )
    for pair in session.state_pairs:
        if not model.reads(pair.input):
            # torch.onnx.export given one tensor for both h0 and c0 exports such a graph:
            # both initial states come from one input, and the other is left unread.
            logger.warning(
                "state input %r of %s is read by no node, so the state carried into it "
                "from %r is dropped on every chunk; check the export (one tensor passed for "
                "two states gives such a graph)",
                pair.input, path.name, pair.output,
            )  # fmt: skip


def _state_device(
    session: Session, io_binding: bool, on_device: bool | None
) -> tuple[str, int] | None:
    """Return the device type and id for ONNX Runtime to allocate the state on, or None
    for numpy buffers in host memory."""
    primary = session.primary_provider
    gpu = primary in (CUDA_EP, TENSORRT_EP)
    if on_device is None:
        on_device = io_binding and gpu
    if not on_device:
        return None
    if gpu:
        options = session.inference_session.get_provider_options().get(primary, {})
        return ("cuda", int(options.get("device_id", 0)))
    return ("cpu", 0)
