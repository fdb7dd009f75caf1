"""Quantization of an exported float model into an int8 or fp16 model, with a report.

`quantize_model` picks the settings (explicit arguments first, then the target device's
preset, then the defaults), runs one mode's pass, compares the result with the float model
(output drift on sample or calibration data, task metric on labelled data, latency on this
host), enforces the metric budget and only then writes the output file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge._fileio import write_bytes_atomic
from rnnedge.errors import CheckFailedError, InputError, require
from rnnedge.quantize import evaluate
from rnnedge.quantize._graph import iter_graphs
from rnnedge.quantize.dynamic import DEFAULT_GRU_INT8_MIN_HIDDEN, quantize_dynamic_int8
from rnnedge.quantize.feeds import (
    DataLayout,
    build_feed,
    normalize,
    read_layout,
    sequence_input,
)
from rnnedge.quantize.fp16 import convert_fp16
from rnnedge.quantize.gru_int8 import GruRewrite
from rnnedge.quantize.modes import CalibrationMethod, GruInt8, QuantMode, check_options_apply
from rnnedge.quantize.presets import (
    Preset,
    check_mode_for_target,
    host_needs_reduced_range,
    preset_for,
    resolve_reduce_range,
)
from rnnedge.quantize.report import (
    COMPUTE_OPS,
    QUANTIZED_OPS,
    RECURRENT_OPS,
    QuantizeReport,
    count_ops,
    count_qdq_compute,
    float_loop_bodies,
    float_note,
)
from rnnedge.quantize.static import CALIBRATION_BATCH, quantize_static_int8
from rnnedge.quantize.weight_only import quantize_weights
from rnnedge.runtime.external_data import model_size_bytes
from rnnedge.runtime.inputs import check_sequence_input
from rnnedge.runtime.metadata import ModelMetadata, Task
from rnnedge.runtime.session import open_model_file

logger = logging.getLogger(__name__)

SAMPLE_SHAPE = (16, 50)  # (batch, seq_len) of the random drift inputs
LATENCY_RUNS = 50  # timed calls per model for the latency change; 0 skips it

__all__ = ["host_needs_reduced_range", "parse_mode", "quantize_model"]


def parse_mode(name: str | QuantMode) -> QuantMode:
    if isinstance(name, QuantMode):
        return name
    try:
        return QuantMode(name)
    except ValueError:
        choices = ", ".join(m.value for m in QuantMode)
        raise InputError(f"unknown quantization mode {name!r}; choose one of: {choices}") from None


def quantize_model(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    mode: QuantMode | str | None = QuantMode.DYNAMIC_INT8,
    reduce_range: bool | str = "auto",
    per_channel: bool | None = None,
    samples: np.ndarray | None = None,
    *,
    calibration: np.ndarray | Mapping[str, np.ndarray] | None = None,
    calibration_method: CalibrationMethod | str | None = None,
    gru_int8: GruInt8 | str | None = None,
    gru_int8_min_hidden: int | None = None,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
    max_metric_drop: float | None = None,
    target: Any = None,
    latency_runs: int = LATENCY_RUNS,
    layout: str | None = None,
) -> QuantizeReport:
    """Quantize `model` into `output` and report sizes, operators, drift, metric and latency.

    Every data array (`samples`, `calibration`, the `x` of `eval_data`) is (batch, time,
    features), whatever the model's layout. A time-major model gets each array transposed
    to (time, batch, features), and the batch axis of its output is moved first again. A
    model whose input fixes the batch size gets each array in batches of that size, so the
    arrays may hold any number of sequences. A fixed time size must match.

    Args:
        mode: `dynamic-int8`, `static-int8`, `fp16` or `weight-int8`; None takes the
            target's preset, or `dynamic-int8` without a target.
        reduce_range: 7-bit int8 weights; `auto` decides from the target, else this host
            (dynamic-int8 and static-int8 only).
        per_channel: one scale per output channel of MatMul/Gemm weights; None takes the
            target's preset, else per tensor (every mode but fp16).
        samples: float32 (batch, time, features) model inputs (already normalized) for the
            drift check; the calibration data, else random standard-normal inputs, when None.
        calibration: raw (batch, time, features) inputs for static-int8, normalized with
            the statistics stored in the model like `rnnedge run` does.
        calibration_method: `minmax`, `entropy` or `percentile` (static-int8 only).
        gru_int8: `auto` (the default when None) rewrites GRU nodes from
            `gru_int8_min_hidden` on into the int8 Scan path (dynamic-int8 only); `always`
            and `never` override the threshold.
        eval_data: raw inputs `x` and labels or targets `y` for the task metric.
        max_metric_drop: raise `CheckFailedError` and write nothing if the metric gets
            worse by more than this (accuracy lost, or mean squared error gained).
        target: a device profile or its name; its preset fills the unset settings.
        latency_runs: timed calls per model for the latency change, on one sequence or on
            a batch of the model's fixed batch size; 0 skips it.
        layout: `batch-major` or `time-major`, the layout of the sequence input of a model
            whose metadata records none; None reads it from the axis names or a state
            input, as `rnnedge run` does, and else takes batch-major with a warning.

    Raises:
        InputError: an input is invalid, `output` does not end in .onnx, or a setting is
            given for a mode it does not apply to (for example `gru_int8` with fp16).
        CheckFailedError: the quantized model fails the ONNX checker or the metric budget.
    """
    onnx = require("onnx", "export")
    source = open_model_file(model)
    if Path(output).suffix.lower() != ".onnx":
        raise InputError(f"output {os.fspath(output)!r} does not end in .onnx; pass -o NAME.onnx")
    if Path(output).resolve() == source.resolve():
        raise InputError(
            f"output {os.fspath(output)!r} is the input model; choose another output path, "
            "so that the float model is kept"
        )
    try:
        float_model = onnx.load(str(source))
    except Exception as exc:  # protobuf raises DecodeError, onnx raises its own
        raise InputError(f"{str(source)!r} is not a valid ONNX model; pass an .onnx file") from exc
    metadata = ModelMetadata.from_props({p.key: p.value for p in float_model.metadata_props})
    ops_before = count_ops(float_model)
    _check_quantizable(source, metadata, ops_before)
    if max_metric_drop is not None and eval_data is None:
        raise InputError("--max-metric-drop needs labelled data; pass --eval data.npz")

    preset = preset_for(target) if target is not None else None
    mode = parse_mode(mode if mode is not None else (preset and preset.mode) or "dynamic-int8")
    check_mode_for_target(mode, preset)
    check_options_apply(mode, {
        "--reduce-range/--full-range": isinstance(reduce_range, bool),
        "--per-channel/--per-tensor": per_channel is not None,
        "--calibration-method": calibration_method is not None,
        "--gru-int8": gru_int8 is not None,
        "--gru-int8-min-hidden": gru_int8_min_hidden is not None,
    })  # fmt: skip
    settings = _settings(mode, reduce_range, per_channel, calibration_method, gru_int8,
                         gru_int8_min_hidden, preset)  # fmt: skip
    data_layout, layout_session = read_layout(source, layout)
    if layout_session.sequence_layout is not None:
        settings["layout"] = data_layout.name
    reference = evaluate.open_session(str(source))
    classification = metadata.task is Task.CLASSIFICATION
    calibration_x = _model_inputs(calibration, reference, metadata, "--calibration", data_layout)
    if mode is QuantMode.STATIC_INT8 and calibration_x is None:
        raise InputError(
            "static-int8 needs calibration data; pass --calibration data.npy with raw inputs "
            "shaped (batch, time, features)"
        )
    drift_x = _drift_inputs(float_model, metadata, samples, calibration_x, reference, data_layout)
    # The data is (batch, time, features). In the model's layout its batch must match the
    # batch of the state inputs, which `rnnedge run` checks the same way. A model with a
    # fixed batch size gets batches of that size.
    for array, label in ((calibration_x, "--calibration"), (drift_x, "the drift input")):
        if array is not None:
            label = f"{label} in the model's {data_layout.name} layout"
            batch = data_layout.first_batch(array, array.shape[0])
            layout_session.check_layout_fits(data_layout.to_model(batch), label)

    quantized, rewrite, stored = _run_pass(
        mode, source, float_model, settings, calibration_x, reference, data_layout
    )
    props = {"rnnedge.precision": mode.precision, "rnnedge.quantization": mode.value}
    if layout is not None and layout_session.sequence_layout is not None:
        # The layout given with --layout travels with the quantized model, so that run and
        # profile read it from the metadata instead of guessing again.
        props["rnnedge.layout"] = data_layout.name
    _set_props(quantized, props)
    # ONNX Runtime is native code that may crash the process on a malformed graph, so no
    # session loads a model that the ONNX checker rejects.
    _check_model(onnx, quantized, mode, source)
    data = quantized.SerializeToString()
    candidate = evaluate.open_session(data, quiet=True)

    expected = evaluate.first_output(reference, drift_x, data_layout)
    try:
        actual = evaluate.first_output(candidate, drift_x, data_layout)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise CheckFailedError(
            f"ONNX Runtime {evaluate.ort.__version__} fails to run the {mode.value} model "
            f"made from {str(source)!r}: {_runtime_message(exc)}; nothing was written; try "
            "another --mode"
        ) from exc
    drift = evaluate.drift(expected, actual, classification)
    metrics = _metrics(eval_data, reference, candidate, metadata, data_layout)
    report_fields: dict[str, Any] = {}
    if metrics is not None:
        before, after = metrics
        report_fields.update(
            metric_name=before.name, metric_before=before.value, metric_after=after.value
        )
    ops_after = count_ops(quantized)
    left_float = _recurrent_left_float(mode, quantized, rewrite, settings)
    left_float += _loop_bodies_left_float(mode, quantized)
    report = QuantizeReport(
        mode=mode.value,
        output=os.fspath(output),
        # With the external data, which the quantized model keeps inside its one file.
        size_before=model_size_bytes(source),
        size_after=len(data),
        ops_before=ops_before,
        ops_after=ops_after,
        drift=drift,
        settings=settings,
        notes=tuple(_notes(mode, left_float, stored)),
        recurrent_left_float=tuple(left_float),
        gru_int8_rewritten=tuple(rewrite.rewritten),
        qdq_compute_ops=count_qdq_compute(quantized) if mode is QuantMode.STATIC_INT8 else {},
        **report_fields,
    )
    _check_budget(report, max_metric_drop)
    if latency_runs > 0:
        # One sequence, or a batch of the model's fixed batch size.
        latency_x = data_layout.first_batch(drift_x, 1)
        report = _with_latency(report, reference, candidate, latency_x, latency_runs, data_layout)
    write_bytes_atomic(output, data)
    return report


def _check_quantizable(source: Path, metadata: ModelMetadata, ops: dict[str, int]) -> None:
    if metadata.precision != "fp32":
        raise InputError(
            f"{str(source)!r} is already quantized ({metadata.precision}); quantize the "
            "float32 model instead"
        )
    found = sorted(op for op in ops if op in QUANTIZED_OPS)
    if found:
        raise InputError(
            f"{str(source)!r} is already quantized (it contains {', '.join(found)}); quantize "
            "the float32 model instead"
        )
    if not any(op in COMPUTE_OPS for op in ops):
        raise InputError(
            f"{str(source)!r} has no LSTM, GRU, RNN, MatMul, Gemm or Conv operator to "
            "quantize; pass a model with recurrent or matrix operators"
        )


def _check_model(onnx, model, mode: QuantMode, source: Path) -> None:
    """Run the ONNX checker on a quantized model; raise `CheckFailedError` if it fails."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise CheckFailedError(
            f"the {mode.value} model made from {str(source)!r} fails the ONNX checker: "
            f"{_checker_message(exc)}; nothing was written; try another --mode"
        ) from exc


