"""Batch inference over an ONNX model with a checked choice of execution provider."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.errors import InputError
from rnnedge.host import cpu_info
from rnnedge.runtime.inputs import check_sequence_input, describe
from rnnedge.runtime.metadata import Layout, ModelMetadata, Task
from rnnedge.runtime.providers import (
    CPU_EP,
    Provider,
    ProviderPlan,
    check_session_providers,
    plan_providers,
)

logger = logging.getLogger(__name__)


def open_model_file(path: str | os.PathLike[str]) -> Path:
    """Check that `path` names a readable file before ONNX Runtime parses it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file {str(path)!r} not found; pass the path to an .onnx file")
    if not path.is_file():
        raise InputError(f"model path {str(path)!r} is not a file; pass the path to an .onnx file")
    if path.stat().st_size == 0:
        raise InputError(f"model file {str(path)!r} is empty; export the model again")
    return path


class Session:
    """An ONNX Runtime session over one model, fed with validated arrays.

    Args:
        path: the `.onnx` file.
        device: a device profile or its name; its provider preference and options
            are used for `provider="auto"`.
        provider: `auto`, `cpu`, `cuda`, `tensorrt` or `arm`.
        strict_provider: raise `ProviderError` instead of warning when the session
            does not get the requested provider.
        threads: CPU threads for one operator (`intra_op_num_threads`); the device
            profile's value, or ONNX Runtime's default, when None.
        normalize: apply the normalization statistics stored in the model's metadata
            to raw inputs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: Any = None,
        provider: Provider | str = Provider.AUTO,
        strict_provider: bool = False,
        threads: int | None = None,
        normalize: bool = True,
    ) -> None:
        self.path = open_model_file(path)
        self.device = _resolve_device(device)
        preference: tuple[str, ...] = ()
        options: dict[str, dict[str, Any]] = {}
        if self.device is not None:
            preference = tuple(self.device.provider_preference)
            options = {k: dict(v) for k, v in self.device.provider_options.items()}
        self.plan: ProviderPlan = plan_providers(
            provider, preference=preference, options=options, strict=strict_provider
        )
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        cpu_options = options.get("cpu", {})
        intra = threads if threads is not None else cpu_options.get("intra_op_num_threads")
        if intra is None:
            # ONNX Runtime's own default is one thread per physical core; set it
            # explicitly so that the count is known and recorded with measurements.
            intra = cpu_info()["physical_cores"] or 1
        if int(intra) < 1:
            raise InputError(f"threads must be at least 1, got {intra}")
        session_options.intra_op_num_threads = int(intra)
        session_options.inter_op_num_threads = 1
        if "allow_spinning" in cpu_options:
            session_options.add_session_config_entry(
                "session.intra_op.allow_spinning", "1" if cpu_options["allow_spinning"] else "0"
            )
        self.threads = session_options.intra_op_num_threads
        self._session = _create_session(self.path, session_options, self.plan)
        self.providers: list[str] = self._session.get_providers()
        check_session_providers(self.plan, self.providers, strict=strict_provider)
        logger.info("session for %s uses %s", self.path.name, ", ".join(self.providers))
        props = self._session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props)
        self.normalize = normalize
        self.inputs = self._session.get_inputs()
        self.outputs = self._session.get_outputs()

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @property
    def primary_provider(self) -> str:
        return self.providers[0] if self.providers else CPU_EP

    def prepare(
        self, data: np.ndarray | Mapping[str, np.ndarray], source: str = "input"
    ) -> dict[str, np.ndarray]:
        """Validate and normalize inputs; return the feed for `InferenceSession.run`."""
        if isinstance(data, np.ndarray):
            if len(self.inputs) != 1:
                names = ", ".join(self.input_names)
                raise InputError(
                    f"the model has {len(self.inputs)} inputs ({names}); pass an .npz file "
                    "with one array per input name"
                )
            data = {self.inputs[0].name: data}
        unknown = sorted(set(data) - set(self.input_names))
        missing = [name for name in self.input_names if name not in data]
        if unknown or missing:
            raise InputError(
                f"{source} arrays {sorted(data)} do not match the model inputs "
                f"{self.input_names}; missing {missing}, unexpected {unknown}"
            )
        feed = {}
        for info in self.inputs:
            label = source if len(self.inputs) == 1 else f"{source}[{info.name}]"
            array = check_sequence_input(data[info.name], info.name, info.shape, info.type, label)
            if info is self.inputs[0]:
                array = self._normalize(array)
            feed[info.name] = array
        return feed

    def run(
        self, data: np.ndarray | Mapping[str, np.ndarray], source: str = "input"
    ) -> dict[str, np.ndarray]:
        """Run the model on a batch; return every output by name."""
        feed = self.prepare(data, source)
        return self.run_prepared(feed)

    def run_prepared(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on an already prepared feed (as from `prepare`), with no further checks."""
        values = self._session.run(None, dict(feed))
        return dict(zip(self.output_names, values, strict=True))

    def predict(self, data: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """Return the first output, or class labels for a classification model."""
        output = self.run(data)[self.output_names[0]]
        if self.metadata.task is Task.CLASSIFICATION:
            index = output.argmax(axis=-1)
            if self.metadata.labels:
                return np.asarray(self.metadata.labels)[index]
            return index
        return output

    def _normalize(self, array: np.ndarray) -> np.ndarray:
        stats = self.metadata.normalization
        if not self.normalize or stats is None:
            return array
        if array.shape[-1] != len(stats.mean):
            raise InputError(
                f"the model's normalization covers {len(stats.mean)} features, the input "
                f"has {array.shape[-1]}"
            )
        mean = np.asarray(stats.mean, dtype=array.dtype)
        std = np.asarray(stats.std, dtype=array.dtype)
        logger.debug("normalizing input %s", describe(array))
        return np.ascontiguousarray((array - mean) / std)

    @property
    def batch_major(self) -> bool:
        return self.metadata.layout is Layout.BATCH_MAJOR


def _create_session(
    path: Path, options: ort.SessionOptions, plan: ProviderPlan
) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=plan.as_ort_list())
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "protobuf" in text.lower() or "INVALID_PROTOBUF" in text or "Load model" in text:
            raise InputError(
                f"{str(path)!r} is not a valid ONNX model ({text[:160]}); export it with "
                "rnnedge export"
            ) from exc
        raise InputError(f"onnxruntime cannot load {str(path)!r}: {text[:300]}") from exc


def _resolve_device(device: Any) -> Any:
    if device is None or not isinstance(device, str):
        return device
    from rnnedge.profiling.catalog import load_device

    return load_device(device)
