"""`rnnedge profile`: latency measured and recorded in the device profile."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from rnnedge.commands._common import (
    MAX_RUNS,
    PROVIDER_CHOICES,
    check_threads_option,
    devices_dir_option,
    emit_json,
    layout_option,
    minimum_option,
    positive_seconds_option,
    state_and_feed_arguments,
    state_and_feed_options,
    verbosity,
    verbosity_options,
)

logger = logging.getLogger(__name__)


@click.command("profile")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--device",
    help="Device name, or 'all' for every device with an SSH address "
    "[default: the profile that matches this host].",
)
@click.option(
    "--batch", type=int, callback=minimum_option(1),
    help="Batch size [default: the size that the model's input fixes, else 1].",
)  # fmt: skip
@click.option(
    "--seq-len", type=int, callback=minimum_option(1),
    help="Sequence length [default: the length that the model's input fixes, else 100].",
)  # fmt: skip
@click.option(
    "--provider",
    default="auto",
    show_default=True,
    help="Execution provider: " + ", ".join(PROVIDER_CHOICES) + ".",
)
@click.option(
    "--strict-provider",
    is_flag=True,
    help="Fail instead of falling back when the provider is unavailable.",
)
@click.option(
    "--threads",
    type=int,
    callback=check_threads_option,
    help="CPU threads per operator [default: physical cores].",
)
@state_and_feed_options
@layout_option
@click.option(
    "--warmup", type=int, default=20, show_default=True,
    callback=minimum_option(0, maximum=MAX_RUNS, above="a few hundred untimed runs suffice"),
    help="Untimed runs first.",
)  # fmt: skip
@click.option(
    "--runs", type=int, default=200, show_default=True,
    callback=minimum_option(1),
    help="Timed runs.",
)  # fmt: skip
@click.option(
    "--budget-s", type=float, callback=positive_seconds_option,
    help="Stop timing after this many seconds of runs.",
)  # fmt: skip
@click.option(
    "--sweep",
    multiple=True,
    metavar="AXIS=V1,V2",
    help="Measure every value of an axis: batch, seq-len, threads or precision (precision "
    "selects among the MODELS given). Repeat to sweep the product.",
)
@click.option(
    "--operators",
    type=int,
    default=10,
    show_default=True,
    callback=minimum_option(0, fix="pass 0 to skip the ranking"),
    help="Operator types to rank with ONNX Runtime's profiler (0: skip that pass).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Re-measure and exit with code 3 if latency regressed against the stored "
    "measurements of the same model and configuration; stores nothing.",
)
@click.option(
    "--tolerance",
    type=float,
    default=0.10,
    show_default=True,
    callback=minimum_option(0),
    help="With --check: the smallest relative slowdown that fails, raised to the "
    "measurement noise where that is larger.",
)
@click.option("--remote", metavar="USER@HOST", help="Profile on this board over SSH.")
@click.option(
    "--remote-rnnedge",
    default="rnnedge",
    show_default=True,
    help="The rnnedge command on the board (a path, or a name on its PATH).",
)
@click.option("--ssh-port", type=int, help="SSH port of the board.")
@click.option(
    "--ssh-config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An ssh_config file to use instead of ~/.ssh/config.",
)
@devices_dir_option("Folder of the device profiles to update.")
@click.option(
    "--force-device",
    is_flag=True,
    help="Record under --device even when this host does not match that device's "
    "recognize rules; each measurement is marked host_mismatch: true.",
)
@click.option("--no-store", is_flag=True, help="Measure only; leave the device profile as it is.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
@verbosity_options
def profile_command(
    models: tuple[Path, ...],
    device: str | None,
    batch: int | None,
    seq_len: int | None,
    provider: str,
    strict_provider: bool,
    threads: int | None,
    states: tuple[str, ...],
    feeds: tuple[str, ...],
    layout: str | None,
    warmup: int,
    runs: int,
    budget_s: float | None,
    sweep: tuple[str, ...],
    operators: int,
    check: bool,
    tolerance: float,
    remote: str | None,
    remote_rnnedge: str,
    ssh_port: int | None,
    ssh_config: Path | None,
    devices_dir: Path,
    force_device: bool,
    no_store: bool,
    as_json: bool,
) -> None:
    """Measure latency and record it in devices/<device>.yaml."""
    _reject_swept_options(sweep, {"batch": batch, "seq_len": seq_len, "threads": threads})
    if runs > MAX_RUNS and budget_s is None:
        from rnnedge.errors import InputError

        # With --budget-s, a large count means "as many runs as the budget allows".
        raise InputError(
            f"--runs must be at most {MAX_RUNS:,} without --budget-s, got {runs:,}; bound a "
            "long measurement with --budget-s"
        )
    inputs = {**state_and_feed_arguments(states, feeds), "layout": layout}
    progress_shown = verbosity() >= 0
    if remote is not None or device == "all":
        remote_options = {
            "provider": provider,
            "batch": batch,
            "seq_len": seq_len,
            "threads": threads,
            "warmup": warmup,
            "runs": runs,
            "budget_s": budget_s,
            "operators": operators,
            "strict_provider": strict_provider,
            **inputs,
            "user_dir": devices_dir,
            "on_progress": _remote_progress if progress_shown else None,
        }
        if remote is not None:
            from rnnedge.profiling.remote import RemoteTarget

            target = RemoteTarget(remote, ssh_port, remote_rnnedge, ssh_config)
            _profile_remote(
                models, target, device, sweep, check, tolerance, no_store, as_json, remote_options
            )
        else:
            _profile_fleet(
                models, ssh_config, sweep, check, tolerance, no_store, as_json, remote_options
            )
        return

    from rnnedge.profiling.sweeps import parse_sweep, sweep_points
    from rnnedge.runtime.providers import parse_provider

    axes = parse_sweep(sweep)
    points = sweep_points(models, axes, batch=batch, seq_len=seq_len, threads=threads)
    options: dict[str, Any] = {
        "size_options": _size_options(sweep, batch, seq_len),
        "provider": parse_provider(provider),
        "warmup": warmup,
        "runs": runs,
        "budget_s": budget_s,
        "operators": operators,
        "strict_provider": strict_provider,
        "force_device": force_device,
        **inputs,
    }
    progress = _progress if len(points) > 1 and progress_shown else None
    # Read before the first timed run, so that the load does not count the measurement, but
    # logged beside the first result, so that an input error is not preceded by it.
    load_warning = _host_load_warning()
    if check:
        _check(points, device, tolerance, devices_dir, progress, as_json, options, load_warning)
        return
    from rnnedge.profiling.sweeps import run_sweep

    measured: list[Any] = []

    def on_point(done: int, total: int, point: Any, result: Any) -> None:
        # Each point is printed as it completes, so an interrupted sweep shows its results.
        measured.append(result)
        if load_warning is not None and done == 1:
            logger.warning("%s", load_warning)
        if not as_json:
            _print_result(result)
        if progress is not None:
            progress(done, total, point, result, keep_line=not as_json)

    # One document for a single run, a list where a sweep or several models make points.
    as_list = len(points) > 1 or bool(sweep)
    try:
        run_sweep(
            points, device, store=not no_store, user_dir=devices_dir, on_point=on_point, **options
        )
    except KeyboardInterrupt:
        if as_json and as_list:
            emit_json([_document(r) for r in measured])
        raise _interrupted(measured, len(points)) from None
    if as_json:
        documents = [_document(r) for r in measured]
        emit_json(documents if as_list else documents[0])


def _host_load_warning() -> str | None:
    """Return a warning where the 1-minute load average exceeds the logical cores, else None.

    Other processes then compete with the timed runs for the CPU, which inflates the tail
    of the latency distribution far more than the median. The load is read as `rnnedge
    doctor` reads it, from `rnnedge.host.load_average_1min`.
    """
    from rnnedge.host import load_average_1min

    load = load_average_1min()
    cores = os.cpu_count()  # logical cores, as `rnnedge.host.cpu_info` records them
    if load is None or not cores or load <= cores:
        return None
    return (
        f"load average {load:.2f} over the last minute exceeds the {cores} logical cores of "
        "this host, so other processes compete for the CPU and inflate the tail latency "
        "(p99, max); rerun on an idle host (rnnedge doctor checks the load)"
    )


def _interrupted(measured: list[Any], total: int) -> Exception:
    """Build the error for a Ctrl-C during measuring: how many points were kept, and where."""
    from rnnedge.errors import RunInterruptedError

    if total == 1:
        return RunInterruptedError(
            "interrupted before the measurement finished; nothing was stored"
        )
    done = f"interrupted after {len(measured)} of {total} points"
    stored = measured[-1].profile_path if measured else None
    if not measured:
        return RunInterruptedError(f"{done}; nothing was stored")
    if stored is None:
        return RunInterruptedError(f"{done}; nothing was stored (--no-store)")
    kept = "that point is" if len(measured) == 1 else f"those {len(measured)} are"
    return RunInterruptedError(f"{done}; {kept} stored in {stored}")


def _size_options(sweep: tuple[str, ...], batch: int | None, seq_len: int | None) -> dict[str, str]:
    """Name the option that set the batch size and the sequence length, where one did."""
    from rnnedge.profiling.sweeps import parse_sweep

    options = {}
    for spec in sweep:
        axis = next(iter(parse_sweep([spec])))
        if axis in ("batch", "seq_len"):
            options[axis] = f"--sweep {spec}"
    if batch is not None:
        options.setdefault("batch", "--batch")
    if seq_len is not None:
        options.setdefault("seq_len", "--seq-len")
    return options


def _reject_swept_options(sweep: tuple[str, ...], values: dict[str, Any]) -> None:
    """Raise when an option given on the command line sets an axis that --sweep also sets.

    The sweep's values would replace the option's, so the option would be ignored.
    """
    from rnnedge.errors import InputError
    from rnnedge.profiling.sweeps import parse_sweep

    context = click.get_current_context()
    for axis, swept in parse_sweep(sweep).items():
        if axis not in values:
            continue  # precision has no option of its own
        if context.get_parameter_source(axis) is click.core.ParameterSource.DEFAULT:
            continue
        option = "--" + axis.replace("_", "-")
        value = values[axis]
        fix = (
            f"drop {option}, since the sweep already measures {value}"
            if value in swept
            else f"drop {option}, or add {value} to the sweep"
        )
        raise InputError(
            f"{option} {value} conflicts with --sweep {option[2:]}={','.join(map(str, swept))}, "
            f"which sets the {_AXIS_WORDS[axis]} of every point; {fix}"
        )


_AXIS_WORDS = {"batch": "batch size", "seq_len": "sequence length", "threads": "thread count"}


def _progress(done: int, total: int, point: Any, result: Any, keep_line: bool = False) -> None:
    """Draw the sweep's progress bar on stderr; `keep_line` ends each bar with a newline."""
    measured = result.measurement
    point = dataclasses.replace(point, batch=measured["batch"], seq_len=measured["seq_len"])
    label = point.label(measured.get("threads"))
    _draw_progress(done, total, f"{label}: p50 {result.latency.p50_ms:.4f} ms", keep_line)


