"""Export to ONNX with dynamic batch and time axes, proven against PyTorch.

PyTorch's LSTM and GRU export to the native ONNX `LSTM` and `GRU` operators. The gate
order differs (PyTorch stores LSTM weights as input, forget, cell, output and ONNX
expects input, output, forget, cell; GRU as reset, update, new against ONNX's update,
reset, hidden), and the exporter reorders the weight blocks. GRU exports with
`linear_before_reset=1`, because PyTorch applies the reset gate after the recurrent
matrix product.

`export_model` tries the exporters in order (see `_strategies`) and keeps the first whose
file passes the ONNX checker and the parity check at batch sizes and lengths other than
the example's. Each fallback is logged as a warning and listed in the report.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from rnnedge import __version__
from rnnedge._fileio import write_bytes_atomic
from rnnedge.errors import CheckFailedError, ExportError, InputError, require
from rnnedge.export.capture import torch_notices_to_debug
from rnnedge.export.diagnostics import describe_constructs, packed_final_state_layers
from rnnedge.export.exporters import (
    DYNAMO_EXTRA,
    DYNAMO_MIN_OPSET,
    Capture,
    Exporter,
    FlatOutputs,
    Strategy,
    TraceWarning,
    dynamo_missing,
    export_dynamo,
    export_torchscript,
    require_dynamo,
)
from rnnedge.export.graph_dims import fix_output_dims, rename_input_symbols
from rnnedge.export.inputs import BATCH, SEQUENCE
from rnnedge.export.parity import DEFAULT_ATOL, ParityReport, check_graph_parity
from rnnedge.export.plan import ExportPlan, plan_export
from rnnedge.export.report import Attempt, ExportReport, GraphValue
from rnnedge.export.sources import ModelSource, SourceKind, load_source
from rnnedge.export.streaming import check_chunks
from rnnedge.runtime.metadata import PREFIX, ModelMetadata

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
DEFAULT_OPSET = 17
MIN_OPSET = 14  # the oldest opset the parity tests cover
# Largest parity error, relative to max(1, max |output|), still taken for float rounding
# (exit code 3) rather than a graph that computes something else (exit code 5).
NUMERIC_DIFFERENCE = 1e-3


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
) -> ExportReport:
    """Export an rnnedge checkpoint to ONNX and check it against PyTorch.

    The file is written only when the ONNX checker passes and the parity error at
    batch sizes and lengths other than the example's is within `atol`.

    Raises:
        InputError: the checkpoint or an option is invalid.
        CheckFailedError: the parity error exceeds `atol`; nothing is written.
    """
    return export_model(checkpoint, output, opset=opset, atol=atol)


@torch_notices_to_debug()
def export_model(
    source: str | os.PathLike[str] | nn.Module,
    output: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    example_shape: tuple[int, int, int] | str | None = None,
    batch_first: bool | None = None,
    exporter: Exporter | str | None = None,
    opset: int | None = None,
    atol: float = DEFAULT_ATOL,
    streaming: bool = False,
    trust_pickle: bool = False,
    labels: Sequence[str] | None = None,
) -> ExportReport:
    """Export a model from any source to ONNX and prove the export against PyTorch.

    Args:
        source: an rnnedge checkpoint, a TorchScript archive, an ExportedProgram (.pt2)
            file, `file.py:factory` / `package.module:factory`, or an `nn.Module`.
        output: the .onnx file to write; it is written only when every check passes.
        weights: a state_dict file for a factory source.
        example_shape: (batch, time, features) of the example input, or "BxTxF"; needed
            when the source records no input size.
        batch_first: the input layout; by default the checkpoint's, else that of the
            model's recurrent modules.
        exporter: the exporter to try first, "torchscript" or "dynamo"; the other is the
            fallback. By default the TorchScript-based one goes first.
        opset: the ONNX opset; by default 17 for the TorchScript-based exporter and 18 for
            the dynamo exporter.
        atol: the max abs error allowed between PyTorch and ONNX Runtime.
        streaming: export the recurrent state as graph inputs and outputs.
        trust_pickle: load files that need full unpickling (this runs code from the file).
        labels: the class names of a classifier, in the order of its output's last axis.
            They are recorded with task=classification in the metadata, as an rnnedge
            checkpoint's are, so `rnnedge run` prints a label per sequence. Their count
            is checked against that axis before anything is written.

    Raises:
        InputError: the source or an option is invalid, the output does not end in .onnx,
            or `labels` does not match the source's labels or the output's last axis.
        MissingDependencyError: the dynamo exporter is requested or needed (ExportedProgram
            files) and onnxscript is not installed.
        ExportError: no exporter could convert the model, or none produced a graph that
            computes what PyTorch does (see `_numeric_only`).
        CheckFailedError: the closest export differs from PyTorch by float rounding beyond
            `atol`, or the streaming check failed; nothing is written.
    """
    onnx = require("onnx", "export")
    _check_options(onnx, opset, atol, output)
    preferred = Exporter(exporter) if exporter is not None else None
    checked_labels = _check_labels(labels) if labels is not None else None
    loaded = load_source(source, weights=weights, trust_pickle=trust_pickle)
    if checked_labels is not None:
        _set_labels(loaded, checked_labels)
    plan = plan_export(loaded, example_shape, batch_first, streaming)
    strategies, skipped = _strategies(loaded, preferred, opset)
    attempts: list[Attempt] = list(skipped)
    trace_warnings: list[TraceWarning] = []
    best: tuple[ParityReport, Strategy] | None = None
    state_pairs = _state_pairs(plan)
    for strategy in strategies:
        strategy_opset = opset or _default_opset(strategy.exporter)
        missing = dynamo_missing() if strategy.exporter is Exporter.DYNAMO else None
        if missing is not None:
            # Reached only as the fallback: a requested dynamo exporter was checked earlier.
            attempts.append(_skip(Exporter.DYNAMO, f"{missing}; pip install '{DYNAMO_EXTRA}'"))
            continue
        seen = len(trace_warnings)
        try:
            proto = _run_strategy(strategy, loaded, plan, strategy_opset, trace_warnings)
            if strategy.capture is Capture.TRACE and len(trace_warnings) > seen:
                raise ExportError(_traced_constructs(loaded, trace_warnings[seen:]))
            data, proto = _finish(onnx, proto, plan, strategy)
            parity = check_graph_parity(
                plan.reference,
                data,
                plan.specs,
                plan.parity_shapes,
                plan.output_axes,
                atol,
                state_pairs=state_pairs,
            )
        except ExportError as exc:
            logger.info("%s failed: %s", strategy, exc)
            attempts.append(Attempt(strategy.exporter.value, strategy.capture.value, str(exc)))
            continue
        if parity.passed:
            break
        message = _describe_failure(parity)
        logger.info("%s: %s", strategy, message)
        attempts.append(
            Attempt(strategy.exporter.value, strategy.capture.value, message, parity.max_abs_error)
        )
        if best is None or parity.max_abs_error < best[0].max_abs_error:
            best = (parity, strategy)
    else:
        raise _no_exporter_passed(loaded, plan, attempts, best, trace_warnings, output)
    if attempts:
        logger.warning("exported with %s after: %s", strategy, "; ".join(
            f"{a.exporter} ({a.capture}): {a.error}" for a in attempts
        ))  # fmt: skip
    if checked_labels is not None:
        _check_label_count(checked_labels, parity, plan.output_names[0])
    data, proto = _name_output_dims(onnx, data, proto, plan, parity)
    chunks = ()
    if plan.streaming is not None:
        chunks = tuple(
            check_chunks(
                FlatOutputs(loaded.module),
                data,
                plan.specs[0],
                plan.streaming.state_specs,
                plan.output_axes,
                atol,
            )
        )
    write_bytes_atomic(output, data)
    op_counts: dict[str, int] = {}
    for node in proto.graph.node:
        op_counts[node.op_type] = op_counts.get(node.op_type, 0) + 1
    return ExportReport(
        path=Path(output),
        size_bytes=len(data),
        opset=strategy_opset,
        metadata=ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props}),
        parity=parity,
        op_counts=op_counts,
        exporter=strategy.exporter.value,
        capture=strategy.capture.value,
        source=loaded.description,
        attempts=tuple(attempts),
        inputs=tuple(_graph_values(proto.graph.input)),
        outputs=tuple(_graph_values(proto.graph.output)),
        streaming=chunks,
        lowered=tuple(plan.lowered),
    )


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """Return the class names stripped of surrounding spaces; raise if any is empty or
    repeated, or if there are fewer than two."""
    if isinstance(labels, str):
        raise InputError(f"labels {labels!r} is one string; pass a list of class names")
    names = tuple(str(name).strip() for name in labels)
    if any(not name for name in names):
        raise InputError(
            f"--labels {','.join(names)!r} has an empty class name; pass one name per class, "
            "separated by commas"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(
            f"--labels names {', '.join(map(repr, repeated))} more than once; pass each "
            "class name once"
        )
    if len(names) < 2:
        raise InputError(
            f"--labels {','.join(names)!r} names {len(names)} class; a classifier has at least "
            "2, so pass one name per output class, separated by commas"
        )
    return names


def _set_labels(loaded: ModelSource, labels: tuple[str, ...]) -> None:
    """Record `labels` and task=classification on the source, as a checkpoint does."""
    if loaded.task not in (None, "classification"):
        raise InputError(
            f"{loaded.description} records task {loaded.task}, not classification; drop --labels"
        )
    if loaded.labels and tuple(loaded.labels) != labels:
        raise InputError(
            f"{loaded.description} records the labels {','.join(loaded.labels)}, which "
            f"differ from --labels {','.join(labels)}; drop --labels to keep the recorded ones"
        )
    loaded.labels = labels
    loaded.task = "classification"


def _check_label_count(labels: tuple[str, ...], parity: ParityReport, output: str) -> None:
    """Check the label count against the last axis of the first output at parity time."""
    shapes = [case.output_shapes[0] for case in parity.cases if case.output_shapes]
    if not shapes:
        return
    shape = shapes[0]
    classes = shape[-1] if shape else 1
    if classes < 2:
        raise InputError(
            f"--labels names {len(labels)} classes, but the model's first output {output!r} "
            f"has shape {tuple(shape)}, one value per sequence, so it is not a classifier's "
            "scores; drop --labels"
        )
    if classes != len(labels):
        # Only the first output is read as class scores, so a model that returns its
        # state first gets the state's size here.
        raise InputError(
            f"--labels names {len(labels)} classes, but the model's first output {output!r} "
            f"has {classes} on its last axis (shape {tuple(shape)}); pass {classes} class "
            "names, or make the model return its class scores as its first output"
        )
    if len(shape) != 2:
        logger.warning(
            "output %r has shape %s, not (batch, classes): rnnedge run prints a label per "
            "sequence only for a 2-D first output",
            output, tuple(shape),
        )  # fmt: skip


def _check_options(onnx, opset: int | None, atol: float, output) -> None:
    if Path(output).suffix.lower() != ".onnx":
        raise InputError(f"output {os.fspath(output)!r} does not end in .onnx; pass -o NAME.onnx")
    if opset is not None and not MIN_OPSET <= opset <= _max_opset(onnx):
        raise InputError(
            f"opset {opset} is outside the supported range {MIN_OPSET} to "
            f"{_max_opset(onnx)}; pass --opset {DEFAULT_OPSET}"
        )
    if not atol > 0:
        raise InputError(f"atol must be positive, got {atol}")


def _default_opset(exporter: Exporter) -> int:
    return DEFAULT_OPSET if exporter is Exporter.TORCHSCRIPT else DYNAMO_MIN_OPSET


def _strategies(
    loaded: ModelSource, preferred: Exporter | None, opset: int | None
) -> tuple[list[Strategy], list[Attempt]]:
    """Return the exporters to try in order, and notes on those that cannot apply.

    Raises:
        InputError: the opset is too old for an exporter that must run.
        MissingDependencyError: the dynamo exporter must run and onnxscript is missing.
    """
    torchscript = [
        Strategy(Exporter.TORCHSCRIPT, Capture.TRACE),
        Strategy(Exporter.TORCHSCRIPT, Capture.SCRIPT),
    ]
    dynamo = [Strategy(Exporter.DYNAMO, Capture.EXPORT)]
    skipped: list[Attempt] = []
    if loaded.kind is SourceKind.TORCHSCRIPT:
        # A TorchScript archive is already scripted; torch.export cannot take it.
        order = [Strategy(Exporter.TORCHSCRIPT, Capture.SCRIPT)]
        if preferred is Exporter.DYNAMO:
            skipped.append(_skip(Exporter.DYNAMO, "a TorchScript archive needs torchscript"))
        return order, skipped
    if loaded.kind is SourceKind.EXPORTED_PROGRAM:
        if preferred is Exporter.TORCHSCRIPT:
            skipped.append(_skip(Exporter.TORCHSCRIPT, "an ExportedProgram needs dynamo"))
        if opset is not None and opset < DYNAMO_MIN_OPSET:
            raise InputError(
                f"opset {opset} is below {DYNAMO_MIN_OPSET}, the minimum of the dynamo "
                f"exporter, which ExportedProgram files need; pass --opset {DYNAMO_MIN_OPSET}"
            )
        require_dynamo()
        return dynamo, skipped
    order = dynamo + torchscript if preferred is Exporter.DYNAMO else torchscript + dynamo
    if opset is not None and opset < DYNAMO_MIN_OPSET:
        if preferred is Exporter.DYNAMO:
            raise InputError(
                f"opset {opset} is below {DYNAMO_MIN_OPSET}, the minimum of the dynamo "
                f"exporter; pass --opset {DYNAMO_MIN_OPSET} or higher, or --exporter torchscript"
            )
        return [s for s in order if s.exporter is not Exporter.DYNAMO], skipped
    if preferred is Exporter.DYNAMO:
        require_dynamo()
    return order, skipped


def _skip(exporter: Exporter, reason: str) -> Attempt:
    return Attempt(exporter.value, "-", f"not applicable: {reason}")


def _run_strategy(
    strategy: Strategy,
    loaded: ModelSource,
    plan: ExportPlan,
    opset: int,
    trace_warnings: list[TraceWarning],
):
    if strategy.exporter is Exporter.TORCHSCRIPT:
        args = plan.example_tensors(minimum=1)
        return export_torchscript(
            plan.module,
            args,
            plan.input_names,
            plan.output_names,
            plan.dynamic_axes(),
            opset,
            script=strategy.capture is Capture.SCRIPT,
            trace_warnings=trace_warnings,
        )
    if loaded.exported_program is not None:
        args = plan.example_tensors(minimum=1)
        return export_dynamo(
            loaded.exported_program, args, plan.input_names, plan.output_names, None, opset
        )
    # torch.export specializes axes of size 0 or 1, so the example is at least 2 long.
    args = plan.example_tensors(minimum=2)
    axes = [spec.dynamic_axes() for spec in plan.specs]
    return export_dynamo(plan.module, args, plan.input_names, plan.output_names, axes, opset)


def _finish(onnx, proto, plan: ExportPlan, strategy: Strategy):
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported model fails the ONNX checker: {str(exc)[:300]}") from exc
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ExportError(f"ONNX shape inference failed: {str(exc)[:300]}") from exc
    renamed = rename_input_symbols(proto.graph, plan.specs)
    if renamed:
        logger.info("renamed the exporter's axis symbols: %s", _describe_mapping(renamed))
    del proto.metadata_props[:]
    props = plan.metadata.to_props()
    props[f"{PREFIX}exporter"] = f"{strategy.exporter.value} ({strategy.capture.value})"
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "rnnedge"
    proto.producer_version = __version__
    return proto.SerializeToString(), proto


def _name_output_dims(onnx, data: bytes, proto, plan: ExportPlan, parity: ParityReport):
    """Fix or name the graph output dims that the exporter left without a readable name.

    The sizes come from the parity cases (see `fix_output_dims`), so this runs only after
    parity passed. Returns the serialized model and the model, which keeps its metadata.
    When the changed model fails the ONNX checker, the unchanged one is returned.
    """
    named = onnx.ModelProto()
    named.CopyFrom(proto)
    axis_names = {BATCH, SEQUENCE}
    for spec in plan.specs:
        axis_names.update(spec.dynamic_axes().values())
    for axes in plan.output_axes:
        axis_names.update(axes.values())
    changes = fix_output_dims(named.graph, parity.cases, plan.output_axes, axis_names)
    if not changes:
        return data, proto
    try:
        onnx.checker.check_model(named, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        logger.warning(
            "kept the exporter's output dims, because the model with %s fails the ONNX "
            "checker: %s",
            ", ".join(changes), str(exc)[:300],
        )  # fmt: skip
        return data, proto
    logger.info("output dims set from the parity cases: %s", ", ".join(changes))
    return named.SerializeToString(), named


def _describe_mapping(mapping: dict[str, str]) -> str:
    return ", ".join(f"{old} -> {new}" for old, new in sorted(mapping.items()))


def _graph_values(values) -> list[GraphValue]:
    import onnx

    found = []
    for value in values:
        tensor = value.type.tensor_type
        dims = tuple(
            d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?")
            for d in tensor.shape.dim
        )
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        found.append(GraphValue(value.name, dtype, dims))
    return found


def _state_pairs(plan: ExportPlan) -> list[tuple[int, int]]:
    """Return (graph input index, graph output index) of each state a streaming graph carries.

    The states are the last inputs and the last outputs, in the same order.
    """
    if plan.streaming is None:
        return []
    count = len(plan.streaming.state_outputs)
    first_input = len(plan.specs) - count
    first_output = len(plan.output_names) - count
    return [(first_input + i, first_output + i) for i in range(count)]


def _traced_constructs(loaded: ModelSource, found: list[TraceWarning]) -> str:
    # The message reaches the user as a warning when a later exporter succeeds, and in
    # the error when none does.
    constructs = describe_constructs(loaded.module, found)
    return f"tracing is valid only for inputs like the example: {constructs}"


def _describe_failure(parity: ParityReport) -> str:
    """Return "parity max abs error ... exceeds the tolerance ...", or why ONNX Runtime failed."""
    worst = parity.worst
    if worst.run_error:
        return f"ONNX Runtime failed to run the export at {worst.describe()}: {worst.run_error}"
    detail = f" ({worst.detail})" if worst.detail else ""
    return (
        f"parity max abs error {worst.max_abs_error:.3g} at {worst.describe()}{detail} "
        f"exceeds the tolerance {parity.atol:g}"
    )


def _numeric_only(parity: ParityReport) -> bool:
    """Tell a rounding difference from a graph that computes something else.

    float32 exports differ from PyTorch by about 1e-7 of the output's magnitude. An
    unrolled loop, a frozen branch or a fixed shape differs by far more than 1e-3 of it.
    """
    worst = parity.worst
    limit = NUMERIC_DIFFERENCE * max(1.0, worst.max_abs_reference)
    return math.isfinite(worst.max_abs_error) and worst.max_abs_error <= limit


def _no_exporter_passed(
    loaded: ModelSource,
    plan: ExportPlan,
    attempts: list[Attempt],
    best: tuple[ParityReport, Strategy] | None,
    trace_warnings: list[TraceWarning],
    output: str | os.PathLike[str],
) -> Exception:
    constructs = describe_constructs(loaded.module, trace_warnings)
    tried = "; ".join(f"{a.exporter} ({a.capture}): {a.error}" for a in attempts)
    hint = f"; {constructs}" if constructs else ""
    target = os.fspath(output)
    fix = ""
    packed = packed_final_state_layers(plan.module, plan.example_tensors(minimum=2))
    if packed:
        hint += (
            f"; {', '.join(packed)} runs over a PackedSequence and the output uses its final "
            f"state h_n, which the ONNX exporters of torch {torch.__version__} cannot convert"
        )
        fix = (
            "; read each sequence's last valid step from the output of pad_packed_sequence "
            "instead of h_n, with out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, "
            "out.size(2))), as docs/export.md shows"
        )
    if best is not None:
        parity, strategy = best
        if _numeric_only(parity) and not constructs and not packed:
            return CheckFailedError(
                f"parity check failed: {_describe_failure(parity).removeprefix('parity ')} "
                f"with {strategy}, the "
                f"closest of the exporters tried; the difference is float rounding, so pass "
                f"a larger --atol if it is acceptable; nothing was written to {target!r} "
                f"(tried {tried})"
            )
        return ExportError(
            f"no exporter produced a graph that computes what PyTorch does: the closest was "
            f"{strategy}: {_describe_failure(parity)}{hint}; nothing was "
            f"written to {target!r} (tried {tried}){fix}"
        )
    return ExportError(
        f"no exporter could convert {loaded.description}{hint} (tried {tried}); nothing was "
        f"written to {target!r}{fix}"
    )


def _max_opset(onnx) -> int:
    # The TorchScript-based exporter of torch 2.x writes opsets up to 20.
    return min(20, onnx.defs.onnx_opset_version())
