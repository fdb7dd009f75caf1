"""Remote profiling end to end against a real OpenSSH server on 127.0.0.1.

The server runs from a temporary folder with a throwaway host key and user key, on a free
high port. The client gets its own ssh_config and known_hosts, so ~/.ssh is never read or
written. The "board" is this machine, and its rnnedge is this virtual environment's.
"""

from __future__ import annotations

import contextlib
import getpass
import io
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
from rnnedge.profiling.check import MAX_REPEAT_DELAY_S, MIN_REPEAT_DELAY_S
from rnnedge.profiling.profile import file_sha256
from rnnedge.profiling.remote import check_remote
from rnnedge.profiling.ssh import RemoteTarget

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


FLEET = ("raspberry-pi-5", "x86-64")


def _fleet(tmp_path: Path, board) -> Path:
    """A devices folder whose two profiles both name the test board's SSH address."""
    devices = tmp_path / "devices"
    devices.mkdir()
    for name in FLEET:
        _fleet_profile(devices, name, board["address"])
    return devices


def test_device_all_profiles_every_board(capsys, board, exported, tmp_path):
    devices = _fleet(tmp_path, board)
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


def _sweep_args(board, *sweep: str) -> list:
    args = ["--ssh-config", board["config"], "--runs", "5", "--warmup", "1"]
    args += ["--operators", "0", "--provider", "cpu"]
    for spec in sweep or ("seq-len=5,10",):
        args += ["--sweep", spec]
    return args


def _run_captured(*args) -> tuple[int, str, str]:
    # For module-scoped fixtures, where capsys is not available.
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def remote_sweep(board, exported, tmp_path_factory):
    """A two-point sweep of the GRU model run on the board and stored under x86-64."""
    devices = tmp_path_factory.mktemp("swept") / "devices"
    code, out, err = _run_captured(
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
        *_sweep_args(board),
    )
    return {"devices": devices, "code": code, "out": out, "err": err}


def test_remote_sweep_stores_every_point(remote_sweep, board, exported):
    assert remote_sweep["code"] == 0, remote_sweep["err"]
    documents = json.loads(remote_sweep["out"])
    assert [d["seq_len"] for d in documents] == [5, 10]
    assert {d["remote"] for d in documents} == {board["address"]}
    assert {d["model"] for d in documents} == {"gru.onnx"}
    assert {d["latency_ms"]["count"] for d in documents} == {5}
    stored = read_profile(remote_sweep["devices"] / "x86-64.yaml").measurements
    assert [m["seq_len"] for m in stored] == [5, 10]
    assert {m["remote"] for m in stored} == {board["address"]}
    assert {m["model_sha256"] for m in stored} == {file_sha256(exported["gru"])}


def test_remote_sweep_shows_progress(remote_sweep):
    progress = [line for line in remote_sweep["err"].splitlines() if line.startswith("[")]
    assert len(progress) == 2
    assert "1/2 gru.onnx batch 1 seq_len 5" in progress[0]
    assert "2/2 gru.onnx batch 1 seq_len 10" in progress[1]


def test_remote_sweep_json_like_local(capsys, remote_sweep, exported):
    code, out, err = run_cli(
        capsys, "profile", exported["gru"], "--no-store", "--json", "--runs", "5",
        "--warmup", "1", "--operators", "0", "--provider", "cpu", "--sweep", "seq-len=5,10",
    )  # fmt: skip
    assert code == 0, err
    local = json.loads(out)
    remote = json.loads(remote_sweep["out"])
    assert isinstance(local, list)
    assert isinstance(remote, list)
    assert len(remote) == len(local)
    for remote_document, local_document in zip(remote, local, strict=True):
        assert set(remote_document) == set(local_document) | {"remote"}


def _copy_devices(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*.lock"))
    return target


def _check_on_board(capsys, board, exported, devices: Path, *extra) -> tuple[int, str, str]:
    return run_cli(
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
        "--check",
        *_sweep_args(board),
        *extra,
    )


def test_remote_check_within_tolerance(capsys, remote_sweep, board, exported, tmp_path):
    devices = _copy_devices(remote_sweep["devices"], tmp_path / "devices")
    before = (devices / "x86-64.yaml").read_text()
    # A tolerance of 10000% makes the verdict independent of this machine's noise.
    code, out, err = _check_on_board(capsys, board, exported, devices, "--tolerance", "100")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("ok: gru.onnx") for line in lines)
    assert (devices / "x86-64.yaml").read_text() == before


def _shrink_baselines(path: Path) -> None:
    """Make the stored latencies a million times lower. The threshold grows with the spread
    of the 5 runs, and on a busy machine one slow run can make that spread 1000 times the
    median."""
    data = yaml.safe_load(path.read_text())
    for measurement in data["measurements"]:
        latency = measurement["latency_ms"]
        for key, value in latency.items():
            if key.endswith("_ms") and value is not None:
                latency[key] = value / 1e6
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_remote_check_detects_regression(capsys, remote_sweep, board, exported, tmp_path):
    devices = _copy_devices(remote_sweep["devices"], tmp_path / "devices")
    _shrink_baselines(devices / "x86-64.yaml")
    code, out, err = _check_on_board(capsys, board, exported, devices, "--json")
    assert code == 3, err
    checks = [d["check"] for d in json.loads(out)]
    assert [c["regressed"] for c in checks] == [True, True]
    # Each regression is confirmed by a second measurement on the board.
    assert [len(c["measured_p50s_ms"]) for c in checks] == [2, 2]
    assert "latency regressed in 2 of 2 configurations" in err


