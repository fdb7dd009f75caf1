"""`rnnedge report`: one self-contained HTML page from device profiles and reports.

See `rnnedge.report.collect` for the files it reads. matplotlib (the `plot` extra) draws
the plots; the rest needs PyYAML only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnedge._fileio import write_bytes_atomic
from rnnedge.errors import InputError, MissingDependencyError
from rnnedge.profiling.compare import model_labels
from rnnedge.report import figures, page
from rnnedge.report.collect import ReportInputs, accuracy_by_artifact, collect, demo_file_name

logger = logging.getLogger(__name__)

# The "spoiled by" text of a measurement recorded with --force-device.
HOST_MISMATCH_TEXT = "host_mismatch: measured on a host that does not match this device"

__all__ = ["ReportSummary", "build_report", "collect", "write_demo_report"]


@dataclass(frozen=True)
class ReportSummary:
    """Summary of a written report: its path, inputs, plots and notices."""

    path: Path
    devices: tuple[str, ...]
    measurements: int
    plots: tuple[str, ...]
    notices: tuple[str, ...]
    skipped: tuple[str, ...]


def build_report(
    folders: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    title: str = "rnnedge report",
) -> ReportSummary:
    """Write the HTML report of everything found under `folders` to `output`.

    Raises:
        InputError: a folder is missing, or none contains a valid profile or report. The
            message lists each invalid file with its validation error.
        MissingDependencyError: matplotlib is not installed (the `plot` extra).
    """
    inputs = collect(folders)
    # A folder given twice, such as FOLDER and --devices-dir FOLDER, is named once.
    sources: list[str] = []
    seen: set[Path] = set()
    for folder in folders:
        if Path(folder).resolve() not in seen:
            seen.add(Path(folder).resolve())
            sources.append(os.path.normpath(folder))
    if inputs.is_empty() and inputs.skipped:
        raise InputError(_all_invalid_message(inputs.skipped, sources))
    if inputs.is_empty():
        raise InputError(
            f"no device profiles (*.yaml) or reports (*.report.json, results.json) under "
            f"{', '.join(sources)}; run 'rnnedge profile MODEL' or 'rnnedge demo' first"
        )
    require_plotting()
    notices: list[str] = []
    plots: list[str] = []
    sections = [
        ("Summary", _summary(inputs, notices)),
        ("Latency against sequence length", _latency(inputs, plots)),
        ("Accuracy against latency", _accuracy(inputs, plots)),
        ("Operator time breakdown", _operators(inputs, plots)),
        ("Measurements and host conditions", _conditions(inputs)),
        ("Quantization reports", _quantization(inputs)),
        ("Export reports", _exports(inputs)),
    ]
    # The page may be read far from where it was built, so it names absolute folders.
    text = page.document(title, [os.path.abspath(f) for f in sources], sections)
    write_bytes_atomic(output, text.encode("utf-8"))
    return ReportSummary(
        path=Path(output),
        devices=tuple(p.name for p in inputs.profiles),
        measurements=inputs.measurement_count,
        plots=tuple(plots),
        notices=tuple(notices),
        skipped=tuple(_skipped_text(path, reason) for path, reason in inputs.skipped),
    )


# The maximum number of invalid files that the error of a report without valid input lists.
MAX_LISTED_INVALID = 10


def _skipped_text(path: Path, reason: str) -> str:
    """Join a skipped file's path and reason, unless the reason starts with the path.

    A device profile's validation error starts with the path, a JSON report's reason does not.
    """
    return reason if reason.startswith(str(path)) else f"{path}: {reason}"


def _all_invalid_message(skipped: list[tuple[Path, str]], sources: list[str]) -> str:
    """Build the error for folders whose every profile or report is invalid."""
    listed = [
        f"({number}) {_skipped_text(path, reason)}"
        for number, (path, reason) in enumerate(skipped[:MAX_LISTED_INVALID], start=1)
    ]
    if len(skipped) > MAX_LISTED_INVALID:
        listed.append(f"and {len(skipped) - MAX_LISTED_INVALID} more")
    count = "1 file" if len(skipped) == 1 else f"{len(skipped)} files"
    return (
        f"no valid device profile or report under {', '.join(sources)}, because {count} "
        f"found {'is' if len(skipped) == 1 else 'are'} invalid: {' '.join(listed)}; fix or "
        "delete the invalid files, then build the report again"
    )


def require_plotting() -> None:
    """Fail early, before any work, when matplotlib is missing."""
    from rnnedge.errors import require

    require("matplotlib", "plot")


def write_demo_report(results: dict[str, Any], output_dir: Path, devices_dir: Path) -> Path | None:
    """Write the demo's `results.json` and `report.html` into `output_dir`.

    Returns the report's path, or None (with a logged warning) where matplotlib is missing,
    so that a demo without the `plot` extra still finishes.
    """
    write_bytes_atomic(output_dir / "results.json", json.dumps(results, indent=2).encode())
    folders = [output_dir] + ([devices_dir] if devices_dir.is_dir() else [])
    try:
        return build_report(folders, output_dir / "report.html", "rnnedge demo").path
    except MissingDependencyError as exc:
        logger.warning("no HTML report: %s", exc)
        return None


def _summary(inputs: ReportInputs, notices: list[str]) -> str:
    devices = [p for p in inputs.profiles if p.measurements]
    empty = [p.name for p in inputs.profiles if not p.measurements]
    parts = [
        page.table(
            [
                "device profiles",
                "with measurements",
                "measurements",
                "quantize reports",
                "export reports",
                "demo results",
            ],
            [
                [
                    len(inputs.profiles),
                    len(devices),
                    inputs.measurement_count,
                    len(inputs.quantize_reports),
                    len(inputs.export_reports),
                    len(inputs.demo_results),
                ]
            ],
        )
    ]
    if not inputs.profiles:
        notices.append(
            "no device profiles in these folders: run 'rnnedge profile MODEL' on the device, "
            "then build the report again with its devices folder"
        )
    elif inputs.measurement_count == 0:
        notices.append(
            "no measurements in these device profiles: run 'rnnedge profile MODEL' on the "
            "device, then build the report again"
        )
    elif empty:
        notices.append(f"device profiles without measurements: {', '.join(empty)}")
    mismatched = []
    for profile in inputs.profiles:
        count = sum(1 for m in profile.measurements if m.get("host_mismatch"))
        if count:
            mismatched.append(f"{profile.name} ({count})")
    if mismatched:
        notices.append(
            "measurements marked host_mismatch, recorded with --force-device on a host that "
            f"does not match the device: {', '.join(mismatched)}; their rows are highlighted "
            "under 'Measurements and host conditions'"
        )
    for path, reason in inputs.skipped:
        notices.append(f"skipped {_skipped_text(path, reason)}")
    parts.extend(page.notice(text) for text in notices)
    return "\n".join(parts)


def _latency(inputs: ReportInputs, plots: list[str]) -> str:
    _, series = figures.latency_series(inputs.profiles)
    lengths = sorted({length for points in series.values() for length in points})
    if len(lengths) == 1:
        # A single length draws a column of dots, which shows nothing about sequence length.
        return page.notice(
            f"no latency plot: every measurement is at sequence length {lengths[0]}, and the "
            "plot needs at least two; measure more lengths with "
            "'rnnedge profile MODEL --sweep seq-len=10,100,1000'"
        )
    png = figures.latency_figure(inputs.profiles)
    if png is None:
        return page.notice("no latency measurements to plot")
    plots.append("latency")
    return page.image(png, "p50 and p99 latency against sequence length")


def _accuracy_points(inputs: ReportInputs) -> list[dict[str, Any]]:
    points = []
    seen = set()
    for _, document in inputs.demo_results:
        for row in document.get("rows") or []:
            if isinstance(row, dict) and {"accuracy", "p50_ms"} <= set(row):
                name = demo_file_name(row)
                seen.add(name)
                points.append({
                    "label": f"{row.get('model')} {row.get('precision')}",
                    "accuracy": float(row["accuracy"]), "p50_ms": float(row["p50_ms"]),
                    "model": row.get("model"), "precision": row.get("precision"),
                })  # fmt: skip
    latest = {}
    for profile in inputs.profiles:
        for entry in profile.measurements:
            if figures.p50(entry) is not None:
                latest[str(entry.get("model"))] = entry
    for name, accuracy in accuracy_by_artifact(inputs).items():
        if name in seen or name not in latest:
            continue
        entry = latest[name]
        points.append({
            "label": name, "accuracy": accuracy, "p50_ms": figures.p50(entry),
            "model": name, "precision": entry.get("precision"),
        })  # fmt: skip
    return points


def _accuracy(inputs: ReportInputs, plots: list[str]) -> str:
    points = _accuracy_points(inputs)
    png = figures.accuracy_figure(points)
    if png is None:
        return page.notice(
            "no accuracy found: run 'rnnedge demo', or put an \"accuracy\" field in a "
            "*.report.json next to the profiles"
        )
    plots.append("accuracy")
    rows = [[p["label"], p["accuracy"], p["p50_ms"]] for p in points]
    return page.image(png, "accuracy against p50 latency") + page.table(
        ["artifact", "accuracy", "p50 ms"], rows
    )


def _operators(inputs: ReportInputs, plots: list[str]) -> str:
    latest: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for profile in inputs.profiles:
        for entry in profile.measurements:
            ops = [op for op in entry.get("top_operators") or [] if isinstance(op, dict)]
            if ops:
                label = f"{profile.name} · {entry.get('model')} · {entry.get('precision')}"
                latest[label] = (label, ops)
    png = figures.operator_figure(list(latest.values()))
    if png is None:
        return page.notice(_no_operators_notice(inputs))
    plots.append("operators")
    return page.image(png, "share of node time by operator type")


def _no_operators_notice(inputs: ReportInputs) -> str:
    """Explain why no measurement has operator times, with the fix for each cause.

    `rnnedge profile --operators 0` stores an empty `top_operators` list, while an rnnedge
    that predates the operator ranking stores no `top_operators` field.
    """
    entries = [entry for profile in inputs.profiles for entry in profile.measurements]
    skipped = sum(1 for entry in entries if entry.get("top_operators") == [])
    older = sum(1 for entry in entries if "top_operators" not in entry)
    causes = []
    if skipped:
        taken = "it was" if skipped == 1 else f"{skipped} of them were"
        causes.append(
            f"{taken} taken with --operators 0, which skips the ranking; profile again "
            "without it (the default ranks 10 operator types)"
        )
    if older:
        taken = "it was" if older == 1 else f"{older} of them were"
        causes.append(
            f"{taken} taken by an rnnedge version whose 'profile' records no "
            "top_operators; profile again with this version"
        )
    if not entries:
        return "no operator times: these device profiles contain no measurements"
    counted = "this measurement" if len(entries) == 1 else f"these {len(entries)} measurements"
    if not causes:
        return f"no operator times recorded in {counted}"
    return f"no operator times recorded in {counted}: " + "; ".join(causes)


def _conditions(inputs: ReportInputs) -> str:
    from rnnedge.doctor.conditions import spoilers

    # The measurement time distinguishes the rows of runs that stored the same model in one
    # profile, such as two demo runs with the same devices folder.
    headers = [
        "device", "model", "precision", "provider", "batch", "seq len", "p50 ms", "p99 ms",
        "measured (UTC)", "CPU", "onnxruntime", "governor", "clock MHz", "max °C", "swap MB",
        "spoiled by",
    ]  # fmt: skip
    rows, classes = [], []
    models = model_labels(m for p in inputs.profiles for m in p.measurements)
    for profile in inputs.profiles:
        for entry in profile.measurements:
            latency = entry.get("latency_ms") or {}
            host = entry.get("host") or {}
            conditions = entry.get("conditions")
            if isinstance(conditions, dict):
                spoiled = [f.message for f in spoilers(conditions)]
                verdict = "; ".join(spoiled) or "nothing found"
                clock = conditions.get("clock_mhz") or {}
                clock_text = (
                    f"{clock.get('current_min')} / {clock.get('max')}" if clock.get("max") else ""
                )
                governors = ", ".join(conditions.get("governors") or [])
                temp = (conditions.get("thermal") or {}).get("max_temp_c")
                swap = conditions.get("swap_used_mb")
            else:
                spoiled, verdict = [], "not recorded"
                clock_text = governors = ""
                temp = swap = None
            if entry.get("host_mismatch"):
                spoiled = [HOST_MISMATCH_TEXT, *spoiled]
                verdict = "; ".join(spoiled)
            rows.append([
                profile.name, models[(entry.get("model"), entry.get("model_sha256"))],
                entry.get("precision"),
                str(entry.get("provider", "")).removesuffix("ExecutionProvider"),
                entry.get("batch"), entry.get("seq_len"), latency.get("p50_ms"),
                latency.get("p99_ms"), _measured_at(entry.get("timestamp")),
                (host.get("cpu") or {}).get("model"),
                host.get("onnxruntime"), governors, clock_text, temp, swap, verdict,
            ])  # fmt: skip
            classes.append("spoiled" if spoiled else "")
    if not rows:
        return page.notice("no measurements")
    return page.table(headers, rows, classes)


def _measured_at(timestamp: Any) -> str:
    """Return a measurement's ISO timestamp as "2025-01-31 14:05:09" in UTC."""
    if not isinstance(timestamp, str):
        return ""
    try:
        when = dt.datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _quantization(inputs: ReportInputs) -> str:
    if not inputs.quantize_reports:
        return page.notice(
            "no quantize reports found: save them with "
            "'rnnedge quantize MODEL --json > MODEL.int8.report.json'"
        )
    rows = []
    for path, doc in inputs.quantize_reports:
        drift = doc.get("drift") or {}
        rows.append([
            Path(str(doc.get("output") or path)).name, doc.get("mode"), doc.get("size_before"),
            doc.get("size_after"), _ops(doc.get("quantized_ops")),
            _ops(doc.get("float_compute_ops")), drift.get("max_abs_error"),
            drift.get("top1_agreement"), _change(doc, "metric_before", "metric_after",
                                                 doc.get("metric")),
            _change(doc, "p50_ms_before", "p50_ms_after", "p50 ms"),
            "; ".join(map(str, doc.get("notes") or [])),
        ])  # fmt: skip
    return page.table(
        ["artifact", "mode", "bytes before", "bytes after", "quantized ops", "float compute ops",
         "max abs drift", "top-1 agreement", "task metric (--eval)", "latency", "notes"],
        rows,
    )  # fmt: skip