def _runtime_message(exc: Exception) -> str:
    """Return the innermost status message of an ONNX Runtime error, on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    innermost = text.rsplit("Status Message: ", 1)[-1]
    # The kernel's source location and the generic validation advice mean nothing to a user.
    innermost = re.sub(r"^/\S+:\d+ .*?\[ONNXRuntimeError\] : \d+ : \w+ : ", "", innermost)
    innermost = innermost.split(". Validate usage of", 1)[0]
    node = re.findall(r"running (\w+) node\. Name:'([^']*)'", text)
    where = f"{node[0][0]} node {node[0][1]!r}: " if node else ""
    return (where + innermost)[:400]


def _checker_message(exc: Exception) -> str:
    """Return the ONNX checker's multi-line message as one line of at most 400 characters.

    The checker prints a node as "name: NAME OpType: OP" on lines of its own, and NAME is
    empty for an unnamed node. The line names the node "OP node 'NAME'" or "unnamed OP node".
    """
    text = " ".join(str(exc).split()) or type(exc).__name__

    def describe(match: re.Match[str]) -> str:
        name, op_type = match.group(1), match.group(2)
        return f"{op_type} node {name!r}" if name else f"unnamed {op_type} node"

    text = re.sub(r"(?:of )?node: name: (\S*) ?OpType: (\S+)", lambda m: "of " + describe(m), text)
    text = re.sub(r"Name: (\S*) ?OpType: (\S+)", describe, text)
    text = re.sub(r"\.? ==> Context: ", "; context: ", text)
    return text if len(text) <= 400 else text[:397] + "..."


def _settings(
    mode: QuantMode,
    reduce_range: bool | str,
    per_channel: bool | None,
    calibration_method: CalibrationMethod | str | None,
    gru_int8: GruInt8 | str | None,
    gru_int8_min_hidden: int | None,
    preset: Preset | None,
) -> dict[str, Any]:
    """The settings this run uses, explicit values first, then the target's preset."""
    settings: dict[str, Any] = {"mode": mode.value}
    if preset is not None:
        settings["target"] = preset.device
    if mode is QuantMode.FP16:
        settings["keep_io_types"] = True
        return settings
    if per_channel is None:
        per_channel = (
            bool(preset.per_channel) if preset and preset.per_channel is not None else False
        )
    settings["per_channel"] = bool(per_channel)
    if mode is QuantMode.WEIGHT_INT8:
        # Weights are dequantized to float32, so no integer kernel can saturate: full range.
        settings["weight_type"] = "int8"
        return settings
    explicit = reduce_range if isinstance(reduce_range, bool) else None
    settings.update(reduce_range=resolve_reduce_range(explicit, preset), weight_type="int8")
    if mode is QuantMode.STATIC_INT8:
        method = calibration_method or (preset and preset.calibration_method) or "minmax"
        settings["calibration_method"] = _parse_method(method).value
        settings["format"] = "QDQ"
        return settings
    try:
        policy = GruInt8(gru_int8 if gru_int8 is not None else GruInt8.AUTO)
    except ValueError:
        raise InputError(
            f"unknown GRU int8 policy {gru_int8!r}; choose one of: auto, always, never"
        ) from None
    min_hidden = gru_int8_min_hidden
    if min_hidden is None and preset is not None:
        min_hidden = preset.gru_int8_min_hidden
    settings["gru_int8"] = policy.value
    settings["gru_int8_min_hidden"] = (
        DEFAULT_GRU_INT8_MIN_HIDDEN if min_hidden is None else int(min_hidden)
    )
    return settings


