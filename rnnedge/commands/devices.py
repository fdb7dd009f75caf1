"""`rnnedge devices`: list, show, compare, plot and predict from the device profiles."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from rnnedge.commands._common import devices_dir_option, emit_json, verbosity_options

logger = logging.getLogger(__name__)

_DEVICES_DIR = devices_dir_option(
    "Folder of the user's device profiles (they take precedence over the catalog)."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
_MODEL = click.option(
    "--model",
    help="Only this model: a model file (matched by its sha256), a file name as stored, or "
    "a sha256 prefix.",
)


@click.group("devices")
@verbosity_options
def devices_command() -> None:
    """Device profiles: list, show, compare, plot and predict latency."""


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Format rows as a plain-text table with one header line."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("-" * len(lines[0]))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).replace("ExecutionProvider", "")


@devices_command.command("list")
@_DEVICES_DIR
@_JSON
@verbosity_options
def list_command(devices_dir: Path, as_json: bool) -> None:
    """List the known devices with their measurement counts.

    A profile file that cannot be read or validated is left out, and a warning on stderr
    names the file and the error. The exit code stays 0.
    """
    from rnnedge.profiling.compare import device_rows, load_readable_profiles

    profiles, errors = load_readable_profiles(devices_dir)
    for error in errors:
        logger.warning("skipping device profile: %s", error)
    rows = device_rows(profiles)
    if as_json:
        emit_json(rows)
        return
    click.echo(
        table(rows, ["name", "measurements", "providers", "remote", "source", "description"])
    )


@devices_command.command("show")
@click.argument("name")
@_DEVICES_DIR
@_JSON
@verbosity_options
def show_command(name: str, devices_dir: Path, as_json: bool) -> None:
    """Show one device: hardware facts, providers and its latest measurements."""
    from rnnedge.profiling.catalog import load_device
    from rnnedge.profiling.compare import compare_rows

    profile = load_device(name, devices_dir)
    if as_json:
        emit_json({**profile.to_dict(), "path": profile.path})
        return
    click.echo(f"{profile.name}: {profile.data.get('description', '')}  ({profile.path})")
    for key, value in (profile.data.get("hardware") or {}).items():
        click.echo(f"  {key}: {value}")
    click.echo(f"  providers: {', '.join(profile.provider_preference)}")
    if profile.remote:
        click.echo(f"  remote: {profile.remote['ssh']}")
    rows = compare_rows([profile])
    click.echo(
        f"{_plural(len(profile.measurements), 'measurement')}, "
        f"{_plural(len(rows), 'configuration')}"
    )
    if rows:
        click.echo(_measurement_table(rows, _MEASUREMENT_COLUMNS))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _measurement_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Format measurement rows, with a note under the table for each mark it uses.

    Files of one name with different contents get the start of their sha256 after the
    name, and rows recorded with --force-device get a host_mismatch mark.
    """
    from rnnedge.profiling.compare import model_labels

    labels = model_labels(rows)
    display_rows = [{**row, "model": labels[(row["model"], row["model_sha256"])]} for row in rows]
    notes = [
        "throughput_seq_per_s: batch / mean latency, so a few slow calls lower it; "
        "1000 * batch / p50_ms is the rate of a typical call"
    ]
    renamed = sorted({label for label in labels.values() if "@" in label})
    if renamed:
        notes.append(
            f"{renamed[0]}: several files named {renamed[0].split('@')[0]} were measured; "
            "the text after '@' starts the file's sha256, which --model accepts"
        )
    if any(row["host_mismatch"] for row in rows):
        display_rows = [
            {**row, "host_mismatch": "yes" if row["host_mismatch"] else None}
            for row in display_rows
        ]
        columns = [*columns, "host_mismatch"]
        notes.append(
            "host_mismatch yes: recorded with --force-device on a host that does not match "
            "the device's recognize rules, so it may not be the device's latency"
        )
    return "\n".join([table(display_rows, columns), *notes])


_MEASUREMENT_COLUMNS = [
    "model",
    "precision",
    "provider",
    "batch",
    "seq_len",
    "threads",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "throughput_seq_per_s",
    "peak_rss_mb",
]


@devices_command.command("compare")
@click.argument("names", nargs=-1)
@_MODEL
@_DEVICES_DIR
@_JSON
@verbosity_options
def compare_command(
    names: tuple[str, ...], model: str | None, devices_dir: Path, as_json: bool
) -> None:
    """Compare the latest measurements of devices (all known devices by default).

    A --model that matches no measurement is an error (exit code 2) that lists the stored
    model names.
    """
    from rnnedge.errors import InputError
    from rnnedge.profiling.compare import ModelFilter, compare_rows, load_profiles

    selected = ModelFilter.parse(model) if model is not None else None
    profiles = load_profiles(names, devices_dir)
    rows = compare_rows(profiles, selected)
    if not rows and selected is not None:
        raise InputError(selected.describe_miss(profiles))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no measurements; record some with rnnedge profile MODEL")
        return
    click.echo(_measurement_table(rows, ["device", *_MEASUREMENT_COLUMNS]))


