"""The metadata rnnedge stores in an ONNX model's `metadata_props`.

Every key starts with ``rnnedge.``; lists and mappings are JSON strings. The runtime reads
them through ONNX Runtime's `custom_metadata_map`, so parsing needs neither torch nor onnx.
Models from elsewhere carry none of these keys, and every field then has a default.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from rnnedge.errors import InputError

PREFIX = "rnnedge."
FORMAT_VERSION = 1


class Layout(str, enum.Enum):
    """Axis order of a sequence input: (batch, time, features) or (time, batch, features)."""

    BATCH_MAJOR = "batch-major"
    TIME_MAJOR = "time-major"


class Task(str, enum.Enum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True)
class Normalization:
    """Per-feature standardization applied to raw inputs: (x - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """What the runtime needs to feed a model and read its outputs."""

    layout: Layout = Layout.BATCH_MAJOR
    features: int | None = None
    task: Task | None = None
    labels: tuple[str, ...] = ()
    normalization: Normalization | None = None
    cell: str | None = None
    precision: str = "fp32"
    # (state input, state output) name pairs of a streaming graph: the output of one
    # call is fed to the paired input of the next.
    state_pairs: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def input_roles(self) -> dict[str, str]:
        """The role of each graph input by name (`sequence`, `lengths`, `state_h`, `state_c`
        or `carry`), as `rnnedge export` records it; empty for a model from elsewhere."""
        text = self.extra.get("input_roles")
        if text is None:
            return {}
        try:
            roles = json.loads(text)
        except ValueError as exc:
            raise InputError(
                f"invalid rnnedge metadata in model: input_roles is not JSON ({exc}); "
                "re-export the model with rnnedge export"
            ) from exc
        if not isinstance(roles, dict):
            raise InputError(
                "invalid rnnedge metadata in model: input_roles is not a mapping of input "
                "names to roles; re-export the model with rnnedge export"
            )
        return {str(name): str(role) for name, role in roles.items()}

    def to_props(self) -> dict[str, str]:
        """Serialize to the string key/value pairs of ONNX `metadata_props`."""
        props = {
            f"{PREFIX}format_version": str(FORMAT_VERSION),
            f"{PREFIX}layout": self.layout.value,
            f"{PREFIX}precision": self.precision,
        }
        if self.features is not None:
            props[f"{PREFIX}features"] = str(self.features)
        if self.task is not None:
            props[f"{PREFIX}task"] = self.task.value
        if self.labels:
            props[f"{PREFIX}labels"] = json.dumps(list(self.labels))
        if self.normalization is not None:
            props[f"{PREFIX}normalization"] = json.dumps(
                {"mean": list(self.normalization.mean), "std": list(self.normalization.std)}
            )
        if self.cell is not None:
            props[f"{PREFIX}cell"] = self.cell
        if self.state_pairs:
            props[f"{PREFIX}state_pairs"] = json.dumps([list(p) for p in self.state_pairs])
        props.update({f"{PREFIX}{key}": value for key, value in self.extra.items()})
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> ModelMetadata:
        """Parse `metadata_props`; keys without the rnnedge prefix are ignored."""
        ours = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
        known = {
            "format_version", "layout", "precision", "features", "task", "labels",
            "normalization", "cell", "state_pairs",
        }  # fmt: skip
        try:
            version = int(ours.get("format_version", FORMAT_VERSION))
            if version > FORMAT_VERSION:
                raise InputError(
                    f"model metadata format {version} is newer than {FORMAT_VERSION}, the "
                    "newest this rnnedge reads; upgrade rnnedge"
                )
            features = int(ours["features"]) if "features" in ours else None
            labels = tuple(str(x) for x in json.loads(ours.get("labels", "[]")))
            normalization = None
            if "normalization" in ours:
                stats = json.loads(ours["normalization"])
                normalization = Normalization(
                    mean=tuple(float(x) for x in stats["mean"]),
                    std=tuple(float(x) for x in stats["std"]),
                )
            pairs = tuple((str(a), str(b)) for a, b in json.loads(ours.get("state_pairs", "[]")))
            return cls(
                state_pairs=pairs,
                layout=Layout(ours.get("layout", Layout.BATCH_MAJOR.value)),
                features=features,
                task=Task(ours["task"]) if "task" in ours else None,
                labels=labels,
                normalization=normalization,
                cell=ours.get("cell"),
                precision=ours.get("precision", "fp32"),
                extra={k: v for k, v in ours.items() if k not in known},
            )
        except InputError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"invalid rnnedge metadata in model: {exc}; re-export the model with rnnedge export"
            ) from exc
