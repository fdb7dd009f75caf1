"""Profiling on a board over SSH with the system OpenSSH client.

The model is copied with `scp` into a fresh temporary folder on the board, the board's own
rnnedge measures it (`rnnedge profile --json --no-store`), the folder is removed, and the
measurement is stored locally. Using the system client means the user's `~/.ssh/config`,
keys and agent apply.

Commands are argument lists run without a local shell. `--` ends the options before the
host, and an address starting with '-' is rejected, so a host name cannot become an ssh
option. The command line run on the board goes through the remote user's shell, so every
word of it is quoted with `shlex.quote`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
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
from rnnedge.profiling.profile import ProfileResult, file_sha256
from rnnedge.profiling.store import add_measurements
from rnnedge.profiling.timing import LatencyStats
from rnnedge.runtime.session import open_model_file

logger = logging.getLogger(__name__)

# [user@]host: a host name, alias or IPv4 address; IPv6 literals and ports go in ssh_config.
_ADDRESS = re.compile(r"^(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?[A-Za-z0-9_][A-Za-z0-9._-]*$")
_REMOTE_DIR = re.compile(r"^/tmp/rnnedge-profile\.[A-Za-z0-9]+$")
DEFAULT_TIMEOUT_S = 900.0


class RemoteError(InputError):
    """The board could not be reached, or its rnnedge failed."""


@dataclass(frozen=True)
class RemoteTarget:
    """The SSH address of a board and the rnnedge command on it.

    Args:
        address: `[user@]host`, as `ssh` takes it (a `Host` alias of ssh_config works).
        port: the SSH port, when not the default or the one ssh_config sets.
        rnnedge: the rnnedge command on the board; a leading `~/` is the remote home.
        ssh_config: an ssh_config file to use instead of `~/.ssh/config` (`ssh -F`).
    """

    address: str
    port: int | None = None
    rnnedge: str = "rnnedge"
    ssh_config: Path | None = None

    def __post_init__(self) -> None:
        check_address(self.address)
        if self.port is not None and not 0 < self.port < 65536:
            raise InputError(f"SSH port {self.port} is outside 1 to 65535")
        if not self.rnnedge or any(c in self.rnnedge for c in "\n\r\0"):
            raise InputError(f"invalid remote rnnedge command {self.rnnedge!r}; pass a path")


def check_address(address: str) -> str:
    """Return `address` if it is a safe `[user@]host`; raise InputError otherwise."""
    if address.startswith("-"):
        raise InputError(f"invalid remote address {address!r}: it must not start with '-'")
    if not _ADDRESS.fullmatch(address):
        raise InputError(
            f"invalid remote address {address!r}; use [user@]host with letters, digits, '.', "
            "'-' or '_' (put IPv6 addresses and other settings in ~/.ssh/config under a Host "
            "alias)"
        )
    return address


def _client_options(target: RemoteTarget, port_flag: str) -> list[str]:
    options = ["-o", "BatchMode=yes"]
    if target.ssh_config is not None:
        options += ["-F", str(target.ssh_config)]
    if target.port is not None:
        options += [port_flag, str(target.port)]
    return options


def _remote_word(word: str) -> str:
    # `~/x` keeps its meaning on the board: "$HOME" expands there, the rest is quoted.
    if word.startswith("~/"):
        return '"$HOME"/' + shlex.quote(word[2:])
    return shlex.quote(word)


def ssh_command(target: RemoteTarget, remote_args: list[str]) -> list[str]:
    """Build the local argument list that runs `remote_args` on the board."""
    line = " ".join(_remote_word(word) for word in remote_args)
    return ["ssh", *_client_options(target, "-p"), "--", target.address, line]


def scp_command(target: RemoteTarget, local: Path, remote_path: str) -> list[str]:
    """Build the local argument list that copies `local` to `remote_path` on the board."""
    # An absolute path: scp would read "a:b.onnx" as host "a" and path "b.onnx".
    return [
        "scp",
        "-q",
        *_client_options(target, "-P"),
        "--",
        str(local.resolve()),
        f"{target.address}:{remote_path}",
    ]


def _run(command: list[str], target: RemoteTarget, what: str, timeout_s: float) -> str:
    logger.debug("running %s", command)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError as exc:
        raise RemoteError(
            f"{command[0]} not found; install the OpenSSH client to profile remote devices"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise RemoteError(f"{what} on {target.address} timed out after {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "no message"
        if done.returncode == 255:
            raise RemoteError(
                f"cannot reach {target.address} with {command[0]} ({last}); check the address, "
                "the key and ~/.ssh/config"
            )
        raise RemoteError(f"{what} on {target.address} failed (exit {done.returncode}): {last}")
    return done.stdout


def profile_remote(
    model: str | Path,
    target: RemoteTarget,
    device: str | DeviceProfile | None = None,
    provider: str = "auto",
    batch: int = 1,
    seq_len: int = 100,
    threads: int | None = None,
    warmup: int = 20,
    runs: int = 200,
    budget_s: float | None = None,
    strict_provider: bool = False,
    store: bool = True,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ProfileResult:
    """Profile `model` on the board at `target` and store the measurement locally.

    Args:
        device: the local device profile to store under; by default the device the board
            recognizes itself as (a new profile from its fingerprint if none matches).
        provider: as for `rnnedge profile --provider`, passed to the board.
    """
    path = open_model_file(model)
    local_profile = load_device(device, user_dir) if isinstance(device, str) else device
    remote_dir = _run(
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
        remote_model = f"{remote_dir}/model.onnx"
        _run(scp_command(target, path, remote_model), target, "copying the model", timeout_s)
        args = [
            target.rnnedge,
            "profile",
            remote_model,
            "--json",
            "--no-store",
            "--provider",
            str(provider),
            "--batch",
            str(batch),
            "--seq-len",
            str(seq_len),
            "--warmup",
            str(warmup),
            "--runs",
            str(runs),
        ]
        if threads is not None:
            args += ["--threads", str(threads)]
        if budget_s is not None:
            args += ["--budget-s", str(budget_s)]
        if strict_provider:
            args.append("--strict-provider")
        if local_profile is not None and local_profile.name in catalog_names():
            args += ["--device", local_profile.name]
        output = _run(ssh_command(target, args), target, "rnnedge profile", timeout_s)
    finally:
        try:
            _run(ssh_command(target, ["rm", "-rf", "--", remote_dir]), target, "cleanup", 60)
        except RemoteError as exc:
            logger.warning("could not remove %s on %s: %s", remote_dir, target.address, exc)
    document = _parse(output, target)
    measurement = {k: v for k, v in document.items() if k not in ("device", "profile")}
    if measurement.get("model_sha256") != file_sha256(path):
        raise RemoteError(
            f"the model measured on {target.address} has another sha256 than {path}; the copy "
            "was damaged, rerun the command"
        )
    measurement["model"] = path.name
    measurement["remote"] = target.address
    if local_profile is None:
        local_profile = _profile_for_board(
            str(document.get("device")), measurement, target, user_dir
        )
    written = add_measurements(local_profile, [measurement], user_dir) if store else None
    known = {f.name for f in dataclasses.fields(LatencyStats)}
    latency = LatencyStats(**{k: v for k, v in measurement["latency_ms"].items() if k in known})
    return ProfileResult(local_profile.name, measurement, latency, written)


def _parse(output: str, target: RemoteTarget) -> dict[str, Any]:
    try:
        document = json.loads(output)
    except json.JSONDecodeError as exc:
        raise RemoteError(
            f"rnnedge on {target.address} printed no JSON measurement (is it an rnnedge with "
            "--json and --no-store? upgrade it on the board)"
        ) from exc
    if not isinstance(document, dict) or "latency_ms" not in document:
        raise RemoteError(f"rnnedge on {target.address} printed JSON without 'latency_ms'")
    return document


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
    model: str | Path,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    ssh_config: Path | None = None,
    max_workers: int = 8,
    **options: Any,
) -> list[tuple[str, ProfileResult | RemoteError]]:
    """Profile `model` on every device with an SSH address, in parallel.

    Returns (device, result or the error it failed with) per device, in name order. The
    measurements of the devices that succeeded are stored even when others fail.
    """
    devices = remote_devices(user_dir)
    if not devices:
        raise InputError(
            "no device in devices/ names an SSH address; add 'remote: {ssh: user@host}' "
            "(schema_version 2) to a device profile"
        )

    def one(profile: DeviceProfile) -> ProfileResult:
        remote = profile.remote or {}
        target = RemoteTarget(
            remote["ssh"], remote.get("port"), remote.get("rnnedge", "rnnedge"), ssh_config
        )
        return profile_remote(model, target, device=profile, user_dir=user_dir, **options)

    outcomes: list[tuple[str, ProfileResult | RemoteError]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {pool.submit(one, profile): profile.name for profile in devices}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                outcomes.append((name, future.result()))
            except RemoteError as exc:
                logger.warning("profiling %s failed: %s", name, exc)
                outcomes.append((name, exc))
    return sorted(outcomes, key=lambda item: item[0])
