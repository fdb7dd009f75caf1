"""Loading the model to export from any of the sources `rnnedge export` accepts.

A source is one of:

- an rnnedge checkpoint (config and state_dict), loaded with `weights_only=True`;
- a TorchScript archive written by `torch.jit.save` (a zip file with a `code/` folder);
- a `torch.export` ExportedProgram file (a zip file with `models/` and `archive_format`);
- `path/to/file.py:factory` or `package.module:factory`, a callable that returns the
  `nn.Module`, with its weights from a state_dict file;
- with `trust_pickle=True` only, a whole pickled `nn.Module` saved with `torch.save`.

Files are opened with `weights_only=True` unless the caller trusts them, because full
unpickling runs whatever code the file names.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import importlib.util
import inspect
import logging
import os
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnedge.errors import InputError
from rnnedge.export.model import ModelConfig, load_checkpoint
from rnnedge.export.torchfile import (
    LoadProblem,
    TorchFileError,
    incomplete_file,
    load_weights_only,
)

logger = logging.getLogger(__name__)

TRUST_FLAG = "--trust-pickle"
ACCEPTED_SOURCES = (
    "an rnnedge checkpoint, a TorchScript archive, a torch.export .pt2 file, or "
    "path/to/file.py:factory / package.module:factory"
)
# Files that are certainly not PyTorch models, with the hint for each; torch.load would
# only report an unpickling opcode for them.
_NOT_MODELS = {
    ".onnx": "is already an ONNX model; pass it to rnnedge quantize or rnnedge run",
    ".npy": "is a NumPy data file, not a model",
    ".npz": "is a NumPy data file, not a model",
    ".csv": "is a data file, not a model",
}
_FACTORY_PATTERN = re.compile(r"^(?P<target>.+):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


class SourceKind(str, enum.Enum):
    CHECKPOINT = "checkpoint"
    TORCHSCRIPT = "torchscript"
    EXPORTED_PROGRAM = "exported-program"
    FACTORY = "factory"
    PICKLED_MODULE = "pickled-module"
    MODULE = "module"


@dataclass
class ModelSource:
    """A model ready to export: the module in eval mode and what the source told about it.

    `exported_program` is set for ExportedProgram files, whose `module` is the program's
    runnable module. `config`, `labels`, `normalization` and `task` come from rnnedge
    checkpoints; `example_shape` (batch, time, features in that order) and `batch_first`
    are None where the source does not record them.
    """

    kind: SourceKind
    module: nn.Module
    description: str
    exported_program: object | None = None
    config: ModelConfig | None = None
    labels: tuple[str, ...] = ()
    normalization: dict[str, list[float]] | None = None
    task: str | None = None
    example_shape: tuple[int, int, int] | None = None
    batch_first: bool | None = None
    # For ExportedProgram files: whether each axis of the (batch, time, features) example
    # is dynamic in the program; None where the source does not fix its shapes.
    dynamic_dims: tuple[bool, bool, bool] | None = None


def load_source(
    source: str | os.PathLike[str] | nn.Module,
    weights: str | os.PathLike[str] | None = None,
    trust_pickle: bool = False,
) -> ModelSource:
    """Load `source` as one of the kinds listed in the module docstring.

    Raises:
        InputError: the source is missing, of an unknown kind, or needs full unpickling
            without `trust_pickle`.
    """
    if isinstance(source, nn.Module):
        source.eval()
        return ModelSource(SourceKind.MODULE, source, f"module {type(source).__name__}")
    text = os.fspath(source)
    path = Path(text)
    if not path.exists() and _FACTORY_PATTERN.match(text):
        return _load_factory(text, weights, trust_pickle)
    if not path.is_file():
        raise InputError(f"source {text!r} not found; pass {ACCEPTED_SOURCES}")
    _reject_non_model(path)
    if weights is not None:
        raise InputError(
            f"--weights applies to file.py:factory sources only, not to the file {text!r}; "
            "drop --weights"
        )
    kind = _zip_kind(path)
    if kind is SourceKind.TORCHSCRIPT:
        return _load_torchscript(path)
    if kind is SourceKind.EXPORTED_PROGRAM:
        return _load_exported_program(path)
    return _load_pickle_file(path, trust_pickle)


def _reject_non_model(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".py":
        raise InputError(
            f"source {str(path)!r} is a Python file without a factory name; did you mean "
            f"{path}:FACTORY, where FACTORY is the function in it that returns the "
            "nn.Module?"
        )
    if suffix in _NOT_MODELS:
        raise InputError(
            f"source {str(path)!r} {_NOT_MODELS[suffix]}; export takes {ACCEPTED_SOURCES}"
        )


def _zip_kind(path: Path) -> SourceKind | None:
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(name.endswith("/archive_format") for name in names) and any(
        "/models/" in name for name in names
    ):
        return SourceKind.EXPORTED_PROGRAM
    if any("/code/" in name for name in names):
        return SourceKind.TORCHSCRIPT
    return None


def _load_torchscript(path: Path) -> ModelSource:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise InputError(
            f"cannot load TorchScript archive {str(path)!r}: {_first_line(exc)}; "
            "save it with torch.jit.save"
        ) from exc
    module.eval()
    return ModelSource(SourceKind.TORCHSCRIPT, module, f"TorchScript archive {path.name}")


def _load_exported_program(path: Path) -> ModelSource:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch.export.load raises several unrelated types
        raise InputError(
            f"cannot load ExportedProgram {str(path)!r}: {_first_line(exc)}; "
            "save it with torch.export.save"
        ) from exc
    placeholders = [
        node
        for node in program.graph.nodes
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs
    ]
    example, dynamic = None, None
    if placeholders:
        shape = placeholders[0].meta["val"].shape
        if len(shape) == 3:
            example = tuple(int(d) if _is_static(d) else 2 for d in shape)
            dynamic = tuple(not _is_static(d) for d in shape)
    return ModelSource(
        SourceKind.EXPORTED_PROGRAM,
        program.module(),
        f"ExportedProgram {path.name}",
        exported_program=program,
        example_shape=example,
        dynamic_dims=dynamic,
    )


def _is_static(dim: object) -> bool:
    return isinstance(dim, int)


def _load_pickle_file(path: Path, trust_pickle: bool) -> ModelSource:
    if not trust_pickle:
        try:
            payload = load_weights_only(path)
        except TorchFileError as exc:
            if exc.problem is LoadProblem.NEEDS_UNPICKLING:
                raise InputError(
                    f"{str(path)!r} {exc.reason}, which can run arbitrary code, so it was not "
                    f"loaded; pass {TRUST_FLAG} only if you trust the file, or save a "
                    "checkpoint or a state_dict with file.py:factory --weights"
                ) from exc
            raise InputError(f"{exc}; {_fix_for(exc.problem)}") from exc
        is_dict = isinstance(payload, dict) and "config" not in payload and payload
        if is_dict and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise InputError(
                f"checkpoint {str(path)!r} has no model config (found a state_dict "
                f"of {len(payload)} tensors); pass file.py:factory --weights "
                f"{path.name}, or save it with rnnedge.export.save_checkpoint"
            )
        return _from_checkpoint(path)
    payload = _unpickle(path)
    if isinstance(payload, nn.Module):
        payload.eval()
        return ModelSource(SourceKind.PICKLED_MODULE, payload, f"pickled module {path.name}")
    return _from_checkpoint(path)


def _unpickle(path: Path) -> object:
    """Load `path` with full unpickling, which runs any code the file names."""
    logger.warning("loading %s with full unpickling (%s)", path, TRUST_FLAG)
    try:
        with _cwd_importable():
            return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise InputError(
            f"cannot unpickle {str(path)!r}: no module named {exc.name!r}, which the pickled "
            f"model imports; run rnnedge from the folder that contains "
            f"{_module_file(exc.name)}, or add that folder to PYTHONPATH"
        ) from exc
    except Exception as exc:  # anything the pickled code raises
        logger.debug("torch.load(%s, weights_only=False) failed: %r", path, exc)
        incomplete = incomplete_file(path)
        if incomplete is not None:
            raise InputError(f"{incomplete}; {_fix_for(incomplete.problem)}") from exc
        raise InputError(f"cannot unpickle {str(path)!r}: {_describe(exc)}") from exc


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """Let a trusted pickle import modules from the working directory.

    `python -m rnnedge` puts the working directory on `sys.path` and the `rnnedge` script
    does not. Appending it last, where it shadows no installed package, makes both alike.
    """
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _module_file(module: str | None) -> str:
    if not module:
        return "the module"
    return module.split(".")[0] + (".py" if "." not in module else "/")


def _fix_for(problem: LoadProblem) -> str:
    if problem is LoadProblem.NOT_TORCH:
        return f"export takes {ACCEPTED_SOURCES}"
    if problem is LoadProblem.UNREADABLE:
        return "check the file's permissions"
    return "save or copy the file again"


def _from_checkpoint(path: Path) -> ModelSource:
    loaded = load_checkpoint(path)
    config = loaded.config
    return ModelSource(
        SourceKind.CHECKPOINT,
        loaded.model,
        f"rnnedge checkpoint {path.name}",
        config=config,
        labels=tuple(loaded.labels),
        normalization=loaded.normalization,
        task=config.task,
        example_shape=None,
        batch_first=True,
    )


def _load_factory(
    spec: str, weights: str | os.PathLike[str] | None, trust_pickle: bool
) -> ModelSource:
    match = _FACTORY_PATTERN.match(spec)
    assert match is not None
    target, name = match["target"], match["name"]
    module = _import_target(target)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise InputError(f"{target!r} has no callable {name!r}; check the name after the colon")
    _check_no_arguments(factory, spec)
    try:
        model = factory()
    except Exception as exc:  # anything the user's factory raises
        raise InputError(
            f"calling factory {spec!r} failed: {_describe(exc)}; fix the model file"
        ) from exc
    if not isinstance(model, nn.Module):
        kind = type(model).__name__
        returned = (
            "None" if model is None else f"{'an' if kind[:1] in 'aeiouAEIOU' else 'a'} {kind}"
        )
        raise InputError(
            f"factory {spec!r} returned {returned}, not a torch.nn.Module; make it "
            "return the model (an nn.Module instance)"
        )
    if weights is not None:
        _load_weights(model, Path(weights), trust_pickle, spec)
    else:
        logger.warning("no --weights given: exporting %s with the weights its factory set", spec)
    model.eval()
    return ModelSource(SourceKind.FACTORY, model, f"factory {spec}")


def _import_target(target: str):
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise InputError(f"factory file {target!r} not found; pass path/to/file.py:factory")
        module_name = f"_rnnedge_factory_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise InputError(f"cannot import {target!r} as a Python file")
        module = importlib.util.module_from_spec(spec)
        # Registered so that inspect and torch.jit.script can find the source.
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # anything the model file runs on import
            del sys.modules[module_name]
            raise InputError(
                f"importing {target} failed: {_describe(exc)}; fix the model file"
            ) from exc
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise InputError(
            f"cannot import module {target!r}: {_first_line(exc)}; pass package.module:factory "
            "importable from the current environment, or path/to/file.py:factory"
        ) from exc
    except (Exception, SystemExit) as exc:  # anything the module runs on import
        raise InputError(
            f"importing {target} failed: {_describe(exc)}; fix the model file"
        ) from exc


def _check_no_arguments(factory, spec: str) -> None:
    try:
        inspect.signature(factory).bind()
    except ValueError:
        return  # a builtin or C callable without a signature: call it and see
    except TypeError as exc:
        raise InputError(
            f"factory {spec!r} must be callable without arguments: {_first_line(exc)}"
        ) from exc


def _describe(exc: BaseException) -> str:
    """Return "ZeroDivisionError: division by zero" for an exception, on one line."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the file called sys.exit({exc.code!r})"
    text = _first_line(exc)[:200]
    name = type(exc).__name__
    return name if text == name else f"{name}: {text}"


