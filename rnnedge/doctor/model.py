"""Checks of one model against this onnxruntime: opsets, operators, placement, int8 kernels.

The opsets and operators come from the model file itself (see `onnx_proto`) and are
compared with onnxruntime's own operator schemas and kernel registrations. Then the model
is loaded, and run once on synthetic inputs with ONNX Runtime's profiler on, because the
profiler's per-node events are the only public record of the provider each node ran on.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.doctor.findings import Area, Finding, Status, error, ok, warning
from rnnedge.doctor.onnx_proto import ModelInfo, parse_model
from rnnedge.errors import InputError
from rnnedge.runtime.external_data import is_ort_format
from rnnedge.runtime.operators import QUANTIZED_OPS
from rnnedge.runtime.providers import CPU_EP, Provider, plan_providers
from rnnedge.runtime.session import set_load_format, starts_like_ort

logger = logging.getLogger(__name__)

_A = Area.MODEL
# Operators that ONNX Runtime runs without a kernel of their own: it replaces each Constant
# node by an initializer when it loads the model (checked with onnxruntime 1.32 and graph
# optimizations disabled), so the operators check leaves them out.
KERNEL_FREE_OPS = frozenset({("", "Constant")})
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM", "Scan", "Loop"})
_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}  # fmt: skip


def check_model(
    path: str | os.PathLike[str],
    device_preference: Sequence[str] = (),
    device_options: dict[str, dict[str, Any]] | None = None,
) -> list[Finding]:
    """Run every model check; a failed step is reported and the later steps still run."""
    path = Path(path)
    try:
        from rnnedge.runtime.session import open_model_file

        open_model_file(path)
        data = path.read_bytes()
        if is_ort_format(data):
            return _check_ort_model(path)
        info = parse_model(data)
    except (InputError, OSError) as exc:
        problem, fix = _problem_and_fix(exc, path)
        return [error(_A, "file", problem, fix, path=str(path))]
    tables = _OnnxruntimeTables.load()
    findings = [_summary(path, info)]
    findings.extend(_opsets(info, tables))
    findings.append(_operators(info, tables))
    load = _load(path)
    findings.append(load)
    if load.status is not Status.OK:
        findings.append(ok(_A, "placement", "skipped: the model does not load"))
    else:
        findings.append(_placement(path, info, device_preference, device_options or {}))
    findings.append(_quantized(info, tables, device_preference))
    return findings


def _check_ort_model(path: Path) -> list[Finding]:
    # The opset, operator and quantization checks read the ONNX protobuf graph, which an
    # .ort flatbuffer does not contain, so only loading is checked.
    summary = ok(
        _A, "file",
        f"{path.name}: ONNX Runtime format (.ort); the opset, operator and quantization "
        "checks read .onnx files and are skipped, so check the .onnx model it came from",
        path=str(path), format="ort",
    )  # fmt: skip
    return [summary, _load(path)]


def _problem_and_fix(exc: Exception, path: Path) -> tuple[str, str]:
    """Split an unreadable file's error into the problem and its one fix.

    rnnedge's own errors end in "; <fix>", which becomes the finding's fix, so that the
    report names one fix, not the error's and a generic one.
    """
    if isinstance(exc, OSError):
        problem, fix = exc.strerror or str(exc), _UNREADABLE_FIX
    else:
        problem, separator, fix = str(exc).rpartition("; ")
        if not separator:
            problem, fix = str(exc), _UNREADABLE_FIX
    if str(path) not in problem:
        problem = f"{path}: {problem}"
    return problem, fix


_UNREADABLE_FIX = "pass the path of an .onnx file written by 'rnnedge export' or 'rnnedge quantize'"


class _OnnxruntimeTables:
    """Operator schemas (name, domain, since-version) and kernels (provider) of this build."""

    def __init__(self, schemas: list[Any] | None, kernels: list[Any] | None) -> None:
        self.available = bool(schemas)
        self.max_opset: dict[str, int] = defaultdict(int)
        self.since: dict[tuple[str, str], list[int]] = defaultdict(list)
        for schema in schemas or []:
            domain = "" if schema.domain == "ai.onnx" else schema.domain
            self.max_opset[domain] = max(self.max_opset[domain], schema.since_version)
            self.since[(domain, schema.name)].append(schema.since_version)
        self.kernels: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)
        for kernel in kernels or []:
            domain = "" if kernel.domain == "ai.onnx" else kernel.domain
            low, high = kernel.version_range
            self.kernels[(domain, kernel.op_name)].append((low, high, kernel.provider))

    @classmethod
    def load(cls) -> _OnnxruntimeTables:
        # NOTE: these two functions live in onnxruntime's compiled module and are not part
        # of its documented API; builds without them (minimal builds) skip the table checks.
        from onnxruntime.capi import onnxruntime_pybind11_state as native

        schemas = kernels = None
        try:
            schemas = native.get_all_operator_schema()
            kernels = native.get_all_opkernel_def()
        except AttributeError:
            logger.info("this onnxruntime build exposes no operator schema table")
        return cls(schemas, kernels)

    def kernel_providers(self, domain: str, op: str, opset: int) -> list[str]:
        return sorted({
            provider for low, high, provider in self.kernels.get((domain, op), [])
            if low <= opset <= high
        })  # fmt: skip


def _summary(path: Path, info: ModelInfo) -> Finding:
    counts = Counter(n.op_type for n in info.nodes)
    recurrent = {op: n for op, n in counts.items() if op in RECURRENT_OPS}
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(_used_opsets(info).items()))
    return ok(
        _A, "file",
        f"{path.name}: IR version {info.ir_version}, opsets {opsets}, {len(info.nodes)} nodes"
        + (f", recurrent: {_counts(recurrent)}" if recurrent else ""),
        path=str(path), ir_version=info.ir_version, producer=info.producer,
        opsets=info.opsets, op_counts=dict(sorted(counts.items())),
    )  # fmt: skip


def _opsets(info: ModelInfo, tables: _OnnxruntimeTables) -> list[Finding]:
    if not tables.available:
        return [ok(_A, "opsets", "not compared: this onnxruntime build has no schema table")]
    local = {domain for domain, _ in info.functions}
    findings = []
    for domain, version in sorted(_used_opsets(info).items()):
        label = domain or "ai.onnx"
        check = f"opset.{label}"
        supported = tables.max_opset.get(domain)
        if supported is None and domain not in local:
            ops = sorted({n.op_type for n in info.nodes if n.domain == domain})
            findings.append(error(
                _A, check,
                f"domain {label!r} (operators: {', '.join(ops) or 'none'}) is unknown to "
                f"onnxruntime {ort.__version__}",
                "these are custom operators: register their library with "
                "SessionOptions.register_custom_ops_library, or re-export without them",
                domain=label, version=version,
            ))  # fmt: skip
        elif supported is not None and version > supported:
            findings.append(error(
                _A, check,
                f"{label} opset {version} is newer than onnxruntime {ort.__version__} "
                f"supports (up to {supported})",
                f"re-export with --opset {supported} or lower (rnnedge export writes opset 17 "
                "by default), or upgrade onnxruntime (pip install -U onnxruntime)",
                domain=label, version=version, max_supported=supported,
            ))  # fmt: skip
        else:
            findings.append(ok(
                _A, check, f"{label} opset {version} (supported up to {supported})",
                domain=label, version=version, max_supported=supported,
            ))  # fmt: skip
    return findings


def _operators(info: ModelInfo, tables: _OnnxruntimeTables) -> Finding:
    if not tables.available:
        return ok(_A, "operators", "not compared: this onnxruntime build has no schema table")
    available = set(ort.get_available_providers())
    unknown, no_kernel, placement = [], [], {}
    for domain, op in sorted({(n.domain, n.op_type) for n in info.nodes}):
        if (domain, op) in info.functions or (domain, op) in KERNEL_FREE_OPS:
            continue
        opset = info.opsets.get(domain, 1)
        since = [v for v in tables.since.get((domain, op), []) if v <= opset]
        label = f"{domain}.{op}" if domain else op
        if not since:
            unknown.append(label)
            continue
        providers = [p for p in tables.kernel_providers(domain, op, opset) if p in available]
        placement[label] = providers
        if not providers:
            no_kernel.append(label)
    details = {"kernels": placement, "unknown": unknown, "no_kernel": no_kernel}
    if unknown:
        return error(
            _A, "operators",
            f"operators unknown to onnxruntime {ort.__version__} at the model's opsets: "
            f"{', '.join(unknown)}",
            "re-export with an opset at which these operators exist, replace them, or upgrade "
            "onnxruntime",
            **details,
        )  # fmt: skip
    # Operators without a kernel may still run: ONNX Runtime expands function operators
    # (for example some activations) into primitive ones, and the load test below decides.
    note = ""
    if no_kernel:
        note = (
            f"; no kernel in this build for {', '.join(no_kernel)}: such an operator runs "
            "only where ONNX Runtime expands it as an ONNX function, which the load check tests"
        )
    return ok(_A, "operators", f"{len(placement)} operator types known{note}", **details)


def _load(path: Path) -> Finding:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    set_load_format(options, path)
    try:
        session = ort.InferenceSession(str(path), options, providers=[CPU_EP])
    except Exception as exc:  # onnxruntime raises its own untyped errors on load
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        from rnnedge.runtime.session import ORT_CONVERT_AGAIN, ort_load_problem

        if starts_like_ort(path):
            return error(
                _A, "load", f"{path.name} {ort_load_problem(first)} ({first})",
                ORT_CONVERT_AGAIN,
                onnxruntime_message=text[:2000],
            )  # fmt: skip
        return error(
            _A, "load", f"onnxruntime {ort.__version__} cannot load the model: {first}",
            "fix the cause named above (usually an opset or operator this onnxruntime lacks); "
            "re-export with rnnedge export, or upgrade onnxruntime",
            onnxruntime_message=text[:2000],
        )  # fmt: skip
    inputs = [f"{i.name} {i.type} {i.shape}" for i in session.get_inputs()]
    return ok(_A, "load", f"loads on {CPU_EP}; inputs: {'; '.join(inputs)}", inputs=inputs)


def synthetic_feed(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """Inputs of every declared type with each symbolic dimension set to 1."""
    feed = {}
    for info in session.get_inputs():
        dtype = _DTYPES.get(info.type)
        if dtype is None:
            raise InputError(f"input {info.name!r} has type {info.type}, which doctor cannot fill")
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in info.shape]
        feed[info.name] = np.ones(shape, dtype=dtype)
    return feed


def node_placements(
    path: Path, providers: list[tuple[str, dict[str, Any]]]
) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Run once with the profiler on; return the session's providers and node placements.

    Returns:
        the providers the session got, and for each executed node its (op type, provider).
    """
    options = ort.SessionOptions()
    # 4 (fatal only): a failed run raises, and its error log would repeat it in color.
    options.log_severity_level = 4
    options.enable_profiling = True
    set_load_format(options, path)
    with tempfile.TemporaryDirectory(prefix="rnnedge-doctor-") as folder:
        options.profile_file_prefix = str(Path(folder) / "placement")
        session = ort.InferenceSession(str(path), options, providers=providers)
        session.run(None, synthetic_feed(session))
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
    placements = {}
    for event in events:
        args = event.get("args") or {}
        name = str(event.get("name", ""))
        if event.get("cat") == "Node" and "provider" in args and name.endswith("_kernel_time"):
            placements[name.removesuffix("_kernel_time")] = (args.get("op_name", ""),
                                                             args["provider"])  # fmt: skip
    return session.get_providers(), placements


