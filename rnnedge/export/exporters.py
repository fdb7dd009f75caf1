"""The two torch.onnx exporters, run the same way and with their errors made readable.

- TorchScript-based (`torch.onnx.export(..., dynamo=False)`): the model is first turned into
  TorchScript by tracing, or by `torch.jit.script` when it contains Python loops that
  tracing would unroll to the example's length. Tracing keeps scripted submodules as they
  are, so a scripted loop inside a traced model becomes an ONNX `Loop`. Before scripting,
  each `nn.GRUCell` is swapped for a stand-in that exports (see `cells`).
- dynamo (`torch.onnx.export(..., dynamo=True)`): captures the model with `torch.export`.
  It specializes axes of size 0 or 1, so the example's batch and length are raised to at
  least 2 for it. It needs opset 18 or newer.

Each function returns an `onnx.ModelProto`. A failure becomes an `ExportError` whose message
is one line naming the exporter and the first sentence of the cause, or an `InputError` when
the exporter reports that the requested opset is too old for an operator. What the exporters
print goes to the debug log (see `capture`).
"""

from __future__ import annotations

import enum
import importlib
import io
import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rnnedge.errors import ExportError, InputError, MissingDependencyError
from rnnedge.export.capture import capture_output
from rnnedge.export.cells import with_exportable_cells

logger = logging.getLogger(__name__)

DYNAMO_MIN_OPSET = 18
DYNAMO_EXTRA = "rnnedge[export]"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXCEPTION_SUMMARY = "## Exception summary"
# "<class 'torch.fx.experimental.symbolic_shapes.GuardOnDataDependentSymNode'>: " becomes
# "GuardOnDataDependentSymNode: ".
_CLASS_PREFIX = re.compile(r"^<class '(?:[\w.]+\.)?(\w+)'>:\s*")
_SENTENCE_BREAK = re.compile(r"\s+[A-Z]")
SUMMARY_CHARS = 500  # the max length of an exporter failure summary
DETAIL_CHARS = 200  # the max length of the line kept after a sentence that ends in a colon
_OPSET_HINT = re.compile(
    r"operator '(?P<op>[^']+)' to ONNX opset version (?P<asked>\d+) is not supported.*?"
    r"added in (?:opset )?version (?P<needed>\d+)",
    re.S,
)


class Exporter(str, enum.Enum):
    TORCHSCRIPT = "torchscript"
    DYNAMO = "dynamo"


class Capture(str, enum.Enum):
    """The capture step that turns the model into a graph before conversion."""

    TRACE = "trace"
    SCRIPT = "script"
    EXPORT = "torch.export"


@dataclass(frozen=True)
class Strategy:
    exporter: Exporter
    capture: Capture

    def __str__(self) -> str:
        return f"{self.exporter.value} ({self.capture.value})"


