"""Naming the layer and construct behind a failed export, from the tracer's warnings.

Tracing records a `TracerWarning` wherever a tensor leaves the graph: converted to a NumPy
array, to a Python number, or to a Python boolean that then steers an `if` or `while`
(data-dependent control flow). Such a trace is right only for the example input. The
warning carries the file and line, which identify the submodule whose `forward` contains
them.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence

from torch import nn

from rnnedge.export.exporters import TraceWarning

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
