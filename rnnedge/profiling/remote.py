"""Profiling on a board over SSH: single runs, sweeps, checks and fleets of boards.

The models are copied with `scp` into a fresh temporary folder on the board, the board's
own rnnedge measures them (`rnnedge profile --json --no-store`), the folder is removed,
and the measurements are stored locally or compared with stored ones. The transport and
its protection against injected options and shell words are in `rnnedge.profiling.ssh`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rnnedge.errors import InputError
from rnnedge.profiling.catalog import (
    SCHEMA_VERSION,
    USER_DEVICES_DIR,
    DeviceProfile,
    catalog_names,
    known_names,
    load_device,
    validate,
)
from rnnedge.profiling.check import confirm_regression, repeat_delay_s
from rnnedge.profiling.compare import (
    DEFAULT_TOLERANCE,
    CheckResult,
    check_regression,
    config_key,
    require_measured_model,
    stored_baseline,
)
from rnnedge.profiling.profile import ProfileResult, file_sha256
from rnnedge.profiling.ssh import (
    RemoteError,
    RemoteTarget,
    check_address,
    run_command,
    scp_command,
    ssh_command,
)
from rnnedge.profiling.store import add_measurements
from rnnedge.profiling.sweeps import parse_sweep, sweep_points
from rnnedge.profiling.timing import LatencyStats
from rnnedge.runtime.session import open_model_file

logger = logging.getLogger(__name__)

_REMOTE_DIR = re.compile(r"^/tmp/rnnedge-profile\.[A-Za-z0-9]+$")
DEFAULT_TIMEOUT_S = 900.0
# A progress line of `rnnedge profile` on stderr: "[####----] 2/8 LABEL".
_PROGRESS_LINE = re.compile(r"^\[[#-]*\] (\d+)/(\d+) (.+)$")


# One result of `profile_fleet`: a measurement, or a measurement and its check.
FleetResult = ProfileResult | tuple[ProfileResult, CheckResult]

__all__ = [
    "RemoteError",
    "RemoteTarget",
    "check_address",
    "check_remote",
    "measure_remote",
    "profile_fleet",
    "profile_remote",
    "remote_devices",
    "scp_command",
    "ssh_command",
    "sweep_remote",
]


def profile_remote(
    model: str | Path,
    target: RemoteTarget,
    device: str | DeviceProfile | None = None,
    store: bool = True,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    **options: Any,
) -> ProfileResult:
    """Profile `model` on the board at `target` and store the measurement locally.

    Args:
        device: the local device profile to store under; by default the device the board
            recognizes itself as (a new profile from its fingerprint if none matches).
        options: the measuring options of `sweep_remote` (provider, batch, seq_len, ...).
    """
    return sweep_remote([model], target, (), device, store, user_dir, **options)[0]


def sweep_remote(
    models: Sequence[str | Path],
    target: RemoteTarget,
    sweep: Sequence[str] = (),
    device: str | DeviceProfile | None = None,
    store: bool = True,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    on_progress: Callable[[int, int, str], None] | None = None,
    **options: Any,
) -> list[ProfileResult]:
    """Measure every point of a sweep in one rnnedge run on the board; store them locally.

    The sweep specifications (`seq-len=1,10,100`, as `rnnedge profile --sweep` takes them)
    are checked here first, then passed to the board's rnnedge. The measurements are stored
    together once the board has measured them all, so a sweep that fails or is interrupted
    stores nothing.

    Args:
        device: as for `profile_remote`.
        on_progress: called with (done, total, label) as the board reports each point of a
            sweep with more than one point.
        options: provider, batch, seq_len, threads, warmup, runs, budget_s, operators,
            strict_provider and timeout_s, as `rnnedge profile` takes them.
    """
    profile, measurements = measure_remote(
        models, target, sweep, device, user_dir, on_progress, **options
    )
    written = add_measurements(profile, measurements, user_dir) if store else None
    return [ProfileResult(profile.name, m, _latency(m), written) for m in measurements]


def check_remote(
    models: Sequence[str | Path],
    target: RemoteTarget,
    sweep: Sequence[str] = (),
    device: str | DeviceProfile | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    on_progress: Callable[[int, int, str], None] | None = None,
    *,
    sleep: Callable[[float], Any] = time.sleep,
    **options: Any,
) -> list[tuple[ProfileResult, CheckResult]]:
    """Re-measure on the board and compare each point with its stored measurements.

    The comparison is the one `rnnedge profile --check` makes on this host (see
    `rnnedge.profiling.compare.check_regression`); nothing is stored. As on this host, a
    point over its threshold counts as regressed only if a second measurement is over too
    (`rnnedge.profiling.check.confirm_regression`), taken after a pause as long as the
    first (`repeat_delay_s`, spent in `sleep`). The board measures the whole request again,
    because it takes the points of a sweep together.

    Where `device` names the local profile, each model must have a stored measurement in
    it before anything is copied to the board. The full configuration of each point is
    compared with the stored ones after the board returns its measurements.

    Raises:
        InputError: a point has no stored baseline in the local device profile.
    """
    local = load_device(device, user_dir) if isinstance(device, str) else device
    if local is not None:
        for model in models:
            path = open_model_file(model)
            require_measured_model(path.name, file_sha256(path), local, user_dir)
    started = time.perf_counter()
    profile, measurements = measure_remote(
        models, target, sweep, local, user_dir, on_progress, **options
    )
    elapsed_s = time.perf_counter() - started
    baselines = [stored_baseline(m, profile, user_dir) for m in measurements]
    outcomes = [
        check_regression(m, baseline, tolerance)
        for m, baseline in zip(measurements, baselines, strict=True)
    ]
    if any(outcome.regressed for outcome in outcomes):
        delay_s = repeat_delay_s(elapsed_s)
        logger.info(
            "%s: a point is over its threshold; measuring again in %.1f s",
            target.address, delay_s,
        )  # fmt: skip
        sleep(delay_s)
        _, repeats = measure_remote(
            models, target, sweep, profile, user_dir, on_progress, **options
        )
        repeated = {config_key(m): m for m in repeats}
        for index, outcome in enumerate(outcomes):
            repeat = repeated.get(config_key(measurements[index]))
            if not outcome.regressed or repeat is None:
                continue
            repeat_outcome = check_regression(repeat, baselines[index], tolerance)
            chosen, outcomes[index] = confirm_regression(outcome, repeat_outcome)
            measurements[index] = (measurements[index], repeat)[chosen]
    return [
        (ProfileResult(profile.name, m, _latency(m), None), outcome)
        for m, outcome in zip(measurements, outcomes, strict=True)
    ]


def measure_remote(
    models: Sequence[str | Path],
    target: RemoteTarget,
    sweep: Sequence[str] = (),
    device: str | DeviceProfile | None = None,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    on_progress: Callable[[int, int, str], None] | None = None,
    provider: str = "auto",
    batch: int | None = None,
    seq_len: int | None = None,
    threads: int | None = None,
    warmup: int = 20,
    runs: int = 200,
    budget_s: float | None = None,
    operators: int = 10,
    strict_provider: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    state_pairs: Sequence[tuple[str, str]] | None = None,
    feeds: Mapping[str, str] | None = None,
    layout: str | None = None,
) -> tuple[DeviceProfile, list[dict[str, Any]]]:
    """Measure on the board and return the local device profile and the measurements.

    Each measurement names the local model file and carries `remote: <address>`. Nothing
    is stored. `state_pairs`, `feeds` and `layout` are passed on as `--state`, `--feed`
    and `--layout`; a feed must be given as numbers, because a .npy file on this host is
    not copied to the board.
    """
    paths = [open_model_file(model) for model in models]
    # Checked here, so a bad sweep or precision fails before any SSH connection.
    axes = parse_sweep(sweep)
    total = len(sweep_points(paths, axes, batch, seq_len, threads))
    local_profile = load_device(device, user_dir) if isinstance(device, str) else device
    # The copies on the board are model0.onnx, model1.onnx, ... These map them to local files.
    local_paths = {f"model{index}.onnx": path for index, path in enumerate(paths)}
    local_names = {remote: path.name for remote, path in local_paths.items()}
    args = ["--json", "--no-store", "--provider", str(provider)]
    # An option for a swept axis is left out, because rnnedge profile rejects both at once.
    # A size of None is left to the board's rnnedge: the model's fixed size, or the default.
    if "batch" not in axes and batch is not None:
        args += ["--batch", str(batch)]
    if "seq_len" not in axes and seq_len is not None:
        args += ["--seq-len", str(seq_len)]
    args += ["--warmup", str(warmup), "--runs", str(runs), "--operators", str(operators)]
    if threads is not None and "threads" not in axes:
        args += ["--threads", str(threads)]
    if budget_s is not None:
        args += ["--budget-s", str(budget_s)]
    if strict_provider:
        args.append("--strict-provider")
    for spec in sweep:
        args += ["--sweep", spec]
    args += _input_args(state_pairs or (), feeds or {})
    if layout is not None:
        args += ["--layout", layout]
    if local_profile is not None and local_profile.name in catalog_names():
        args += ["--device", local_profile.name]

    def forward(line: str) -> None:
        # The board's rnnedge draws one progress line per point and logs "WARNING: ...".
        progress = _PROGRESS_LINE.match(line)
        if progress is not None:
            name, _, rest = progress.group(3).partition(" ")
            label = f"{local_names.get(name, name)} {rest} on {target.address}"
            if on_progress is not None:
                on_progress(int(progress.group(1)), int(progress.group(2)), label)
        elif line.startswith("WARNING: "):
            logger.warning("%s: %s", target.address, line.removeprefix("WARNING: "))

    output = _profile_on_board(target, paths, args, forward, timeout_s)
    documents = _parse(output, target)
    if len(documents) != total:
        raise RemoteError(
            f"rnnedge on {target.address} returned {len(documents)} measurements for the "
            f"{total} sweep points; check that the board runs the same rnnedge version"
        )
    measurements = [_localize(d, local_paths, target) for d in documents]
    if local_profile is None:
        local_profile = _profile_for_board(
            str(documents[0].get("device")), measurements[0], target, user_dir
        )
    return local_profile, measurements


def _input_args(state_pairs: Sequence[tuple[str, str]], feeds: Mapping[str, str]) -> list[str]:
    """Spell the state pairs and constant inputs as the board's `rnnedge profile` takes them."""
    args = []
    for state_in, state_out in state_pairs:
        args += ["--state", f"{state_in}={state_out}"]
    for name, value in feeds.items():
        if not isinstance(value, str) or value.lower().endswith(".npy"):
            raise InputError(
                f"--feed {name}={value} cannot be sent to the board, which does not have "
                "that file; give the value as numbers, or run rnnedge profile on the board"
            )
        args += ["--feed", f"{name}={value}"]
    return args