def _load_weights(model: nn.Module, path: Path, trust_pickle: bool, spec: str) -> None:
    if not path.is_file():
        raise InputError(f"weights file {str(path)!r} not found; pass a state_dict .pt file")
    save_hint = "save the weights with torch.save(model.state_dict(), path)"
    if trust_pickle:
        state = _unpickle(path)
        if isinstance(state, nn.Module):
            state = state.state_dict()
    else:
        try:
            state = load_weights_only(path)
        except TorchFileError as exc:
            if exc.problem is LoadProblem.NEEDS_UNPICKLING:
                raise InputError(
                    f"weights file {str(path)!r} {exc.reason}, which can run arbitrary code, "
                    f"so it was not loaded; pass {TRUST_FLAG} only if you trust the file, or "
                    f"{save_hint}"
                ) from exc
            raise InputError(
                f"cannot load weights {str(path)!r}: the file {exc.reason}; {save_hint}"
            ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(
            f"weights file {str(path)!r} contains a {type(state).__name__}, not a state_dict"
        )
    mismatch = describe_state_mismatch(model, state)
    if mismatch:
        raise InputError(
            f"weights {str(path)!r} do not match the model that factory {spec!r} builds: "
            f"{mismatch}; make the factory build the model these weights were saved from "
            "(the same layers and sizes)"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # a check of the module's own, such as a custom loader
        text = " ".join(str(exc).split())
        raise InputError(
            f"weights {str(path)!r} do not match the model that factory {spec!r} builds: "
            f"{text[:240]}"
        ) from exc


def describe_state_mismatch(model: nn.Module, state: dict[str, Any]) -> str:
    """Describe how `state` differs from `model.state_dict()`, or return "" where it fits.

    The text names the first tensor of each kind of difference: a shape that differs, a
    key that the model lacks, and a key that the file lacks.
    """
    expected = model.state_dict()
    parts = []
    shapes = [
        (key, tuple(value.shape), tuple(expected[key].shape))
        for key, value in state.items()
        if key in expected and hasattr(value, "shape") and value.shape != expected[key].shape
    ]
    if shapes:
        key, file_shape, model_shape = shapes[0]
        if len(shapes) == 1:
            subject = f"1 tensor differs in shape, {key}"
        else:
            subject = f"{len(shapes)} tensors differ in shape, the first {key}"
        parts.append(
            f"{subject}, which is {list(file_shape)} in the file and {list(model_shape)} in "
            "the model"
        )
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        parts.append(_first_key(unexpected, "in the file but not in the model"))
    missing = [key for key in expected if key not in state]
    if missing:
        parts.append(_first_key(missing, "of the model missing from the file"))
    return "; ".join(parts)


def _first_key(keys: list[str], where: str) -> str:
    """Return "1 key WHERE, KEY" or "N keys WHERE, the first KEY"."""
    if len(keys) == 1:
        return f"1 key {where}, {keys[0]}"
    return f"{len(keys)} keys {where}, the first {keys[0]}"


def forward_parameters(module: nn.Module) -> list[str]:
    """Return the names of the required positional parameters of `module.forward`."""
    forward = module.forward
    try:
        signature = inspect.signature(forward)
    except (TypeError, ValueError):
        return ["input"]
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is not parameter.empty:
            continue
        names.append(parameter.name)
    return names or ["input"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
