"""An estimate of the memory one run needs, checked before a synthetic input is built.

The peak memory of a run grows linearly with batch x sequence length. The estimate counts,
per step and sequence, the input's floats and, for each LSTM, GRU or RNN node and
direction, `gates x hidden` floats of gate values (4 gates for LSTM, 3 for GRU, 1 for RNN)
plus `hidden` floats of the output `Y`. It doubles the sum to cover copies such as the
Transpose around `Y`. For a 1-layer LSTM with 6 features and hidden size 8 the estimate is
368 bytes per step. The measured peak RSS of `rnnedge profile --seq-len 10000000` was
2.7 GB there, or 268 bytes per step (onnxruntime 1.32 on x86-64).

Without this check, a mistyped `--seq-len 100000000` made that process grow to 20 GB and
abort inside ONNX Runtime. On a board, the kernel's OOM killer ends such a process instead.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnedge.errors import InputError
from rnnedge.runtime.external_data import is_ort_format
from rnnedge.runtime.onnx_proto import NodeInfo, parse_model

logger = logging.getLogger(__name__)

_GATES = {"LSTM": 4, "DynamicQuantizeLSTM": 4, "GRU": 3, "RNN": 1}
_SAFETY = 2
_FLOAT_BYTES = 4


def floats_per_step(nodes: Sequence[NodeInfo], input_floats: int) -> int:
    """Estimate the floats one step of one sequence keeps alive during a run.

    NOTE: recurrent work inside Scan or Loop bodies (rnnedge's int8 GRU, exported cell
    loops) has no `hidden_size` attribute and is not counted, so their estimate is low.
    """
    total = input_floats
    for node in nodes:
        gates = _GATES.get(node.op_type)
        if gates is not None and node.hidden_size:
            total += node.directions * node.hidden_size * (gates + 1)
    return total


def run_bytes_estimate(
    nodes: Sequence[NodeInfo], input_floats: int, batch: int, seq_len: int
) -> int:
    """Estimate the bytes a run at `batch` x `seq_len` needs, with the safety factor."""
    per_step = floats_per_step(nodes, input_floats) * _FLOAT_BYTES * _SAFETY
    return per_step * batch * seq_len


def available_memory_bytes(root: str | os.PathLike[str] = "/") -> int | None:
    """Memory this process may still use: MemAvailable, capped by a cgroup v2 limit.

    Falls back to the physical memory size where /proc/meminfo is missing, and returns
    None where neither can be read.
    """
    root = Path(root)
    available = _meminfo_available(root / "proc/meminfo")
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    limit = _cgroup_room(root / "sys/fs/cgroup")
    return min(available, limit) if limit is not None else available


def _meminfo_available(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s*(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def _cgroup_room(folder: Path) -> int | None:
    try:
        limit = (folder / "memory.max").read_text().strip()
        current = int((folder / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    if not limit.isdigit():  # "max": no limit
        return None
    return max(int(limit) - current, 0)


def check_run_memory(session: Any, batch: int, seq_len: int) -> None:
    """Raise InputError when a run of `session` at `batch` x `seq_len` cannot fit in memory.

    Args:
        session: a `rnnedge.runtime.Session`; its model file and data inputs are read.
    """
    available = available_memory_bytes()
    if available is None:
        logger.debug("available memory unknown; skipping the memory check")
        return
    data = Path(session.path).read_bytes()
    if is_ort_format(data):
        logger.info(
            "%s is in the ONNX Runtime format, whose graph rnnedge does not read; "
            "skipping the memory check",
            Path(session.path).name,
        )
        return
    nodes = parse_model(data).nodes
    input_floats = sum(_floats_per_element(info.shape) for info in session.data_inputs)
    needed = run_bytes_estimate(nodes, input_floats, batch, seq_len)
    logger.debug("a run at batch %d, length %d needs about %d bytes", batch, seq_len, needed)
    if needed <= available:
        return
    per_step = max(needed // (batch * seq_len), 1)
    longest = available // (batch * per_step)
    largest_batch = available // (seq_len * per_step)
    if longest >= 1:
        fix = f"pass a sequence length of at most {longest} at batch {batch}"
    elif largest_batch >= 1:
        fix = f"pass a batch of at most {largest_batch} at this length"
    else:
        fix = "pass a shorter sequence length and a smaller batch"
    raise InputError(
        f"sequence length {seq_len} at batch {batch} needs about {_gigabytes(needed)} for "
        f"the input and the recurrent buffers (an estimate), more than the "
        f"{_gigabytes(available)} of memory available; {fix}"
    )


def _floats_per_element(shape: Sequence[Any]) -> int:
    # The static axes (features) of one input: batch and time are the symbolic ones.
    return math.prod(dim for dim in shape if isinstance(dim, int) and dim > 0)


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:,.1f} GB"
