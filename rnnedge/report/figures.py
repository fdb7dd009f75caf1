"""The report's plots, drawn with matplotlib's Agg backend and returned as PNG bytes.

matplotlib is optional (the `plot` extra) and imported only here, when a plot is drawn.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rnnedge.errors import require
from rnnedge.profiling.catalog import DeviceProfile
from rnnedge.profiling.compare import model_labels

# Enough operator types to explain a recurrent model's time; the rest are summed as "other".
TOP_OPERATORS = 6


def _pyplot():
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _png(figure) -> bytes:
    pyplot = _pyplot()
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        pyplot.close(figure)
    return buffer.getvalue()


def p50(entry: dict[str, Any]) -> float | None:
    value = (entry.get("latency_ms") or {}).get("p50_ms")
    return float(value) if isinstance(value, (int, float)) else None


def _label(device: str, entry: dict[str, Any], models: dict[tuple[Any, Any], str]) -> str:
    provider = str(entry.get("provider", "")).removesuffix("ExecutionProvider")
    model = models[(entry.get("model"), entry.get("model_sha256"))]
    return f"{device} · {model} · {entry.get('precision')} · {provider}"


def latency_series(
    profiles: Sequence[DeviceProfile],
) -> tuple[int | None, dict[str, dict[int, tuple[float, float]]]]:
    """Group measurements at one batch size by device, model file, precision and provider.

    Files of one name with different contents are kept apart, under the labels of
    `model_labels`.

    Returns:
        the batch size plotted (1 where measured, else the smallest) and, per label, the
        latest (p50, p99) in ms by sequence length.
    """
    batches = sorted({
        m["batch"] for p in profiles for m in p.measurements if isinstance(m.get("batch"), int)
    })  # fmt: skip
    if not batches:
        return None, {}
    batch = 1 if 1 in batches else batches[0]
    models = model_labels(m for p in profiles for m in p.measurements)
    series: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
    for profile in profiles:
        for entry in profile.measurements:  # later entries replace earlier ones
            median = p50(entry)
            seq_len = entry.get("seq_len")
            if entry.get("batch") != batch or median is None or not isinstance(seq_len, int):
                continue
            tail = (entry.get("latency_ms") or {}).get("p99_ms", median)
            series[_label(profile.name, entry, models)][seq_len] = (median, float(tail))
    return batch, dict(series)


def latency_figure(profiles: Sequence[DeviceProfile]) -> bytes | None:
    """Draw p50 latency against sequence length, p99 as the upper whisker; None if no data."""
    batch, series = latency_series(profiles)
    if not series:
        return None
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(9, 5))
    for label, points in sorted(series.items()):
        lengths = sorted(points)
        medians = [points[n][0] for n in lengths]
        upper = [max(points[n][1] - points[n][0], 0.0) for n in lengths]
        axes.errorbar(
            lengths, medians, yerr=[[0.0] * len(lengths), upper], marker="o", capsize=3,
            label=label,
        )  # fmt: skip
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("sequence length (steps)")
    axes.set_ylabel("latency (ms): p50, whisker to p99")
    axes.set_title(f"Latency against sequence length, batch {batch}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    return _png(figure)


def accuracy_figure(points: Sequence[dict[str, Any]]) -> bytes | None:
    """Draw accuracy against p50 latency, one point per artifact; None if no point.

    Each point: `label`, `accuracy`, `p50_ms`, `model` (lstm or gru), `precision`. Each
    point's label goes beside it where it overlaps no label placed before it (see
    `_place_labels`).
    """
    if not points:
        return None
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(9, 5))
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    for point in points:
        axes.scatter(
            point["p50_ms"], point["accuracy"], s=80,
            marker=markers.get(str(point.get("precision")), "D"),
            label=point["label"],
        )  # fmt: skip
    axes.set_xlabel("p50 latency (ms)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Accuracy against latency per artifact (up and left is better)")
    axes.grid(True, alpha=0.3)
    _place_labels(figure, axes, points)
    return _png(figure)


# Offsets in points from a marker to its label's corner, tried in this order: beside the
# marker, then further above and below it with a line back to the marker.
_LABEL_OFFSETS = [(7, 4), (7, -14), (-7, 4), (-7, -14)] + [
    (dx, sign * step) for step in range(18, 200, 12) for sign in (1, -1) for dx in (7, -7)
]
# Half the width of a marker of size 80 (points squared), in points, with a margin.
_MARKER_HALF = 6


def _place_labels(figure, axes, points: Sequence[dict[str, Any]]) -> None:
    """Label each point at the first offset whose text overlaps no label placed before it.

    Markers close together, such as two artifacts of the same accuracy and about the same
    latency, would otherwise get labels drawn over each other.
    """
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    figure.canvas.draw()  # fixes the axis limits, so that text extents are final
    renderer = figure.canvas.get_renderer()
    half = _MARKER_HALF * figure.dpi / 72
    placed = []  # the markers, then each label placed
    for point in points:
        x, y = axes.transData.transform((point["p50_ms"], point["accuracy"]))
        placed.append(Bbox.from_extents(x - half, y - half, x + half, y + half))
    for point in sorted(points, key=lambda p: (-p["accuracy"], p["p50_ms"])):
        xy = (point["p50_ms"], point["accuracy"])
        for dx, dy in _LABEL_OFFSETS:
            far = abs(dy) > 14
            text = axes.annotate(
                point["label"], xy, textcoords="offset points", xytext=(dx, dy),
                fontsize="small", ha="left" if dx > 0 else "right", va="bottom",
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6} if far else None,
            )  # fmt: skip
            # The text's own extent: an annotation's extent also covers its line.
            text.update_positions(renderer)
            box = Text.get_window_extent(text, renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            text.remove()
        else:  # every offset overlaps: keep the label beside its marker
            text = axes.annotate(
                point["label"], xy, textcoords="offset points", xytext=_LABEL_OFFSETS[0],
                fontsize="small",
            )  # fmt: skip
            text.update_positions(renderer)
            box = Text.get_window_extent(text, renderer)
        placed.append(box)


def operator_figure(rows: Sequence[tuple[str, list[dict[str, Any]]]]) -> bytes | None:
    """Draw the share of node time by operator type, one bar per measurement; None if none.

    Args:
        rows: (label, `top_operators` entries with `op` and `share`) per measurement.
    """
    rows = [(label, ops) for label, ops in rows if ops]
    if not rows:
        return None
    totals: dict[str, float] = defaultdict(float)
    for _, ops in rows:
        for op in ops:
            totals[str(op.get("op"))] += float(op.get("share") or 0.0)
    kept = [name for name, _ in sorted(totals.items(), key=lambda item: -item[1])]
    kept = kept[:TOP_OPERATORS]
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(9, 1.2 + 0.5 * len(rows)))
    labels = [label for label, _ in rows]
    left = [0.0] * len(rows)
    for name in [*kept, "other"]:
        widths = []
        for _, ops in rows:
            if name == "other":
                share = sum(float(o.get("share") or 0.0) for o in ops if o.get("op") not in kept)
            else:
                share = sum(float(o.get("share") or 0.0) for o in ops if o.get("op") == name)
            widths.append(100.0 * share)
        axes.barh(labels, widths, left=left, label=name)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.set_xlabel("share of node time (%)")
    axes.set_xlim(0, 100)
    axes.set_title("Operator time breakdown (ONNX Runtime profiler)")
    axes.legend(fontsize="small", ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    axes.invert_yaxis()
    return _png(figure)