def _placement(
    path: Path, info: ModelInfo, preference: Sequence[str], options: dict[str, dict[str, Any]]
) -> Finding:
    plan = plan_providers(Provider.AUTO, preference=tuple(preference), options=options)
    try:
        actual, placements = node_placements(path, plan.as_ort_list())
    except Exception as exc:  # a run on synthetic inputs may fail for model-specific reasons
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return warning(
            _A, "placement", f"could not run the model on synthetic inputs: {first}",
            "run it on real data with 'rnnedge run MODEL --input FILE -v', which logs the "
            "providers in use",
            requested=list(plan.providers),
        )  # fmt: skip
    recurrent = [n for n in info.nodes if n.op_type in RECURRENT_OPS and n.subgraph_of is None]
    rows = {}
    for node in recurrent:
        placed = placements.get(node.name)
        rows[node.name or node.op_type] = {
            "op_type": node.op_type,
            "provider": placed[1] if placed else None,
        }
    fused = sorted({p for op, p in placements.values() if op not in RECURRENT_OPS} - {CPU_EP})
    primary = actual[0] if actual else CPU_EP
    on_cpu = [name for name, row in rows.items() if row["provider"] == CPU_EP]
    details = {"requested": list(plan.providers), "session": actual, "recurrent_nodes": rows}
    text = (
        ", ".join(
            f"{name} ({row['op_type']}) on {row['provider'] or 'a fused subgraph or not run'}"
            for name, row in rows.items()
        )
        or "no recurrent nodes"
    )
    if primary != CPU_EP and on_cpu:
        return warning(
            _A, "placement",
            f"session providers {', '.join(actual)}; {text}",
            f"{', '.join(on_cpu)} fall back to the CPU, with copies between devices on every "
            "call: use the float or fp16 model on the GPU, or run the whole model with "
            "--provider cpu",
            **details,
        )  # fmt: skip
    suffix = f"; fused subgraphs on {', '.join(fused)}" if fused else ""
    return ok(_A, "placement", f"session providers {', '.join(actual)}; {text}{suffix}",
              **details)  # fmt: skip


