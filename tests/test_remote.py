"""Remote profiling end to end against a real OpenSSH server on 127.0.0.1.

The server runs from a temporary folder with a throwaway host key and user key, on a free
high port. The client gets its own ssh_config and known_hosts, so ~/.ssh is never read or
written. The "board" is this machine, and its rnnedge is this virtual environment's.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rnnedge.cli import main
from rnnedge.profiling.catalog import catalog_dir, read_profile
from rnnedge.profiling.profile import file_sha256

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
VENV_RNNEDGE = str(Path(sys.executable).with_name("rnnedge"))
SFTP_SERVERS = [
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _sshd_missing() -> str | None:
    if not os.path.exists(SSHD) or shutil.which("ssh") is None or shutil.which("scp") is None:
        return "OpenSSH server or client not installed (.ci/setup-ssh.sh installs them)"
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        return "/run/sshd is missing; run .ci/setup-ssh.sh"
    if not any(os.path.exists(p) for p in SFTP_SERVERS):
        return "sftp-server not found; scp needs it"
    return None


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A running sshd on 127.0.0.1 and an ssh_config with the host alias `board`."""
    reason = _sshd_missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("sshd")
    host_public = _keygen(root / "host_key")
    (root / "authorized_keys").write_text(_keygen(root / "user_key") + "\n")
    port = _free_port()
    sftp = next(p for p in SFTP_SERVERS if os.path.exists(p))
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
        f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n"
        f"Subsystem sftp {sftp}\n"
    )
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_public}\n")
    config = root / "ssh_config"
    config.write_text(
        f"Host board\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {root / 'user_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {root / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n"
    )
    log = open(root / "sshd.log", "w")  # noqa: SIM115 - sshd writes to it until the end
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdout=subprocess.DEVNULL, stderr=log
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"sshd exited: {(root / 'sshd.log').read_text()[-500:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield {"config": config, "address": f"{getpass.getuser()}@board", "port": port}
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _remote_args(board) -> list:
    return [
        "--ssh-config",
        board["config"],
        "--runs",
        "5",
        "--warmup",
        "1",
        "--seq-len",
        "10",
        "--provider",
        "cpu",
    ]


def test_remote_profile_stored_locally(capsys, board, exported, tmp_path):
    devices = tmp_path / "devices"
    code, out, err = run_cli(
        capsys,
        "profile",
        exported["gru"],
        "--remote",
        board["address"],
        "--remote-rnnedge",
        VENV_RNNEDGE,
        "--device",
        "x86-64",
        "--devices-dir",
        devices,
        "--json",
        *_remote_args(board),
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["remote"] == board["address"]
    assert document["latency_ms"]["count"] == 5
    stored = read_profile(devices / "x86-64.yaml").measurements
    assert len(stored) == 1
    assert stored[0]["model_sha256"] == file_sha256(exported["gru"])
    assert stored[0]["model"] == "gru.onnx"
    assert stored[0]["seq_len"] == 10


def test_remote_path_cannot_inject(capsys, board, exported, tmp_path):
    # A shell would run the command in this file name; the argument lists must not.
    odd = tmp_path / "m;touch INJECTED;$(touch INJECTED2).onnx"
    shutil.copy(exported["lstm"], odd)
    code, _, err = run_cli(
        capsys,
        "profile",
        odd,
        "--remote",
        board["address"],
        "--remote-rnnedge",
        VENV_RNNEDGE,
        "--no-store",
        *_remote_args(board),
    )
    assert code == 0, err
    for folder in (Path.cwd(), tmp_path, Path.home()):
        assert not (folder / "INJECTED").exists()
        assert not (folder / "INJECTED2").exists()


def _fleet_profile(devices: Path, name: str, address: str) -> None:
    data = yaml.safe_load((catalog_dir() / f"{name}.yaml").read_text())
    data["remote"] = {"ssh": address, "rnnedge": VENV_RNNEDGE}
    (devices / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def test_device_all_profiles_every_board(capsys, board, exported, tmp_path):
    devices = tmp_path / "devices"
    devices.mkdir()
    for name in ("raspberry-pi-5", "x86-64"):
        _fleet_profile(devices, name, board["address"])
    code, out, err = run_cli(
        capsys,
        "profile",
        exported["lstm"],
        "--device",
        "all",
        "--devices-dir",
        devices,
        "--json",
        *_remote_args(board),
    )
    assert code == 0, err
    assert sorted(d["device"] for d in json.loads(out)) == ["raspberry-pi-5", "x86-64"]
    for name in ("raspberry-pi-5", "x86-64"):
        profile = read_profile(devices / f"{name}.yaml")
        assert len(profile.measurements) == 1
        assert profile.remote["ssh"] == board["address"]


def test_unreachable_board_fails_cleanly(capsys, board, exported, tmp_path):
    config = tmp_path / "ssh_config"
    text = board["config"].read_text().replace(f"Port {board['port']}", f"Port {_free_port()}")
    config.write_text(text)
    devices = tmp_path / "devices"
    code, _, err = run_cli(
        capsys,
        "profile",
        exported["lstm"],
        "--remote",
        board["address"],
        "--ssh-config",
        config,
        "--devices-dir",
        devices,
    )
    assert code == 2
    assert "cannot reach" in err
    assert not devices.exists()


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("-oProxyCommand=touch_pwned", id="option"),
        pytest.param("user@host name", id="space"),
        pytest.param("host;reboot", id="semicolon"),
    ],
)
def test_remote_rejects_bad_address(capsys, exported, tmp_path, address):
    code, _, err = run_cli(
        capsys, "profile", exported["lstm"], "--remote", address, "--devices-dir", tmp_path
    )
    assert code == 2
    assert "invalid remote address" in err
    assert list(tmp_path.iterdir()) == []
