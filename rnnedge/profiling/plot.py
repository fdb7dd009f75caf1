"""A PNG of p50 latency against sequence length, one line per device, precision and model.

matplotlib is optional (the `plot` extra) and imported only when a plot is drawn, with
the non-interactive Agg backend, so plotting works without a display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from rnnedge._fileio import write_bytes_atomic
from rnnedge.errors import InputError, require
from rnnedge.profiling.catalog import DeviceProfile
from rnnedge.profiling.compare import (
    ModelFilter,
    as_model_filter,
    latest_by_config,
    model_labels,
    p50,
)


def plot_latency(
    profiles: Sequence[DeviceProfile],
    output: str | Path,
    model: str | ModelFilter | None = None,
    batch: int = 1,
) -> Path:
    """Write a PNG of p50 latency (ms, log scale) against sequence length.

    One line per (device, model file, precision, provider, threads), for measurements at
    `batch`; `model` keeps one model by file path, file name or sha256 prefix (see
    `ModelFilter`).

    Raises:
        InputError: no stored measurement matches (where `model` matches none at any
            batch, the message lists the stored models), or `model` is a path to no file.
        MissingDependencyError: matplotlib is not installed (the `plot` extra).
    """
    selected = as_model_filter(model)
    if selected is not None and not any(
        selected.matches(entry) for profile in profiles for entry in profile.measurements
    ):
        raise InputError(selected.describe_miss(profiles))
    series = latency_series(profiles, selected, batch)
    if not series:
        names = ", ".join(p.name for p in profiles) or "none"
        of_model = f" of model {selected.text}" if selected is not None else ""
        raise InputError(
            f"no measurements{of_model} at batch {batch} to plot for devices {names}; run "
            "rnnedge profile MODEL --sweep seq-len=1,10,100 first"
        )
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        for label, points in sorted(series.items()):
            xs, ys = zip(*sorted(points), strict=True)
            axes.plot(xs, ys, marker="o", label=label)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("sequence length (steps)")
        axes.set_ylabel("p50 latency (ms)")
        axes.set_title(f"Latency by device and precision, batch {batch}")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)
    write_bytes_atomic(output, buffer.getvalue())
    return Path(output)


def latency_series(
    profiles: Sequence[DeviceProfile], model: str | ModelFilter | None = None, batch: int = 1
) -> dict[str, list[tuple[int, float]]]:
    """Label -> [(sequence length, p50 ms)] from the latest measurement of each configuration.

    Files of one name with different contents get separate lines, labelled as
    `model_labels` names them.
    """
    selected = as_model_filter(model)
    entries = []
    for profile in profiles:
        for entry in latest_by_config(profile.measurements).values():
            if entry.get("batch") != batch or not isinstance(entry.get("seq_len"), int):
                continue
            if selected is not None and not selected.matches(entry):
                continue
            entries.append((profile.name, entry))
    labels = model_labels(entry for _, entry in entries)
    series: dict[str, list[tuple[int, float]]] = {}
    for device, entry in entries:
        name = labels[(entry.get("model"), entry.get("model_sha256"))]
        label = (
            f"{device} {name} {entry.get('precision')} "
            f"{str(entry.get('provider')).replace('ExecutionProvider', '')} "
            f"{entry.get('threads')}t"
        )
        series.setdefault(label, []).append((entry["seq_len"], p50(entry)))
    return series
