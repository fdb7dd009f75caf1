"""BasicMotions, the real sensor dataset of the demo, as shipped inside sktime.

BasicMotions holds 3-axis accelerometer and 3-axis gyroscope recordings from a smart
watch (6 channels, 100 steps at 10 Hz) of four activities: standing, walking, running
and badminton; 40 series for training and 40 for testing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from rnnedge.errors import require

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceDataset:
    """Raw (unnormalized) sequences in (batch, time, features) layout with labels."""

    x_train: np.ndarray
    y_train: np.ndarray  # class indices into `labels`
    x_test: np.ndarray
    y_test: np.ndarray
    labels: tuple[str, ...]

    def normalization(self) -> dict[str, list[float]]:
        """Per-feature mean and standard deviation of the training split."""
        flat = self.x_train.reshape(-1, self.x_train.shape[-1]).astype(np.float64)
        std = flat.std(axis=0)
        std[std == 0] = 1.0
        return {"mean": flat.mean(axis=0).tolist(), "std": std.tolist()}


def load_basic_motions() -> SequenceDataset:
    """Load both splits from sktime's bundled copy; nothing is downloaded."""
    datasets = require("sktime.datasets", "demo")
    splits = {}
    for split in ("train", "test"):
        x, y = datasets.load_basic_motions(split=split, return_X_y=True, return_type="numpy3D")
        # sktime stores (instances, channels, time); rnnedge models are batch-major.
        splits[split] = (
            np.ascontiguousarray(x.transpose(0, 2, 1), dtype=np.float32),
            np.asarray(y),
        )
    labels = tuple(sorted({str(v) for v in splits["train"][1]}))
    index = {label: i for i, label in enumerate(labels)}
    encode = lambda values: np.array([index[str(v)] for v in values], dtype=np.int64)  # noqa: E731
    x_train, y_train = splits["train"]
    x_test, y_test = splits["test"]
    logger.info(
        "BasicMotions: train %s, test %s, %d classes", x_train.shape, x_test.shape, len(labels)
    )
    return SequenceDataset(x_train, encode(y_train), x_test, encode(y_test), labels)
