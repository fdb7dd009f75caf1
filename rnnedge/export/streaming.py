"""Streaming graphs: the recurrent state as an explicit graph input and output.

A streaming graph takes the model's inputs followed by one input per carried state, and
returns the model's outputs followed by the new states in the same order. Feeding a
sequence in chunks, starting every state at zeros and passing each state output to its
paired input on the next call, gives the same result as the whole sequence at once: the
outputs of every chunk concatenated along time for outputs with a time axis, and the
output of the last chunk for the others (a last-step classifier, for example).

State names, recorded as (input, output) pairs in the `rnnedge.state_pairs` metadata:

- one recurrent module: `h0` -> `hn`, and `c0` -> `cn` for an LSTM, each shaped
  (layers * directions, batch, hidden) as in the ONNX `LSTM` / `GRU` operators;
- several recurrent modules: the same names prefixed with the module's path, for
  example `encoder.rnn.h0` -> `encoder.rnn.hn`;
- rnnedge's own `SequenceModel` with mean pooling also carries the running mean of the
  recurrent outputs, `pool_mean0` -> `pool_meann` (batch, hidden * directions), and the
  number of steps seen, `pool_steps0` -> `pool_stepsn` (batch, 1, int64), so that the
  output of each call is the mean over all steps so far. A running mean, unlike a running sum, stays
  within the range of the outputs, so its float32 rounding does not grow with the length.

The states of `nn.LSTM` and `nn.GRU` modules are captured with forward hooks, so the
model's own code stays as it is. Bidirectional models cannot stream, because the backward
direction starts from the end of the sequence.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rnnedge.errors import CheckFailedError, InputError
from rnnedge.export.exporters import flatten_outputs
from rnnedge.export.inputs import (
    BATCH,
    SEQUENCE,
    InputRole,
    InputSpec,
    find_recurrent,
    recurrent_kind,
    state_shapes,
)
from rnnedge.export.model import Pooling, SequenceModel
from rnnedge.export.parity import max_output_error

CHUNK_SIZES = (1, 7)  # and the whole sequence; see `check_chunks`
CHECK_BATCH = 3
CHECK_SEQ_LEN = 23  # not a multiple of 7, so that the last chunk is shorter


@dataclass(frozen=True)
class ChunkCase:
    """The error of feeding a sequence in chunks of `chunk` steps against the whole."""

    chunk: int
    batch: int
    seq_len: int
    max_abs_error: float


@dataclass(frozen=True)
class StreamingPlan:
    """The streaming module to export and its state inputs and outputs."""

    module: nn.Module
    state_specs: tuple[InputSpec, ...]
    state_outputs: tuple[str, ...]

    @property
    def state_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(zip((s.name for s in self.state_specs), self.state_outputs, strict=True))


def plan_streaming(model: nn.Module, input_count: int) -> StreamingPlan:
    """Wrap `model` so that its recurrent states are inputs and outputs.

    Raises:
        InputError: the model has no `nn.LSTM` / `nn.GRU`, is bidirectional, or keeps its
            state in a way that cannot be carried (a loop over cells, a TorchScript module).
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError(
            "a TorchScript archive cannot be exported for streaming, because its recurrent "
            "modules cannot be hooked; export the Python module (file.py:factory) instead"
        )
    recurrent = find_recurrent(model)
    if not recurrent:
        raise InputError(
            "--streaming needs an nn.LSTM or nn.GRU in the model to carry the state of; "
            "the model has none"
        )
    for name, module in recurrent:
        kind = recurrent_kind(module)
        label = name or "the model"
        if kind in ("LSTMCell", "GRUCell"):
            raise InputError(
                f"{label} is an nn.{kind}, whose state lives in the model's forward loop; "
                "--streaming carries the state of nn.LSTM and nn.GRU modules only"
            )
        if module.bidirectional:
            raise InputError(
                f"{label} is bidirectional and cannot stream, because its backward "
                "direction reads the sequence from the end; export without --streaming"
            )
    if (
        isinstance(model, SequenceModel)
        and model.config.pooling == Pooling.MEAN.value
        and input_count == 1
    ):
        return _plan_mean_pooled(model)
    return _plan_hooked(model, recurrent, input_count)