def test_remote_check_pauses_once(remote_sweep, board, exported, tmp_path):
    devices = _copy_devices(remote_sweep["devices"], tmp_path / "devices")
    _shrink_baselines(devices / "x86-64.yaml")
    target = RemoteTarget(board["address"], None, VENV_RNNEDGE, board["config"])
    pauses: list[float] = []
    checked = check_remote(
        [exported["gru"]], target, ["seq-len=5,10"], "x86-64", user_dir=devices,
        sleep=pauses.append, provider="cpu", runs=5, warmup=1, operators=0,
    )  # fmt: skip
    # One pause for the whole request, not one per regressed point.
    assert len(pauses) == 1
    assert MIN_REPEAT_DELAY_S <= pauses[0] <= MAX_REPEAT_DELAY_S
    assert [len(outcome.measured_p50s_ms) for _, outcome in checked] == [2, 2]


def test_remote_check_baseline_before_connecting(capsys, remote_sweep, board, exported, tmp_path):
    # The stored baselines are of the GRU only, and the board cannot be reached: the
    # missing baseline is reported, not the connection.
    devices = _copy_devices(remote_sweep["devices"], tmp_path / "devices")
    config = tmp_path / "ssh_config"
    config.write_text(
        board["config"].read_text().replace(f"Port {board['port']}", f"Port {_free_port()}")
    )
    code, out, err = run_cli(
        capsys, "profile", exported["lstm"], "--remote", board["address"],
        "--device", "x86-64", "--devices-dir", devices, "--check", "--ssh-config", config,
    )  # fmt: skip
    assert code == 2
    assert out == ""
    assert "has no measurement of lstm.onnx; profile it without --check first" in err
    assert "cannot reach" not in err


def test_remote_sweep_rejected_by_board(capsys, board, exported, tmp_path):
    # The board rejects the second point (its input cannot fit in memory) after measuring
    # the first: nothing may be stored.
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
        *_sweep_args(board, "seq-len=5,100000000000000"),
    )
    assert code == 2
    assert out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "rnnedge profile on" in errors[0]
    assert "sequence length 100000000000000" in errors[0]
    assert "Traceback" not in err
    assert not devices.exists()


def test_remote_bad_sweep_rejected_locally(capsys, board, exported, tmp_path):
    devices = tmp_path / "devices"
    code, _, err = run_cli(
        capsys,
        "profile",
        exported["gru"],
        "--remote",
        board["address"],
        "--devices-dir",
        devices,
        *_sweep_args(board, "hidden=8,16"),
    )
    assert code == 2
    assert "invalid sweep 'hidden=8,16'" in err
    assert len(err.strip().splitlines()) == 1
    assert not devices.exists()


def test_device_all_sweeps_every_board(capsys, board, exported, tmp_path):
    devices = _fleet(tmp_path, board)
    code, out, err = run_cli(
        capsys,
        "profile",
        exported["lstm"],
        "--device",
        "all",
        "--devices-dir",
        devices,
        "--json",
        *_sweep_args(board),
    )
    assert code == 0, err
    documents = json.loads(out)
    assert [(d["device"], d["seq_len"]) for d in documents] == [
        ("raspberry-pi-5", 5),
        ("raspberry-pi-5", 10),
        ("x86-64", 5),
        ("x86-64", 10),
    ]
    for name in ("raspberry-pi-5", "x86-64"):
        stored = read_profile(devices / f"{name}.yaml").measurements
        assert [m["seq_len"] for m in stored] == [5, 10]


def test_device_all_check_names_missing_baseline(capsys, remote_sweep, board, exported, tmp_path):
    # x86-64 has the sweep's measurements as its baseline and raspberry-pi-5 has none.
    devices = _copy_devices(remote_sweep["devices"], tmp_path / "devices")
    data = yaml.safe_load((devices / "x86-64.yaml").read_text())
    data["remote"] = {"ssh": board["address"], "rnnedge": VENV_RNNEDGE}
    (devices / "x86-64.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    _fleet_profile(devices, "raspberry-pi-5", board["address"])
    code, out, err = run_cli(
        capsys,
        "profile",
        exported["gru"],
        "--device",
        "all",
        "--devices-dir",
        devices,
        "--check",
        "--tolerance",
        "100",
        *_sweep_args(board),
    )
    assert code == 2
    assert out.count("ok: gru.onnx") == 2
    assert "raspberry-pi-5: failed:" in out
    assert "has no measurement of gru.onnx" in out
    assert "profiling failed on 1 of 2 devices: raspberry-pi-5" in err
    assert read_profile(devices / "raspberry-pi-5.yaml").measurements == []