class FlatOutputs(nn.Module):
    """Call a model and return its outputs as one flat tuple of tensors.

    Nested tuples and lists are flattened depth first, so that every output becomes one
    graph output in a fixed order.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flatten_outputs(self.model(*inputs)))


def flatten_outputs(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        flat: list[torch.Tensor] = []
        for item in value:
            flat.extend(flatten_outputs(item))
        return flat
    raise ExportError(
        f"the model returns a {type(value).__name__}; rnnedge exports tensors and nested "
        "tuples or lists of tensors"
    )


@dataclass
class TraceWarning:
    """A TracerWarning from user code: the message and where it was raised."""

    message: str
    filename: str
    lineno: int


def export_torchscript(
    model: nn.Module,
    args: Sequence[torch.Tensor],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
    script: bool,
    trace_warnings: list[TraceWarning] | None = None,
):
    """Export with the TorchScript-based exporter, tracing or scripting `model` first."""
    import onnx

    target = model
    if script and not isinstance(model, torch.jit.ScriptModule):
        try:
            with warnings.catch_warnings(record=True) as script_warnings:
                # torch 2.13 marks torch.jit.script deprecated; it is still the only way
                # to keep a Python loop over time as a loop in the exported graph. Its
                # other warnings (type annotations it cannot use) go to the debug log.
                warnings.simplefilter("always")
                target = torch.jit.script(with_exportable_cells(model))
        except Exception as exc:  # scripting raises several frontend error types
            raise ExportError(
                f"torch.jit.script failed: {_summarize(exc)}; the model's forward must be "
                "valid TorchScript for a loop over time to survive export"
            ) from exc
        for item in script_warnings:
            logger.debug("torch.jit.script: %s: %s", item.category.__name__, item.message)
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught, capture_output("torch.onnx.export"):
        # The exporter warns that it is deprecated, and tracing nn.LSTM warns about Python
        # booleans in its own shape checks; only warnings from user code are kept.
        warnings.simplefilter("always")
        try:
            traced = torch.jit.trace(FlatOutputs(target), tuple(args), check_trace=False)
            torch.onnx.export(
                traced,
                tuple(args),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        except Exception as exc:  # the exporter raises many unrelated exception types
            _raise_opset_hint(exc, opset)
            raise ExportError(f"torch.onnx.export (torchscript) failed: {_summarize(exc)}") from exc
    if trace_warnings is not None:
        trace_warnings.extend(_user_tracer_warnings(caught))
    return onnx.load_from_string(buffer.getvalue())


def export_dynamo(
    model: nn.Module | object,
    args: Sequence[torch.Tensor],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Sequence[dict[int, str]] | None,
    opset: int,
):
    """Export with the dynamo exporter; `model` may be an ExportedProgram.

    `dynamic_axes` lists, per input, the axes to keep dynamic; it is ignored for an
    ExportedProgram, whose own shapes decide.
    """
    if opset < DYNAMO_MIN_OPSET:
        raise InputError(
            f"opset {opset} is below {DYNAMO_MIN_OPSET}, the minimum of the dynamo exporter; "
            f"pass --opset {DYNAMO_MIN_OPSET} or higher, or --exporter torchscript"
        )
    require_dynamo()
    kwargs: dict[str, object] = {}
    target = model
    if isinstance(model, nn.Module):
        target = FlatOutputs(model)
        dims = torch.export.Dim.DYNAMIC
        if dynamic_axes is not None:
            kwargs["dynamic_shapes"] = (
                tuple({axis: dims for axis in axes} for axes in dynamic_axes),
            )
    logging_state = _quiet_torch_loggers()
    _clear_rnn_dispatch_caches()
    try:
        with warnings.catch_warnings(), capture_output("torch.onnx.export (dynamo)"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                target,
                tuple(args),
                dynamo=True,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                optimize=True,
                verbose=False,
                **kwargs,
            )
    except Exception as exc:  # torch.export raises many unrelated exception types
        raise ExportError(f"torch.onnx.export (dynamo) failed: {_summarize(exc)}") from exc
    finally:
        _restore_loggers(logging_state)
    return program.model_proto


def dynamo_missing() -> str | None:
    """Return why the dynamo exporter cannot run here, or None when it can."""
    try:
        # torch.onnx.export(dynamo=True) builds the graph with onnxscript.
        importlib.import_module("onnxscript")
    except ImportError:
        return "onnxscript is not installed"
    return None


def require_dynamo() -> None:
    """Raise `MissingDependencyError` unless the dynamo exporter can run."""
    if dynamo_missing() is not None:
        raise MissingDependencyError(
            f"the dynamo exporter needs onnxscript, which is not installed; install it "
            f"with: pip install '{DYNAMO_EXTRA}'"
        )


def _clear_rnn_dispatch_caches() -> None:
    """Drop the cached kernels of the aten LSTM and GRU operators.

    For dynamic shapes, torch.onnx.export(dynamo=True) of torch 2.13 swaps in a
    `while_loop` decomposition of `aten.lstm` and `aten.gru` by assigning to the operator's
    `py_kernels`, which leaves its dispatch cache alone. The first export caches the
    decomposition that loops in Python, so every later export in the process runs that one,
    which fixes the time axis to the example's length ("tracing inferred a static shape").
    """
    # NOTE: `_dispatch_cache` is private to torch. A torch version without it gets no
    # clearing, and a second export in one process may then fall back to the next exporter.
    for operator in (torch.ops.aten.lstm, torch.ops.aten.gru):
        for overload_name in operator.overloads():
            cache = getattr(getattr(operator, overload_name), "_dispatch_cache", None)
            if cache is not None:
                cache.clear()


def _quiet_torch_loggers() -> dict[str, int]:
    # The dynamo exporter logs its progress at WARNING level on the "torch" logger.
    state = {}
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "torch._export"):
        log = logging.getLogger(name)
        state[name] = log.level
        log.setLevel(logging.ERROR)
    return state


def _restore_loggers(state: dict[str, int]) -> None:
    for name, level in state.items():
        logging.getLogger(name).setLevel(level)


def _raise_opset_hint(exc: BaseException, opset: int) -> None:
    match = _OPSET_HINT.search(str(exc))
    if match:
        needed = int(match["needed"])
        raise InputError(
            f"opset {opset} is below {needed}, the minimum for {match['op']} in this model; "
            f"pass --opset {needed} or higher"
        ) from exc


def _user_tracer_warnings(caught: list[warnings.WarningMessage]) -> list[TraceWarning]:
    torch_dir = os.path.dirname(torch.__file__)
    found = []
    for item in caught:
        if not issubclass(item.category, torch.jit.TracerWarning):
            continue
        if item.filename.startswith(torch_dir):
            continue
        found.append(TraceWarning(str(item.message), item.filename, item.lineno))
    return found


def _summarize(exc: BaseException) -> str:
    """Return the cause of an exporter failure as one line without terminal colours.

    The dynamo exporter of torch 2.13 opens its message with the step that failed, colours
    it with ANSI codes, lists next steps, and gives the cause under "## Exception summary".
    The line keeps the first sentence of the message and, where there is one, the first
    sentence of that cause, each with its next line when the sentence ends in a colon.
    """
    text = _ANSI_ESCAPE.sub("", str(exc)).strip()
    if not text:
        return type(exc).__name__
    summary = _lead(text)
    _, marker, cause = text.partition(_EXCEPTION_SUMMARY)
    if marker and cause.strip():
        cause = _CLASS_PREFIX.sub(r"\1: ", _lead(cause.strip()))
        summary = f"{summary.rstrip('.')}: {cause}"
    return " ".join(summary.split())[:SUMMARY_CHARS]


def _lead(text: str) -> str:
    """Return the first sentence of `text`, and the line after it when it ends in a colon.

    torch.export opens a shape conflict with "Found the following conflicts ... from model
    tracing:" and names the dimension on the next line, which is the part worth reading.
    """
    sentence = _first_sentence(text)
    if not sentence.endswith(":"):
        return sentence
    following = text.strip().splitlines()[1:]
    detail = next((line.strip() for line in following if line.strip()), "")
    detail = detail.removeprefix("- ")
    if not detail:
        return sentence
    return f"{sentence} {detail[:DETAIL_CHARS]}"


def _first_sentence(text: str) -> str:
    """Return the first line of `text` up to the end of its first sentence.

    A sentence ends at ". " followed by a capital letter outside brackets, so that a file
    name or a bracketed note does not cut it.
    """
    line = text.splitlines()[0].strip()
    depth = 0
    for index, char in enumerate(line):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char in ".!?" and depth == 0 and _SENTENCE_BREAK.match(line, index + 1):
            return line[: index + 1]
    return line
