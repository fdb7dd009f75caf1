"""The built-in sequence model: an LSTM or GRU backbone with a pooling step and a head.

Checkpoints are plain dictionaries of strings, numbers, lists and tensors, so they load
with `torch.load(..., weights_only=True)`:

    {"format": "rnnedge-checkpoint", "version": 1, "config": {...},
     "state_dict": {...}, "metadata": {"labels": [...], "normalization": {...}}}
"""

from __future__ import annotations

import enum
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnedge.errors import InputError
from rnnedge.export.torchfile import LoadProblem, TorchFileError, load_weights_only

CHECKPOINT_FORMAT = "rnnedge-checkpoint"
CHECKPOINT_VERSION = 1


class Cell(str, enum.Enum):
    LSTM = "lstm"
    GRU = "gru"


class Pooling(str, enum.Enum):
    """How the per-step outputs become one vector per sequence."""

    MEAN = "mean"
    LAST = "last"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a `SequenceModel`; stored in the checkpoint."""

    input_size: int
    hidden_size: int
    num_outputs: int
    cell: str = Cell.LSTM.value
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    task: str = "classification"
    pooling: str = Pooling.MEAN.value

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_outputs", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"model config {name} must be a positive integer, got {value!r}")
        Cell(self.cell)
        Pooling(self.pooling)
        if self.task not in ("classification", "regression"):
            raise InputError(
                f"model config task {self.task!r} is invalid; use classification or regression"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"model config dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InputError(
                f"unknown model config field {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise InputError(f"invalid model config: {exc}") from exc
        except ValueError as exc:
            raise InputError(f"invalid model config: {exc}") from exc


class SequenceModel(nn.Module):
    """LSTM or GRU over (batch, time, features), pooled over time, then a linear head.

    Classification models output logits, one per class; regression models output
    `num_outputs` values.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        rnn_class = nn.LSTM if config.cell == Cell.LSTM.value else nn.GRU
        self.rnn = rnn_class(
            input_size=config.input_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(config.hidden_size * directions, config.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.rnn(x)
        if self.config.pooling == Pooling.MEAN.value:
            pooled = outputs.mean(dim=1)
        else:
            pooled = outputs[:, -1]
        return self.head(pooled)


def save_checkpoint(
    model: SequenceModel,
    path: str | os.PathLike[str],
    labels: list[str] | None = None,
    normalization: dict[str, list[float]] | None = None,
) -> None:
    """Save a checkpoint that `load_checkpoint` reads with `weights_only=True`."""
    from rnnedge._fileio import atomic_path

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": {
            "labels": list(labels or []),
            "normalization": normalization,
        },
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode and the runtime metadata."""

    model: SequenceModel
    config: ModelConfig
    labels: list[str]
    normalization: dict[str, list[float]] | None


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load an rnnedge checkpoint with `weights_only=True` and rebuild the model."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {str(path)!r} not found; pass the path to a .pt file")
    try:
        payload = load_weights_only(path)
    except TorchFileError as exc:
        if exc.problem is LoadProblem.NEEDS_UNPICKLING:
            raise InputError(
                f"checkpoint {str(path)!r} {exc.reason}, so it is not an rnnedge checkpoint, "
                "which loads with weights_only=True; save one with "
                "rnnedge.export.save_checkpoint"
            ) from exc
        raise InputError(
            f"cannot load checkpoint {str(path)!r}: the file {exc.reason}; pass an rnnedge "
            "checkpoint (config + state_dict), which rnnedge.export.save_checkpoint writes"
        ) from exc
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        kind = type(payload).__name__
        keys = sorted(payload)[:5] if isinstance(payload, dict) else []
        raise InputError(
            f"checkpoint {str(path)!r} has no model config (found a {kind}"
            f"{' with keys ' + str(keys) if keys else ''}); save it with "
            "rnnedge.export.save_checkpoint, which stores the config beside the state_dict"
        )
    version = payload.get("version", CHECKPOINT_VERSION)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise InputError(
            f"checkpoint {str(path)!r} has format version {version!r}; this rnnedge reads "
            f"up to {CHECKPOINT_VERSION}, so upgrade rnnedge"
        )
    config = ModelConfig.from_dict(dict(payload["config"]))
    model = SequenceModel(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(
            f"checkpoint {str(path)!r}: state_dict does not match its config "
            f"({' '.join(first[:2])[:200]})"
        ) from exc
    model.eval()
    metadata = payload.get("metadata") or {}
    return Checkpoint(
        model=model,
        config=config,
        labels=[str(x) for x in metadata.get("labels") or []],
        normalization=metadata.get("normalization"),
    )
