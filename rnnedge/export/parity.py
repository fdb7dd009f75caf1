"""Parity of an exported model with its PyTorch source, at shapes other than the example's.

An export can load fine and still compute something else at another batch size or
sequence length (a traced loop unrolled to the example's length, a state whose batch
axis was frozen). Comparing outputs at new shapes is what catches that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from rnnedge.runtime.inputs import describe

logger = logging.getLogger(__name__)

# Float32 LSTM and GRU exports match PyTorch to about 1e-7; 1e-5 leaves room for the
# different summation order of ONNX Runtime's kernels over long sequences.
DEFAULT_ATOL = 1e-5


@dataclass(frozen=True)
class ParityCase:
    batch: int
    seq_len: int
    max_abs_error: float


@dataclass(frozen=True)
class ParityReport:
    cases: tuple[ParityCase, ...]
    atol: float

    @property
    def max_abs_error(self) -> float:
        return max(case.max_abs_error for case in self.cases)

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.atol


def check_parity(
    model: torch.nn.Module,
    onnx_model: bytes,
    features: int,
    shapes: Sequence[tuple[int, int]],
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same random inputs; report the max abs error.

    `shapes` are (batch, seq_len) pairs for batch-major input of `features` features.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    cases = []
    for batch, seq_len in shapes:
        x = rng.standard_normal((batch, seq_len, features)).astype(np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        actual = session.run(None, {input_name: x})[0]
        if actual.shape != expected.shape:
            error = float("inf")
            logger.warning(
                "output shape %s differs from PyTorch's %s at batch %d, length %d",
                actual.shape, expected.shape, batch, seq_len,
            )  # fmt: skip
        else:
            error = float(np.max(np.abs(actual.astype(np.float64) - expected)))
        logger.debug("parity at batch %d, length %d: %.3g (%s)", batch, seq_len, error, describe(x))
        cases.append(ParityCase(batch, seq_len, error))
    return ParityReport(tuple(cases), atol)