def _parse_method(value: CalibrationMethod | str) -> CalibrationMethod:
    try:
        return CalibrationMethod(value)
    except ValueError:
        choices = ", ".join(m.value for m in CalibrationMethod)
        raise InputError(
            f"unknown calibration method {value!r}; choose one of: {choices}"
        ) from None


def _run_pass(mode, source, float_model, settings, calibration_x, reference, data_layout):
    """Run one mode's pass.

    Returns the quantized model, what happened to GRU nodes, and the weights stored in int8
    for float compute.
    """
    rewrite = GruRewrite()
    if mode is QuantMode.DYNAMIC_INT8:
        return quantize_dynamic_int8(
            source,
            settings["reduce_range"],
            settings["per_channel"],
            GruInt8(settings["gru_int8"]),
            settings["gru_int8_min_hidden"],
        )
    if mode is QuantMode.STATIC_INT8:
        method = CalibrationMethod(settings["calibration_method"])
        # The histogram calibrators (entropy, percentile) stack the batches into one array,
        # so every batch must have the same shape: one sequence each, or the model's fixed
        # batch size, which `batches` takes instead (filling up the last batch).
        batch = CALIBRATION_BATCH if method is CalibrationMethod.MINMAX else 1
        inputs = reference.get_inputs()
        feeds = [
            build_feed(inputs, part, data_layout)
            for part, _ in data_layout.batches(calibration_x, batch)
        ]
        quantized, stored = quantize_static_int8(
            source,
            feeds,
            method,
            settings["per_channel"],
            settings["reduce_range"],
        )
        return quantized, rewrite, stored
    if mode is QuantMode.WEIGHT_INT8:
        import onnx

        quantized = onnx.ModelProto()
        quantized.CopyFrom(float_model)
        stored = quantize_weights(quantized, per_channel=settings["per_channel"])
        return quantized, rewrite, stored
    return convert_fp16(float_model), rewrite, []


