"""Shared fixtures: small real checkpoints and their exported models.

Tolerances used across the tests, chosen per comparison:
- float32 export against PyTorch: 1e-5 (observed errors are about 1e-7);
- int8 against float: compared by top-1 agreement and a loose absolute bound, because
  int8 rounding moves logits by 1e-3 to 1e-2;
- fp16 against float: 1e-2 absolute on logits of order 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnnedge.export import ModelConfig, SequenceModel, export_checkpoint, save_checkpoint  # noqa: E402

FEATURES = 6
LABELS = ["badminton", "running", "standing", "walking"]


def make_checkpoint(path: Path, cell: str = "lstm", seed: int = 0, **config) -> Path:
    torch.manual_seed(seed)
    settings = {"input_size": FEATURES, "hidden_size": 16, "num_outputs": len(LABELS), "cell": cell}
    settings.update(config)
    model = SequenceModel(ModelConfig(**settings))
    normalization = {"mean": [0.5] * settings["input_size"], "std": [2.0] * settings["input_size"]}
    save_checkpoint(model, path, LABELS, normalization)
    return path


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[str, Path]:
    """An exported float LSTM and GRU classifier, by cell name."""
    root = tmp_path_factory.mktemp("exported")
    models = {}
    for cell in ("lstm", "gru"):
        checkpoint = make_checkpoint(root / f"{cell}.pt", cell=cell, hidden_size=32, num_layers=2)
        export_checkpoint(checkpoint, root / f"{cell}.onnx")
        models[cell] = root / f"{cell}.onnx"
        models[f"{cell}.pt"] = checkpoint
    return models


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _reset_rnnedge_logging():
    """Keep the CLI's handler and level from leaking from one test into the next."""
    yield
    package = logging.getLogger("rnnedge")
    for handler in list(package.handlers):
        if getattr(handler, "_rnnedge_cli", False):
            package.removeHandler(handler)
    package.setLevel(logging.NOTSET)
    from rnnedge.commands._common import reset_verbosity

    reset_verbosity()


@pytest.fixture(autouse=True)
def _idle_host(monkeypatch):
    """Read the load average as 0 in this process.

    `rnnedge profile`'s warning about a busy host would otherwise add a line to the exact
    stderr checks. Tests of that warning set their own reading."""
    import rnnedge.host

    monkeypatch.setattr(rnnedge.host, "load_average_1min", lambda: 0.0)