def _quantized(info: ModelInfo, tables: _OnnxruntimeTables, preference: Sequence[str]) -> Finding:
    counts = Counter((n.domain, n.op_type) for n in info.nodes if n.op_type in QUANTIZED_OPS)
    if not counts:
        return ok(_A, "quantized", "float model: no quantized kernels", kernels={})
    available = set(ort.get_available_providers())
    kernels = {}
    for (domain, op), count in sorted(counts.items()):
        opset = info.opsets.get(domain, 1)
        providers = [p for p in tables.kernel_providers(domain, op, opset) if p in available]
        label = f"{domain}.{op}" if domain else op
        kernels[label] = {"count": count, "providers": providers}
    listed = ", ".join(
        f"{label} x{row['count']} ({', '.join(row['providers']) or 'no kernel'})"
        for label, row in kernels.items()
    )
    missing = [label for label, row in kernels.items() if tables.available and not row["providers"]]
    if missing:
        return error(
            _A, "quantized", f"quantized kernels without an implementation here: {listed}",
            "quantize with rnnedge quantize on a build that has these kernels, or use the "
            "float model",
            kernels=kernels,
        )  # fmt: skip
    # Only a GPU provider that this build offers would split the model.
    gpu_eps = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
    gpu_first = [p for p in preference if gpu_eps.get(str(p).lower()) in available]
    if gpu_first and any(row["providers"] == [CPU_EP] for row in kernels.values()):
        return warning(
            _A, "quantized", f"relies on {listed}; the device prefers {gpu_first[0]}",
            "these int8 kernels exist on the CPU only, so a GPU session splits the model; "
            "on a GPU use the fp16 model (rnnedge quantize --mode fp16)",
            kernels=kernels,
        )  # fmt: skip
    return ok(_A, "quantized", f"relies on {listed}", kernels=kernels)


def _used_opsets(info: ModelInfo) -> dict[str, int]:
    """Return the opset imports that some node uses, plus ai.onnx.

    Exporters and quantizers often import domains they never use, and ONNX Runtime ignores
    those.
    """
    used = {n.domain for n in info.nodes} | {""}
    return {domain: v for domain, v in info.opsets.items() if domain in used}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in sorted(counts.items()))