def _model_inputs(
    data: np.ndarray | Mapping[str, np.ndarray] | None,
    session,
    metadata: ModelMetadata,
    option: str,
    data_layout: DataLayout,
) -> np.ndarray | None:
    """Check raw (batch, time, features) data against the model and normalize it.

    The data stays (batch, time, features) and is checked against the model's declared
    shape in that order. `build_feed` transposes it for a time-major model.
    """
    if data is None:
        return None
    info = sequence_input(session.get_inputs())
    if isinstance(data, Mapping):
        data = _pick_array(data, info.name, option)
    array = np.asarray(data)
    _check_finite(array, option)
    array = _check_sequence(array, info, option, data_layout)
    return normalize(array, metadata)


def _check_sequence(array: np.ndarray, info, option: str, data_layout: DataLayout) -> np.ndarray:
    """Check a (batch, time, features) array against the sequence input `info`.

    A fixed batch size takes any number of sequences, which run in batches of that size.
    """
    shape = data_layout.declared(info.shape)
    if shape and data_layout.fixed_batch is not None:
        shape[0] = "batch"
    return check_sequence_input(array, info.name, shape, info.type, option, batch_first=True)


def _check_finite(array: np.ndarray, option: str) -> None:
    # Checked before `check_sequence_input`, whose message offers `rnnedge run`'s
    # --nonfinite option; quantize has none, because a NaN spoils every range and drift.
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise InputError(
            f"{option} contains {bad} NaN or infinite values ({array.dtype}"
            f"{list(array.shape)}); clean or impute them before quantizing"
        )


