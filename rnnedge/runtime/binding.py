"""IO binding for streaming: preallocated buffers, and the state swapped between two of them.

A streaming step is small (one GRU step of hidden size 128 is a few microseconds of
arithmetic), so the per-call work around it matters: building the feed dictionary,
allocating outputs and copying the state back in. Here every input, output and state
tensor is a numpy array allocated once and bound to ONNX Runtime through an `OrtValue`
that shares its memory. Each state pair has two buffers, A and B, and two IO bindings are
prepared: one reads the state from A and writes the next state to B, the other reads B
and writes A. A step runs one binding and flips the index, so the state is never copied.

On the CUDA and TensorRT providers the state buffers are allocated by ONNX Runtime on the
GPU instead (`StateBuffers(device=("cuda", id))`), so the state stays there from step to
step and only the chunk and the non-state outputs cross to and from host memory.

NOTE: the GPU buffers are exercised by a test marked `gpu` that has not yet run on a GPU;
the same code with ONNX Runtime allocating on the CPU device is tested everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from rnnedge.runtime.state import StatePair


class StateBuffers:
    """Two preallocated buffers per state pair and the index of the one holding the state.

    Args:
        pairs: the state pairs.
        batch: the batch size of the state.
        device: None for numpy arrays that ONNX Runtime reads and writes in place. An
            ONNX Runtime device type and id, such as ("cuda", 0), makes ONNX Runtime
            allocate the buffers there, and reading the state then copies it to the host.
    """

    def __init__(
        self, pairs: Sequence[StatePair], batch: int, device: tuple[str, int] | None = None
    ) -> None:
        self.pairs = tuple(pairs)
        self.batch = batch
        self.device = device
        if device is None:
            self.arrays: tuple[dict[str, np.ndarray], ...] | None = (
                {pair.input: pair.zeros(batch) for pair in self.pairs},
                {pair.input: pair.zeros(batch) for pair in self.pairs},
            )
            self.values = tuple(
                {name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in side.items()}
                for side in self.arrays
            )
        else:
            self.arrays = None
            device_type, device_id = device
            self.values = tuple(
                {
                    pair.input: ort.OrtValue.ortvalue_from_numpy(
                        pair.zeros(batch), device_type, device_id
                    )
                    for pair in self.pairs
                }
                for _ in range(2)
            )
        self.current = 0

    def state(self) -> dict[str, np.ndarray]:
        """The current state by state input name: the buffers on the host, else copies."""
        if self.arrays is not None:
            return self.arrays[self.current]
        return {name: value.numpy() for name, value in self.values[self.current].items()}

    def store_next(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Copy the state outputs of an unbound run into the spare buffers, then flip."""
        spare = 1 - self.current
        for pair in self.pairs:
            if self.arrays is not None:
                np.copyto(self.arrays[spare][pair.input], outputs[pair.output])
            else:
                array = np.ascontiguousarray(outputs[pair.output], dtype=pair.dtype)
                self.values[spare][pair.input].update_inplace(array)
        self.current = spare

    def load(self, states: Mapping[str, np.ndarray]) -> None:
        """Copy start values, by state input name, into the buffers of the current state."""
        for name, array in states.items():
            if self.arrays is not None:
                np.copyto(self.arrays[self.current][name], array)
            else:
                self.values[self.current][name].update_inplace(np.ascontiguousarray(array))

    def reset(self) -> None:
        for side in range(2):
            for pair in self.pairs:
                if self.arrays is not None:
                    self.arrays[side][pair.input].fill(0)
                else:
                    self.values[side][pair.input].update_inplace(pair.zeros(self.batch))
        self.current = 0


class BoundStep:
    """Two IO bindings over fixed input and output buffers for one chunk shape.

    Args:
        session: the ONNX Runtime session.
        inputs: data input name to an example array; a buffer of its shape and dtype is
            allocated, and `run` reads whatever the caller copied into `self.inputs`.
        constants: constant inputs, bound once; the arrays must stay alive and unchanged.
        outputs: non-state output name to an example array (shape and dtype).
        states: the state buffers that the two bindings alternate between.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        inputs: Mapping[str, np.ndarray],
        constants: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        states: StateBuffers,
    ) -> None:
        self.states = states
        self.inputs = {name: np.empty_like(array) for name, array in inputs.items()}
        self.outputs = {name: np.empty_like(array) for name, array in outputs.items()}
        self._constants = dict(constants)
        shared = {
            name: ort.OrtValue.ortvalue_from_numpy(array)
            for name, array in {**self.inputs, **self._constants}.items()
        }
        out_values = {
            name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in self.outputs.items()
        }
        self._keep = (shared, out_values)
        self._bindings = []
        for side in (0, 1):
            binding = session.io_binding()
            for name, value in shared.items():
                binding.bind_ortvalue_input(name, value)
            for name, value in out_values.items():
                binding.bind_ortvalue_output(name, value)
            for pair in states.pairs:
                binding.bind_ortvalue_input(pair.input, states.values[side][pair.input])
                binding.bind_ortvalue_output(pair.output, states.values[1 - side][pair.input])
            self._bindings.append(binding)
        self._run_options = ort.RunOptions()
        # `InferenceSession.run_with_iobinding` (onnxruntime 1.17 to 1.32) forwards to the
        # C++ session's method of the same name with the binding's C++ object. Calling that
        # directly saves the wrapper's Python frames, which show up on a step of a few
        # microseconds; where those private names are missing, the public call is used.
        native = getattr(session, "_sess", None)
        if native is not None and all(hasattr(b, "_iobinding") for b in self._bindings):
            self._run = native.run_with_iobinding
            self._targets = [b._iobinding for b in self._bindings]
        else:
            self._run = session.run_with_iobinding
            self._targets = self._bindings

    def run(self) -> dict[str, np.ndarray]:
        """Run one step on the bound inputs; return the output buffers (overwritten next step)."""
        self._run(self._targets[self.states.current], self._run_options)
        self.states.current = 1 - self.states.current
        return self.outputs