def _profile_on_board(
    target: RemoteTarget,
    paths: list[Path],
    options: list[str],
    on_stderr_line: Callable[[str], None],
    timeout_s: float,
) -> str:
    """Copy `paths` into a fresh folder on the board, profile them there, remove the folder.

    Returns the stdout of `rnnedge profile COPIES OPTIONS`. The copies are `model0.onnx`,
    `model1.onnx`, ... in the order of `paths`.
    """
    remote_dir = run_command(
        ssh_command(target, ["mktemp", "-d", "/tmp/rnnedge-profile.XXXXXXXX"]),
        target,
        "mktemp",
        timeout_s,
    ).strip()
    if not _REMOTE_DIR.match(remote_dir):
        raise RemoteError(
            f"mktemp on {target.address} returned {remote_dir[:80]!r}, not a folder under /tmp"
        )
    try:
        copies = [f"{remote_dir}/model{index}.onnx" for index in range(len(paths))]
        for path, copy in zip(paths, copies, strict=True):
            run_command(scp_command(target, path, copy), target, "copying the model", timeout_s)
        command = ssh_command(target, [target.rnnedge, "profile", *copies, *options])
        return run_command(command, target, "rnnedge profile", timeout_s, on_stderr_line)
    finally:
        try:
            run_command(ssh_command(target, ["rm", "-rf", "--", remote_dir]), target, "cleanup", 60)
        except RemoteError as exc:
            logger.warning("could not remove %s on %s: %s", remote_dir, target.address, exc)