def _state_names(prefix: str, kind: str) -> list[tuple[str, str, InputRole]]:
    names = [(f"{prefix}h0", f"{prefix}hn", InputRole.STATE_H)]
    if kind == "LSTM":
        names.append((f"{prefix}c0", f"{prefix}cn", InputRole.STATE_C))
    return names


def _plan_hooked(
    model: nn.Module, recurrent: list[tuple[str, nn.Module]], input_count: int
) -> StreamingPlan:
    copied = copy.deepcopy(model)
    modules = [(name, copied.get_submodule(name) if name else copied) for name, _ in recurrent]
    specs, outputs = [], []
    for name, module in modules:
        prefix = f"{name}." if len(modules) > 1 else ""
        h_shape, c_shape = state_shapes(module)
        for (input_name, output_name, role), shape in zip(
            _state_names(prefix, recurrent_kind(module)), (h_shape, c_shape), strict=False
        ):
            specs.append(InputSpec(input_name, role, shape))
            outputs.append(output_name)
    wrapper = _HookedStreaming(
        copied, [m for _, m in modules], [n for n, _ in modules], input_count
    )
    return StreamingPlan(wrapper, tuple(specs), tuple(outputs))


class _HookedStreaming(nn.Module):
    """Feed given states to each recurrent module and return the states they produce."""

    def __init__(
        self, model: nn.Module, recurrent: list[nn.Module], names: list[str], input_count: int
    ) -> None:
        super().__init__()
        self.model = model
        self.input_count = input_count
        self._names = names
        self._is_lstm = [recurrent_kind(m) == "LSTM" for m in recurrent]
        self._pending: dict[int, object] = {}
        self._captured: dict[int, object] = {}
        for index, module in enumerate(recurrent):
            module.register_forward_pre_hook(self._feed_state(index), with_kwargs=True)
            module.register_forward_hook(self._capture_state(index))

    def _feed_state(self, index: int):
        def hook(module, args, kwargs):
            given = args[1] if len(args) > 1 else kwargs.get("hx")
            if given is not None:
                raise InputError(
                    f"{self._names[index] or 'the model'} is called with a state of its "
                    "own; --streaming supplies the state itself, so call the module "
                    "without one"
                )
            if index in self._captured:
                raise InputError(
                    f"{self._names[index] or 'the model'} is called more than once per "
                    "forward; --streaming needs one call per recurrent module"
                )
            kwargs = {k: v for k, v in kwargs.items() if k != "hx"}
            return (args[0], self._pending[index]), kwargs

        return hook

    def _capture_state(self, index: int):
        def hook(module, args, output):
            self._captured[index] = output[1]

        return hook

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model_inputs, states = inputs[: self.input_count], list(inputs[self.input_count :])
        self._pending, self._captured = {}, {}
        for index, is_lstm in enumerate(self._is_lstm):
            if is_lstm:
                self._pending[index] = (states.pop(0), states.pop(0))
            else:
                self._pending[index] = states.pop(0)
        outputs = flatten_outputs(self.model(*model_inputs))
        new_states: list[torch.Tensor] = []
        for index in range(len(self._is_lstm)):
            new_states.extend(flatten_outputs(self._captured[index]))
        self._pending, self._captured = {}, {}
        return (*outputs, *new_states)


def _plan_mean_pooled(model: SequenceModel) -> StreamingPlan:
    rnn = model.rnn
    h_shape, c_shape = state_shapes(rnn)
    specs = [InputSpec("h0", InputRole.STATE_H, h_shape)]
    outputs = ["hn"]
    if c_shape is not None:
        specs.append(InputSpec("c0", InputRole.STATE_C, c_shape))
        outputs.append("cn")
    width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
    specs.append(InputSpec("pool_mean0", InputRole.CARRY, (BATCH, width)))
    specs.append(InputSpec("pool_steps0", InputRole.CARRY, (BATCH, 1), "int64"))
    outputs += ["pool_meann", "pool_stepsn"]
    return StreamingPlan(_MeanPooledStreaming(model), tuple(specs), tuple(outputs))