def _pick_array(arrays: Mapping[str, np.ndarray], input_name: str, option: str) -> np.ndarray:
    for key in ("x", input_name):
        if key in arrays:
            return arrays[key]
    raise InputError(
        f"{option} contains arrays {sorted(arrays)}, none named 'x' or {input_name!r} (the "
        f"model's input); save the inputs as x, for example numpy.savez(path, x=inputs)"
    )


def _drift_inputs(
    float_model, metadata, samples, calibration_x, session, data_layout: DataLayout
) -> np.ndarray:
    """Return the (batch, time, features) drift inputs: the samples, else the calibration
    data, else random inputs of the model's fixed sizes or `SAMPLE_SHAPE`."""
    info = sequence_input(session.get_inputs())
    if samples is not None:
        # Samples are model inputs, already normalized: checked, never normalized again.
        array = np.asarray(samples)
        _check_finite(array, "--samples")
        array = _check_sequence(array, info, "--samples", data_layout)
        return np.ascontiguousarray(array, dtype=np.float32)
    if calibration_x is not None:
        return calibration_x
    features = metadata.features
    if features is None:
        dims = float_model.graph.input[0].type.tensor_type.shape.dim
        features = dims[-1].dim_value if dims and dims[-1].dim_value > 0 else None
    if features is None:
        raise InputError(
            "the model's feature count is unknown; pass sample inputs for the drift check"
        )
    # A time axis of fixed size keeps its size. With a fixed batch size, the inputs are the
    # fewest whole batches that hold at least SAMPLE_SHAPE[0] sequences.
    declared = data_layout.declared(info.shape)
    count, steps = SAMPLE_SHAPE
    if len(declared) == 3:
        fixed = data_layout.fixed_batch
        count = fixed * -(-count // fixed) if fixed else count
        steps = declared[1] if isinstance(declared[1], int) and declared[1] > 0 else steps
    shape = (count, steps, features)
    rng = np.random.default_rng(0)
    return rng.standard_normal(shape).astype(np.float32)


def _metrics(eval_data, reference, candidate, metadata: ModelMetadata, data_layout: DataLayout):
    if eval_data is None:
        return None
    x, y = eval_data
    x = _model_inputs(x, reference, metadata, "--eval x", data_layout)
    y = np.asarray(y)
    if y.shape[:1] != x.shape[:1]:
        labels = y.shape[0] if y.ndim else 0
        fix = "pass one label or target per sequence"
        if x.ndim == 3 and labels == x.shape[1]:
            # The labels match axis 1, so x is most likely (time, batch, features).
            fix = (
                "x is read as (batch, time, features) whatever the model's layout, so pass "
                "x.transpose(1, 0, 2)"
            )
        raise InputError(
            f"--eval has {x.shape[0]} sequences in x {tuple(x.shape)} but {labels} labels "
            f"in y; {fix}"
        )
    classification = metadata.task is Task.CLASSIFICATION or (
        metadata.task is None and np.issubdtype(y.dtype, np.integer)
    )
    # Each sequence needs its own output row, to line up with its label.
    before = evaluate.first_output(reference, x, data_layout, rows_for="--eval x")
    after = evaluate.first_output(candidate, x, data_layout, rows_for="--eval x")
    hint = evaluate.layout_hint(data_layout)
    before = evaluate.task_metric(before, y, classification, hint)
    after = evaluate.task_metric(after, y, classification, hint)
    return before, after


def _check_budget(report: QuantizeReport, max_metric_drop: float | None) -> None:
    drop = report.metric_drop
    if max_metric_drop is None or drop is None or drop <= max_metric_drop:
        return
    fixes = _budget_fixes(report.settings)
    if fixes:
        advice = "Try " + (
            fixes[0] if len(fixes) == 1 else ", ".join(fixes[:-1]) + ", or " + fixes[-1]
        )
    else:
        advice = (
            f"{report.mode} has no setting left to try; keep the float model, or raise "
            "--max-metric-drop"
        )
    raise CheckFailedError(
        f"{report.mode} loses {drop:.4g} {report.metric_name} ({report.metric_before:.4g} -> "
        f"{report.metric_after:.4g}), more than --max-metric-drop {max_metric_drop:g}; no "
        f"output written. {advice}"
    )


def _budget_fixes(settings: Mapping[str, Any]) -> list[str]:
    """Return the settings, not in use yet, that may lose less of the metric."""
    mode = settings.get("mode")
    fixes = []
    if mode != QuantMode.FP16.value and not settings.get("per_channel"):
        fixes.append("--per-channel")
    if mode == QuantMode.STATIC_INT8.value:
        used = settings.get("calibration_method")
        others = [m.value for m in CalibrationMethod if m.value != used]
        fixes.append(f"--calibration-method {' or '.join(others)}")
    elif mode != QuantMode.FP16.value:
        fixes.append("static-int8 with calibration")
    if mode != QuantMode.FP16.value:
        fixes.append("fp16")
    return fixes


def _with_latency(report, reference, candidate, x, runs, data_layout) -> QuantizeReport:
    from dataclasses import replace

    before = evaluate.p50_latency_ms(reference, x, runs, data_layout)
    after = evaluate.p50_latency_ms(candidate, x, runs, data_layout)
    batch = int(data_layout.first_batch(x, x.shape[0]).shape[0])
    return replace(report, p50_ms_before=before, p50_ms_after=after, latency_batch=batch)


def _loop_bodies_left_float(mode: QuantMode, model) -> list[tuple[str, str]]:
    """Name the Loop and Scan nodes whose bodies keep float MatMul, Gemm or Conv nodes."""
    if mode is QuantMode.FP16:
        return []
    reasons = {
        QuantMode.DYNAMIC_INT8: "ONNX Runtime's dynamic quantizer left them in float32",
        QuantMode.STATIC_INT8: "ONNX Runtime's QDQ quantizer skips Loop and Scan bodies "
        "(onnxruntime 1.32 quantizes them in dynamic mode only), so they compute in float32; "
        "their constant weights of 64 or more elements are stored in int8; --mode "
        "dynamic-int8 quantizes them",
        QuantMode.WEIGHT_INT8: "weight-only int8 dequantizes weights and computes in float32",
    }
    left = []
    for node, counts in float_loop_bodies(model):
        ops = ", ".join(f"{op} x{n}" for op, n in counts.items())
        left.append((f"{ops} in {node}", reasons[mode]))
    return left


def _recurrent_left_float(
    mode: QuantMode, model, rewrite: GruRewrite, settings: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """Name each LSTM, GRU or RNN node of the quantized `model` with the reason it is float.

    A node is named as the GRU rewrite names it: by its name, else by its first output.
    """
    if mode is QuantMode.FP16:
        return []
    kept = dict(rewrite.kept_float)
    left = []
    for graph, _ in iter_graphs(model.graph, []):
        for node in graph.node:
            if node.op_type not in RECURRENT_OPS or node.domain not in ("", "ai.onnx"):
                continue
            label = node.name or node.output[0]
            left.append((label, _float_reason(mode, node.op_type, kept.get(label), settings)))
    return left


def _float_reason(
    mode: QuantMode, op_type: str, rewrite_reason: str | None, settings: Mapping[str, Any]
) -> str:
    """Return why a recurrent node of `op_type` computes in float32 after `mode`'s pass."""
    if mode is QuantMode.STATIC_INT8:
        return (
            "ONNX Runtime's QDQ format has no int8 recurrent operator; its weights are stored "
            "in int8 and computed in float32"
        )
    if mode is QuantMode.WEIGHT_INT8:
        return "weight-only int8 dequantizes weights and computes in float32"
    if op_type == "GRU":
        if settings.get("gru_int8") == GruInt8.NEVER.value:
            reason = (
                "--gru-int8 never keeps it in float32, with its weights stored in int8; "
                "--gru-int8 auto or always rewrites it into the int8 GRU path"
            )
        else:
            reason = rewrite_reason or "the int8 GRU rewrite left it float"
            reason += "; its weights are stored in int8"
        return reason
    if op_type == "LSTM":
        return (
            "ONNX Runtime's dynamic quantizer makes an LSTM into DynamicQuantizeLSTM only "
            "when its weights W and R are float initializers (onnxruntime 1.32)"
        )
    return "ONNX Runtime's dynamic quantization has no int8 kernel for it"


def _notes(mode: QuantMode, left_float: list[tuple[str, str]], stored: list[str]) -> list[str]:
    notes = [float_note(node, reason) for node, reason in left_float]
    if stored:
        notes.append(
            f"{len(stored)} weight tensors stored in int8 for float compute, dequantized by "
            "constant folding when the session loads"
        )
    if mode is QuantMode.FP16:
        notes.append(
            "the CPU provider casts fp16 LSTM/GRU back to float32: smaller file, no speed-up"
        )
    return notes


def _set_props(model, values: dict[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for prop in kept:
        model.metadata_props.append(prop)
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