def _change(doc: dict[str, Any], before: str, after: str, name: Any) -> str:
    """Describe a value before and after quantization, such as "accuracy 0.91 -> 0.9"; empty
    where the report did not measure it."""
    first, second = doc.get(before), doc.get(after)
    if not isinstance(first, int | float) or not isinstance(second, int | float):
        return ""
    return f"{name} {first:.4g} -> {second:.4g}"


def _exports(inputs: ReportInputs) -> str:
    if not inputs.export_reports:
        return page.notice(
            "no export reports found: save them with "
            "'rnnedge export CHECKPOINT --json > MODEL.report.json'"
        )
    rows = []
    for path, doc in inputs.export_reports:
        # `rnnedge export --json` gives the largest error and the tolerance at the top
        # level, and one entry per checked (batch, length) case under "parity".
        cases = doc.get("parity")
        rows.append([
            Path(str(doc.get("output") or path)).name, doc.get("opset"), doc.get("size_bytes"),
            doc.get("max_abs_error"), doc.get("atol"),
            len(cases) if isinstance(cases, list) else None, _ops(doc.get("ops")),
        ])  # fmt: skip
    return page.table(
        ["artifact", "opset", "bytes", "parity max abs error", "tolerance", "parity cases",
         "operators"],
        rows,
    )  # fmt: skip


def _ops(counts: Any) -> str:
    if not isinstance(counts, dict):
        return ""
    return ", ".join(f"{op} x{n}" for op, n in counts.items())
