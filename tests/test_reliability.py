"""Faults: a profile run killed at any moment, a full disk, a read-only output folder."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnedge.profiling.catalog import read_profile
from tests.conftest import FEATURES

ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root"
)


def rnnedge(*args: object, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rnnedge", *map(str, args)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def test_kill_during_profile_keeps_previous_file(exported, tmp_path):
    """SIGKILL at random moments: the profile always parses and loses no earlier entry."""
    devices = tmp_path / "devices"
    base = ["profile", exported["gru"], "--device", "raspberry-pi-4", "--force-device",
            "--provider", "cpu", "--warmup", "0", "--seq-len", "5",
            "--devices-dir", devices]  # fmt: skip
    started = time.monotonic()
    first = rnnedge(*base, "--runs", "50", cwd=tmp_path)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    # Kill times are spread over the length of a whole run on this machine, so that some
    # land before the write and some during or after it, on a fast machine or a slow one.
    whole = time.monotonic() - started
    stored = len(read_profile(devices / "raspberry-pi-4.yaml").measurements)
    generator = random.Random(7)
    killed = 0
    for _ in range(12):
        process = rnnedge(*base, "--runs", str(generator.choice([5, 50])), cwd=tmp_path)
        time.sleep(generator.uniform(0.1, 1.1) * whole)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait(timeout=120)
        profile = read_profile(devices / "raspberry-pi-4.yaml")
        count = len(profile.measurements)
        assert count in (stored, stored + 1)
        stored = count
        assert all("latency_ms" in m for m in profile.measurements)
    assert killed > 0
    leftovers = [p.name for p in devices.iterdir() if p.name.endswith(".tmp")]
    # A temporary file may survive a SIGKILL between its creation and the rename; it is
    # never mistaken for the profile.
    assert all(name.startswith(".raspberry-pi-4.yaml.") for name in leftovers)


@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@ROOT_ONLY
def test_full_disk_export_leaves_nothing(exported, tmp_path):
    with mounted_tmpfs(tmp_path / "full", "size=16k") as full:
        process = rnnedge("export", exported["lstm.pt"], "-o", full / "model.onnx", cwd=tmp_path)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2, err
        assert err.strip().count("\n") == 0
        assert "No space left on device" in err
        assert list(full.iterdir()) == []


@ROOT_ONLY
def test_full_disk_profile_keeps_previous(exported, tmp_path):
    with mounted_tmpfs(tmp_path / "devices", "size=24k") as devices:
        args = ["profile", exported["lstm"], "--device", "x86-64", "--provider", "cpu",
                "--runs", "3", "--warmup", "0", "--devices-dir", devices]  # fmt: skip
        assert rnnedge(*args, cwd=tmp_path).wait(timeout=120) == 0
        before = (devices / "x86-64.yaml").read_bytes()
        filler = devices / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as handle:
            while True:
                handle.write(b"\0" * 1024)
                handle.flush()
        process = rnnedge(*args, cwd=tmp_path)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2, err
        assert "No space left on device" in err
        assert (devices / "x86-64.yaml").read_bytes() == before


@ROOT_ONLY
def test_read_only_output_folder(exported, tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 5, FEATURES)).astype(np.float32))
    with mounted_tmpfs(tmp_path / "ro", "size=64k,ro") as read_only:
        process = rnnedge("run", exported["lstm"], "-i", tmp_path / "x.npy", "-o",
                          read_only / "y.npy", cwd=tmp_path)  # fmt: skip
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2, err
        assert "y.npy" in err or "ro" in err
        assert err.startswith("error: ")
        assert list(read_only.iterdir()) == []


def test_closed_stdout_pipe_keeps_the_sweep_going(exported, tmp_path):
    """`profile --sweep ... | head -1`: every point is still measured and stored."""
    devices = tmp_path / "devices"
    process = rnnedge("profile", exported["lstm"], "--device", "x86-64", "--provider", "cpu",
                      "--sweep", "seq-len=1,2,3,4", "--runs", "5", "--warmup", "0",
                      "--operators", "0", "--devices-dir", devices, cwd=tmp_path)  # fmt: skip
    first = process.stdout.readline()
    assert first.startswith("lstm.onnx on x86-64")
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    err = process.stderr.read()
    process.stderr.close()
    assert "Traceback" not in err
    assert "error" not in err
    assert len(read_profile(devices / "x86-64.yaml").measurements) == 4


# A meta path finder that fails the import of one module the way Ctrl-C does: at the
# entry point a plain KeyboardInterrupt, inside onnxruntime's compiled module an
# ImportError caused by it (pybind11 wraps a failed module initialization so).
INTERRUPTED_IMPORT = """
import sys
name, wrapped = sys.argv[1], sys.argv[2] == "wrapped"
class Interrupt:
    def find_spec(self, fullname, path=None, target=None):
        if fullname == name:
            if wrapped:
                raise ImportError("initialization failed") from KeyboardInterrupt()
            raise KeyboardInterrupt
        return None
sys.meta_path.insert(0, Interrupt())
from rnnedge.__main__ import entry
sys.argv = ["rnnedge", *sys.argv[3:]]
sys.exit(entry())
"""


@pytest.mark.parametrize(
    ("module", "wrapped"),
    [("rnnedge.cli", False), ("onnxruntime", True)],
    ids=["entry-point", "onnxruntime"],
)
def test_interrupt_during_imports(exported, tmp_path, rng, module, wrapped):
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 5, FEATURES)).astype(np.float32))
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_IMPORT, module, "wrapped" if wrapped else "plain",
         "run", str(exported["lstm"]), "-i", str(tmp_path / "x.npy")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 130, done.stderr
    assert done.stdout == ""
    assert done.stderr == "error: interrupted\n"