@devices_command.command("plot")
@click.argument("names", nargs=-1)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("latency.png"),
    show_default=True,
    help="PNG file to write.",
)
@_MODEL
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size to plot.")
@_DEVICES_DIR
@verbosity_options
def plot_command(
    names: tuple[str, ...], output: Path, model: str | None, batch: int, devices_dir: Path
) -> None:
    """Plot p50 latency against sequence length per device and precision (needs the
    `plot` extra)."""
    from rnnedge.errors import InputError
    from rnnedge.profiling.compare import load_profiles

    if output.suffix.lower() != ".png":
        raise InputError(f"plot output {str(output)!r} must end in .png; the plot is a PNG image")
    from rnnedge.profiling.plot import plot_latency

    written = plot_latency(load_profiles(names, devices_dir), output, model=model, batch=batch)
    click.echo(f"wrote {written}")


@devices_command.command("predict")
@click.argument("name")
@click.option("--cell", type=click.Choice(["lstm", "gru"]), required=True, help="Recurrent cell.")
@click.option("--hidden-size", type=int, required=True, help="Hidden size.")
@click.option("--features", type=int, required=True, help="Input features per time step.")
@click.option("--layers", type=int, default=1, show_default=True, help="Stacked layers.")
@click.option("--bidirectional", is_flag=True, help="Bidirectional layers.")
@click.option("--seq-len", type=int, default=100, show_default=True, help="Sequence length.")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size.")
@click.option(
    "--precision",
    # The precisions that `rnnedge profile` stores. int8-weights comes from --mode weight-int8.
    type=click.Choice(["fp32", "fp16", "int8", "int8-weights"]),
    default="fp32",
    show_default=True,
    help="Precision of the measurements to fit. int8-weights is a weight-only int8 model.",
)
@click.option(
    "--provider",
    help="Execution provider of the measurements to fit: cpu, cuda, tensorrt, arm or a "
    "stored name such as CPUExecutionProvider [default: the most measured].",
)
@click.option("--threads", type=int, help="Threads [default: the most measured].")
@_DEVICES_DIR
@_JSON
@verbosity_options
def predict_command(
    name: str,
    cell: str,
    hidden_size: int,
    features: int,
    layers: int,
    bidirectional: bool,
    seq_len: int,
    batch: int,
    precision: str,
    provider: str | None,
    threads: int | None,
    devices_dir: Path,
    as_json: bool,
) -> None:
    """Predict p50 latency of an unmeasured model from the device's stored measurements."""
    from rnnedge.errors import InputError
    from rnnedge.profiling.catalog import load_device
    from rnnedge.profiling.predict import Architecture, predict_latency

    for label, value in (
        ("--hidden-size", hidden_size),
        ("--features", features),
        ("--layers", layers),
        ("--seq-len", seq_len),
        ("--batch", batch),
    ):
        if value < 1:
            raise InputError(f"{label} must be at least 1, got {value}")
    arch = Architecture(cell, features, hidden_size, layers, bidirectional)
    prediction = predict_latency(
        load_device(name, devices_dir), arch, batch, seq_len, precision, provider, threads
    )
    for warning in prediction.warnings:
        logger.warning("%s", warning)
    if as_json:
        emit_json(
            {
                "device": name,
                "architecture": arch.__dict__,
                "batch": batch,
                "seq_len": seq_len,
                **prediction.as_dict(),
            }
        )
        return
    threads_text = _plural(prediction.group["threads"], "thread")
    click.echo(
        f"predicted p50 {prediction.p50_ms:.4f} ms for {cell} hidden {hidden_size}, "
        f"{_plural(layers, 'layer')}{', bidirectional' if bidirectional else ''}, batch "
        f"{batch}, length {seq_len} on {name} ({prediction.group['provider']}, {precision}, "
        f"{threads_text})"
    )
    # A fit covers two or more hidden sizes, so it always has a held-out error.
    click.echo(
        f"fitted on {_plural(prediction.samples, 'measurement')} of "
        f"{prediction.architectures} architectures; held-out |error| median "
        f"{prediction.held_out_median_error:.1%}, max {prediction.held_out_max_error:.1%}"
    )