class _MeanPooledStreaming(nn.Module):
    """`SequenceModel` with mean pooling, carrying the running mean and step count."""

    def __init__(self, model: SequenceModel) -> None:
        super().__init__()
        self.rnn = copy.deepcopy(model.rnn)
        self.head = copy.deepcopy(model.head)
        self.is_lstm = isinstance(self.rnn, nn.LSTM)

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.is_lstm:
            outputs, (h, c) = self.rnn(x, (states[0], states[1]))
            new_states: tuple[torch.Tensor, ...] = (h, c)
        else:
            outputs, h = self.rnn(x, states[0])
            new_states = (h,)
        mean0, steps0 = states[-2], states[-1]
        steps = steps0 + outputs.size(1)
        # The count is int64, so it stays exact at any length. The update adds the chunk's
        # difference from the running mean, so no term grows with the count.
        difference = outputs.sum(dim=1) - outputs.size(1) * mean0
        mean = mean0 + difference / steps.to(mean0.dtype)
        return (self.head(mean), *new_states, mean, steps)


def check_chunks(
    reference: nn.Module,
    onnx_model: bytes,
    sequence_spec: InputSpec,
    state_specs: Sequence[InputSpec],
    output_axes: Sequence[dict[int, str]],
    atol: float,
    seed: int = 0,
) -> list[ChunkCase]:
    """Feed one sequence in chunks of 1, 7 and all steps; compare with the whole at once.

    `reference` is the original model wrapped to return a flat tuple of its outputs.

    Raises:
        CheckFailedError: a chunked run differs from the whole by more than `atol`.
    """
    from rnnedge.export.parity import _session

    session = _session(onnx_model)
    names = [i.name for i in session.get_inputs()]
    rng = np.random.default_rng(seed)
    shape = sequence_spec.concrete_shape(CHECK_BATCH, CHECK_SEQ_LEN)
    x = rng.standard_normal(shape).astype(np.float32)
    time_axis = sequence_spec.shape.index(SEQUENCE)
    with torch.inference_mode():
        expected = [t.numpy() for t in reference(torch.from_numpy(x))]
    cases = []
    for chunk in (*CHUNK_SIZES, CHECK_SEQ_LEN):
        states = [
            np.zeros(s.concrete_shape(CHECK_BATCH, CHECK_SEQ_LEN), s.dtype) for s in state_specs
        ]
        pieces: list[list[np.ndarray]] = []
        for start in range(0, CHECK_SEQ_LEN, chunk):
            part = np.take(x, range(start, min(start + chunk, CHECK_SEQ_LEN)), axis=time_axis)
            results = session.run(None, dict(zip(names, [part, *states], strict=True)))
            pieces.append(results[: len(expected)])
            states = results[len(expected) :]
        actual = []
        for index in range(len(expected)):
            axes = output_axes[index]
            sequence_axes = [a for a, n in axes.items() if n == SEQUENCE]
            if sequence_axes:
                actual.append(np.concatenate([p[index] for p in pieces], axis=sequence_axes[0]))
            else:
                actual.append(pieces[-1][index])
        error = max_output_error(expected, actual, output_axes)
        cases.append(ChunkCase(chunk, CHECK_BATCH, CHECK_SEQ_LEN, error))
    worst = max(cases, key=lambda c: c.max_abs_error)
    if worst.max_abs_error > atol:
        raise CheckFailedError(
            f"streaming check failed: feeding {CHECK_SEQ_LEN} steps in chunks of "
            f"{worst.chunk} differs from the whole sequence by {worst.max_abs_error:.3g}, "
            f"above the tolerance {atol:g}; the model's outputs depend on more than the "
            "carried recurrent state, for example on a convolution or pooling over time "
            "before or after the recurrent layer, so export it without --streaming"
        )
    return cases
