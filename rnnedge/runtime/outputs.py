"""Writing model outputs to files and summarizing predictions."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge._fileio import write_bytes_atomic
from rnnedge.runtime.metadata import Task


def save_outputs(path: Path, outputs: Mapping[str, np.ndarray]) -> None:
    """Write `.npy` (the first output) or `.npz` (all outputs by name), atomically."""
    buffer = io.BytesIO()
    if path.suffix.lower() == ".npz":
        np.savez(buffer, **dict(outputs))
    else:
        np.save(buffer, next(iter(outputs.values())), allow_pickle=False)
    write_bytes_atomic(path, buffer.getvalue())


def summarize_predictions(session, outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Output shapes and, for a classification model, the predicted label per sequence."""
    summary: dict[str, Any] = {"outputs": {name: list(v.shape) for name, v in outputs.items()}}
    first = next(iter(outputs.values()))
    if session.metadata.task is Task.CLASSIFICATION and first.ndim == 2:
        index = first.argmax(axis=-1)
        labels = session.metadata.labels
        summary["predictions"] = [labels[i] if labels else int(i) for i in index]
    return summary