def _parse(output: str, target: RemoteTarget) -> list[dict[str, Any]]:
    try:
        document = json.loads(output)
    except json.JSONDecodeError as exc:
        raise RemoteError(
            f"rnnedge on {target.address} printed no JSON measurement (is it an rnnedge with "
            "--json and --no-store? upgrade it on the board)"
        ) from exc
    documents = document if isinstance(document, list) else [document]
    if not documents or not all(isinstance(d, dict) and "latency_ms" in d for d in documents):
        raise RemoteError(f"rnnedge on {target.address} printed JSON without 'latency_ms'")
    return documents


def _localize(
    document: dict[str, Any], local_paths: dict[str, Path], target: RemoteTarget
) -> dict[str, Any]:
    """Turn a board's JSON document into a measurement of the local model file."""
    measurement = {k: v for k, v in document.items() if k not in ("device", "profile")}
    path = local_paths.get(str(measurement.get("model")))
    if path is None:
        raise RemoteError(
            f"rnnedge on {target.address} measured an unknown model {measurement.get('model')!r}"
        )
    if measurement.get("model_sha256") != file_sha256(path):
        raise RemoteError(
            f"the model measured on {target.address} has another sha256 than {path}; the copy "
            "was damaged, rerun the command"
        )
    measurement["model"] = path.name
    measurement["remote"] = target.address
    return measurement