def _remote_progress(done: int, total: int, label: str) -> None:
    # Points measured on a board are printed when the whole sweep has returned, and boards
    # of a fleet report at once, so each bar keeps its own line.
    _draw_progress(done, total, label, keep_line=True)


def _draw_progress(done: int, total: int, label: str, keep_line: bool) -> None:
    width = 24
    filled = width * done // total
    bar = "#" * filled + "-" * (width - filled)
    end = "\r" if sys.stderr.isatty() and done < total and not keep_line else "\n"
    click.echo(f"[{bar}] {done}/{total} {label}", err=True, nl=False)
    click.echo(end, err=True, nl=False)


def _document(result: Any) -> dict[str, Any]:
    return {"device": result.device, "profile": result.profile_path, **result.measurement}


def _count(number: Any, noun: str) -> str:
    """Return "1 run" or "3 runs"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _print_result(result: Any) -> None:
    from rnnedge.profiling.timing import MIN_CI_COUNT

    m = result.measurement
    stats = result.latency
    mismatch = " (host_mismatch: measured on another machine)" if m.get("host_mismatch") else ""
    click.echo(
        f"{m['model']} on {result.device} ({m['provider']}, {m['precision']}, batch "
        f"{m['batch']}, length {m['seq_len']}, {_count(m['threads'], 'thread')}){mismatch}"
    )
    if stats.count >= MIN_CI_COUNT:
        interval = f"95% CI {stats.p50_ci_low_ms:.4f} to {stats.p50_ci_high_ms:.4f}"
    else:
        interval = f"95% CI n/a below {MIN_CI_COUNT} runs"
    click.echo(
        f"latency ms: p50 {stats.p50_ms:.4f} ({interval})  p90 {stats.p90_ms:.4f}  "
        f"p99 {stats.p99_ms:.4f}  "
        f"max {stats.max_ms:.4f}  mean {stats.mean_ms:.4f}  std {stats.std_ms:.4f}  "
        f"({_count(stats.count, 'run')} after {m['warmup']} warm-up)"
    )
    click.echo(
        f"throughput {m['throughput_seq_per_s']:,.1f} sequences/s; cold start "
        f"{m['cold_start_ms']:.1f} ms; peak RSS {m.get('peak_rss_mb')} MB"
    )
    top = m.get("top_operators") or []
    if top:
        ranked = ", ".join(f"{o['op']} {o['share']:.0%}" for o in top[:5])
        click.echo(f"top operators: {ranked}")
    if result.profile_path is not None:
        click.echo(f"recorded in {result.profile_path}")


def _check(
    points: list[Any],
    device: str | None,
    tolerance: float,
    devices_dir: Path,
    progress: Any,
    as_json: bool,
    options: dict[str, Any],
    load_warning: str | None = None,
) -> None:
    from rnnedge.errors import RunInterruptedError
    from rnnedge.profiling.check import check_points

    try:
        checked = check_points(points, device, tolerance, devices_dir, progress, **options)
    except KeyboardInterrupt:
        raise RunInterruptedError(
            "interrupted; --check stores nothing, so the device profile is unchanged"
        ) from None
    if load_warning is not None:
        logger.warning("%s", load_warning)
    _report_checks(checked, as_json)


def _report_checks(checked: list[tuple[Any, Any]], as_json: bool) -> None:
    """Print each checked configuration; raise CheckFailedError when any regressed."""
    from rnnedge.errors import CheckFailedError

    if as_json:
        emit_json([_check_document(r, c) for r, c in checked])
    else:
        for result, outcome in checked:
            _print_check(result, outcome)
    failed = [r for r, c in checked if c.regressed]
    if failed:
        raise CheckFailedError(_regression_message(len(failed), len(checked), as_json))


def _regression_message(regressed: int, total: int, as_json: bool) -> str:
    """Describe a failed check and where its details are: the REGRESSED lines printed
    above, or under --json the configurations on stdout whose check.regressed is true."""
    where = (
        'see the configurations with "regressed": true under "check" in the JSON output'
        if as_json
        else "see the REGRESSED lines above"
    )
    return (
        f"latency regressed in {regressed} of {total} configurations beyond the recorded "
        f"noise; {where}"
    )


def _check_document(result: Any, outcome: Any) -> dict[str, Any]:
    return {**_document(result), "check": outcome.as_dict()}


def _print_check(result: Any, outcome: Any) -> None:
    m = result.measurement
    verdict = "REGRESSED" if outcome.regressed else "ok"
    click.echo(
        f"{verdict}: {m['model']} batch {m['batch']} length {m['seq_len']} on "
        f"{result.device}: p50 {outcome.new_p50_ms:.4f} ms vs {outcome.baseline_p50_ms:.4f}"
        f" ms stored ({outcome.change:+.1%}, threshold +{outcome.threshold:.1%})"
    )
    if not outcome.remeasured:
        return
    first, second = outcome.measured_p50s_ms
    if outcome.regressed:
        click.echo(
            f"  confirmed by a second measurement: p50 {first:.4f} ms, then {second:.4f} ms; "
            "the better of the two is shown"
        )
    else:
        click.echo(
            f"  a first measurement, p50 {first:.4f} ms, exceeded the threshold, but a second, "
            f"p50 {second:.4f} ms, did not, so it is not a regression; the better of the two "
            "is shown"
        )


def _profile_remote(
    models: tuple[Path, ...],
    target: Any,
    device: str | None,
    sweep: tuple[str, ...],
    check: bool,
    tolerance: float,
    no_store: bool,
    as_json: bool,
    options: dict[str, Any],
) -> None:
    from rnnedge.profiling.remote import check_remote, sweep_remote

    if check:
        checked = check_remote(models, target, sweep, device, tolerance, **options)
        _report_checks(checked, as_json)
        return
    results = sweep_remote(models, target, sweep, device, store=not no_store, **options)
    if as_json:
        documents = [_document(r) for r in results]
        # The same shape as on this host: one document, or a list for a sweep.
        emit_json(documents[0] if len(documents) == 1 and not sweep else documents)
        return
    for result in results:
        _print_result(result)


def _profile_fleet(
    models: tuple[Path, ...],
    ssh_config: Path | None,
    sweep: tuple[str, ...],
    check: bool,
    tolerance: float,
    no_store: bool,
    as_json: bool,
    options: dict[str, Any],
) -> None:
    from rnnedge.errors import CheckFailedError
    from rnnedge.profiling.remote import RemoteError, profile_fleet

    outcomes = profile_fleet(
        models, ssh_config=ssh_config, sweep=sweep, check=check, tolerance=tolerance,
        store=not no_store, **options,
    )  # fmt: skip
    failures = [(name, o) for name, o in outcomes if isinstance(o, Exception)]
    results = [r for _, o in outcomes if not isinstance(o, Exception) for r in o]
    if as_json:
        documents = [
            {"device": name, "error": str(o)} for name, o in outcomes if isinstance(o, Exception)
        ]
        documents += [_check_document(*r) if check else _document(r) for r in results]
        emit_json(sorted(documents, key=lambda d: d["device"]))
    else:
        for name, outcome in failures:
            click.echo(f"{name}: failed: {outcome}")
        for result in results:
            if check:
                _print_check(*result)
            else:
                _print_result(result)
    regressed = sum(1 for r in results if check and r[1].regressed)
    if failures:
        raise RemoteError(
            f"profiling failed on {len(failures)} of {len(outcomes)} devices: "
            + "; ".join(f"{name}: {exc}" for name, exc in failures)
            + (f"; latency regressed in {regressed} configurations" if regressed else "")
        )
    if regressed:
        raise CheckFailedError(_regression_message(regressed, len(results), as_json))
