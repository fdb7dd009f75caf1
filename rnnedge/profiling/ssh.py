"""The SSH transport of remote profiling: the board's address and the system OpenSSH client.

Using the system client means the user's `~/.ssh/config`, keys and agent apply. Commands
are argument lists run without a local shell. `--` ends the options before the host, and
an address starting with '-' is rejected, so a host name cannot become an ssh option. The
command line run on the board goes through the remote user's shell, so every word of it
is quoted with `shlex.quote`.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rnnedge.errors import InputError

logger = logging.getLogger(__name__)

# [user@]host: a host name, alias or IPv4 address; IPv6 literals and ports go in ssh_config.
_ADDRESS = re.compile(r"^(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?[A-Za-z0-9_][A-Za-z0-9._-]*$")


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


def run_command(
    command: list[str],
    target: RemoteTarget,
    what: str,
    timeout_s: float,
    on_stderr_line: Callable[[str], None] | None = None,
) -> str:
    """Run `command` and return its stdout; each stderr line goes to `on_stderr_line` live."""
    logger.debug("running %s", command)
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except FileNotFoundError as exc:
        raise RemoteError(
            f"{command[0]} not found; install the OpenSSH client to profile remote devices"
        ) from exc
    stdout: list[str] = []
    stderr: list[str] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            stderr.append(line)
            if on_stderr_line is not None:
                on_stderr_line(line.rstrip("\n"))

    def read_stdout() -> None:
        assert process.stdout is not None
        stdout.append(process.stdout.read())

    # Both pipes are drained in threads, so a full stderr pipe never blocks the board's
    # output and the progress lines arrive while the command runs.
    readers = [threading.Thread(target=read, daemon=True) for read in (read_stderr, read_stdout)]
    for reader in readers:
        reader.start()
    try:
        returncode = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        process.wait()
        raise RemoteError(f"{what} on {target.address} timed out after {timeout_s:.0f} s") from exc
    finally:
        for reader in readers:
            reader.join(timeout=5)
    if returncode != 0:
        lines = [line for line in "".join(stderr).strip().splitlines() if line.strip()]
        # The board's rnnedge prints "error: MESSAGE"; the prefix would repeat in ours.
        last = lines[-1].removeprefix("error: ") if lines else "no message"
        if returncode == 255:
            raise RemoteError(
                f"cannot reach {target.address} with {command[0]} ({last}); check the address, "
                "the key and ~/.ssh/config"
            )
        raise RemoteError(f"{what} on {target.address} failed (exit {returncode}): {last}")
    return "".join(stdout)
