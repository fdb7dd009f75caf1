"""Naming the layer and construct behind a failed export.

Tracing records a `TracerWarning` wherever a tensor leaves the graph: converted to a NumPy
array, to a Python number, or to a Python boolean that then steers an `if` or `while`
(data-dependent control flow). Such a trace is right only for the example input. The
warning carries the file and line, which identify the submodule whose `forward` contains
them.

A model whose output uses the final state `h_n` of an `nn.LSTM` or `nn.GRU` run over a
`PackedSequence` fails in every exporter of torch 2.13 with messages that name no model
code. `packed_final_state_layers` finds those layers by running the model once.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from rnnedge.export.exporters import TraceWarning

logger = logging.getLogger(__name__)

# TracerWarning message openings, and the construct each one reveals.
_CONSTRUCTS = (
    ("Converting a tensor to a NumPy array", "converts a tensor to a NumPy array (.numpy())"),
    (
        "Converting a tensor to a Python boolean",
        "branches on a tensor value (data-dependent Python control flow)",
    ),
    ("Converting a tensor to a Python", "converts a tensor to a Python number (.item(), int())"),
    ("Iterating over a tensor", "iterates over a tensor in Python"),
    ("torch.tensor results are registered as constants", "builds a tensor from Python values"),
)


def describe_constructs(model: nn.Module, warnings: Sequence[TraceWarning]) -> str:
    """Return "layer 'head' (Head.forward) at model.py:12 converts ..." for each warning."""
    spans = _forward_spans(model)
    found: list[str] = []
    for warning in warnings:
        construct = next(
            (text for opening, text in _CONSTRUCTS if warning.message.startswith(opening)),
            None,
        )
        if construct is None:
            # A warning this table does not know: its first sentence names the construct.
            first = warning.message.strip().splitlines()[0] if warning.message.strip() else ""
            construct = f"makes the tracer warn: {first.split('. ')[0][:160]}"
        layer = _layer_at(spans, warning.filename, warning.lineno)
        where = f"{os.path.basename(warning.filename)}:{warning.lineno}"
        description = f"{layer} at {where} {construct}"
        if description not in found:
            found.append(description)
    return "; ".join(found)


def _forward_spans(model: nn.Module) -> list[tuple[str, str, str, int, int]]:
    spans = []
    for name, module in model.named_modules():
        forward = getattr(type(module), "forward", None)
        try:
            lines, start = inspect.getsourcelines(forward)
            filename = inspect.getsourcefile(forward)
        except (OSError, TypeError):
            continue
        if filename is None:
            continue
        label = type(module).__name__
        spans.append((name, label, os.path.abspath(filename), start, start + len(lines)))
    return spans


def _layer_at(spans, filename: str, lineno: int) -> str:
    path = os.path.abspath(filename)
    for name, label, span_file, start, end in spans:
        if span_file == path and start <= lineno < end:
            return f"layer {name!r} ({label}.forward)" if name else f"the model ({label}.forward)"
    return "the model"


def packed_final_state_layers(model: nn.Module, inputs: Sequence[torch.Tensor]) -> list[str]:
    """Return the recurrent layers run over a `PackedSequence` whose final state the
    model's outputs depend on, as "layer 'rnn' (GRU)".

    The model runs once on `inputs` with gradients on. The outputs use a layer's `h_n`
    (or `c_n`) where their gradient with respect to it is defined.
    Any failure of that run returns an empty list, because this only adds a hint to an
    export error.
    """
    found: list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]] = []
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if args and isinstance(args[0], PackedSequence) and isinstance(output, tuple):
            state = output[1]
            states = state if isinstance(state, tuple) else (state,)
            found.append((names.get(module, ""), module, states))

    recurrent = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    if not recurrent:
        return []
    handles = [module.register_forward_hook(record) for module in recurrent]
    try:
        with torch.enable_grad():
            args = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
            outputs = [t for t in _tensors(model(*args)) if t.requires_grad]
            if not outputs or not found:
                return []
            total = sum(t.float().sum() for t in outputs)
            layers = []
            for name, module, states in found:
                usable = [s for s in states if s.requires_grad]
                if not usable:
                    continue
                grads = torch.autograd.grad(total, usable, allow_unused=True, retain_graph=True)
                if any(g is not None for g in grads):
                    layers.append(f"layer {name!r} ({type(module).__name__})")
            return list(dict.fromkeys(layers))
    except Exception as exc:  # anything the user's model raises; the export error is kept
        logger.debug("could not check the model for a packed final state: %r", exc)
        return []
    finally:
        for handle in handles:
            handle.remove()


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Yield the tensors of a model output: a tensor, or nested tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