def _latency(measurement: dict[str, Any]) -> LatencyStats:
    known = {f.name for f in dataclasses.fields(LatencyStats)}
    return LatencyStats(**{k: v for k, v in measurement["latency_ms"].items() if k in known})


def _profile_for_board(
    name: str,
    measurement: dict[str, Any],
    target: RemoteTarget,
    user_dir: str | os.PathLike[str],
) -> DeviceProfile:
    if name in known_names(user_dir):
        return load_device(name, user_dir)
    cpu = measurement.get("host", {}).get("cpu", {})
    data = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "description": f"{cpu.get('model', 'unknown CPU')} ({cpu.get('arch', '?')}), created "
        f"from the fingerprint of {target.address}",
        "hardware": {
            "cpu": str(cpu.get("model", "unknown")),
            "cores": cpu.get("physical_cores"),
            "source": f"measured on {target.address} by rnnedge",
        },
        "recognize": {"arch": [str(cpu.get("arch", ""))], "cpu_model": [str(cpu.get("model"))]},
        "providers": {"preference": ["cpu"], "options": {}},
        "remote": {"ssh": target.address},
    }
    return validate(data, f"new profile {name!r} from {target.address}")


def remote_devices(user_dir: str | os.PathLike[str] = USER_DEVICES_DIR) -> list[DeviceProfile]:
    """Load every known device whose profile names an SSH address."""
    found = [load_device(name, user_dir) for name in known_names(user_dir)]
    return [profile for profile in found if profile.remote]


def profile_fleet(
    models: str | Path | Sequence[str | Path],
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    ssh_config: Path | None = None,
    max_workers: int = 8,
    sweep: Sequence[str] = (),
    check: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    store: bool = True,
    on_progress: Callable[[int, int, str], None] | None = None,
    **options: Any,
) -> list[tuple[str, list[FleetResult] | InputError]]:
    """Profile `models` on every device with an SSH address, in parallel.

    Returns (device, results or the error it failed with) per device, in name order. A
    result is a `ProfileResult`, or with `check` a (`ProfileResult`, `CheckResult`) pair as
    `check_remote` returns them. The measurements of the devices that succeeded are stored
    (unless `check` or not `store`) even when others fail.
    """
    listed = [models] if isinstance(models, str | Path) else list(models)
    # Bad input fails once here, before any connection, not once per device.
    paths = [open_model_file(model) for model in listed]
    parse_sweep(sweep)
    devices = remote_devices(user_dir)
    if not devices:
        raise InputError(
            "no device in devices/ names an SSH address; add 'remote: {ssh: user@host}' "
            "(schema_version 2) to a device profile"
        )

    def one(profile: DeviceProfile) -> list[FleetResult]:
        remote = profile.remote or {}
        target = RemoteTarget(
            remote["ssh"], remote.get("port"), remote.get("rnnedge", "rnnedge"), ssh_config
        )
        common = {"device": profile, "user_dir": user_dir, "on_progress": on_progress}
        if check:
            return list(
                check_remote(paths, target, sweep, tolerance=tolerance, **common, **options)
            )
        return list(sweep_remote(paths, target, sweep, store=store, **common, **options))

    outcomes: list[tuple[str, list[FleetResult] | InputError]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {pool.submit(one, profile): profile.name for profile in devices}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                outcomes.append((name, future.result()))
            except InputError as exc:
                # A missing baseline under --check raises InputError too, so only that
                # device fails.
                logger.warning("profiling %s failed: %s", name, exc)
                outcomes.append((name, exc))
    return sorted(outcomes, key=lambda item: item[0])
