"""The device guides' commands, run as written.

Every fenced block whose info string is `sh runnable` runs in order, in one fresh folder
that holds a real checkpoint `model.pt`, with this virtual environment's `rnnedge` and
`python3` first on PATH. Blocks also marked `arm64` run a second time under the emulated
aarch64 userland of tests/arm64/run.sh, with `rnnedge` and `python3` replaced by that
runner's Python. Where the runner is not installed, that test skips with its reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_checkpoint

REPO = Path(__file__).resolve().parents[1]
ARM64_RUNNER = REPO / "tests" / "arm64" / "run.sh"
GUIDES = ["raspberry-pi.md", "jetson.md"]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def runnable_blocks(guide: str, tag: str = "runnable") -> list[str]:
    text = (REPO / "docs" / guide).read_text(encoding="utf-8")
    return [
        body
        for language, info, body in FENCE.findall(text)
        if language == "sh" and tag in info.split()
    ]


def _run(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def guide_runs(tmp_path_factory) -> dict[str, Path]:
    """Run each guide's runnable blocks once; return the folder each guide ran in."""
    bin_dir = str(Path(sys.executable).parent)
    folders = {}
    for guide in GUIDES:
        folder = tmp_path_factory.mktemp(guide.removesuffix(".md"))
        make_checkpoint(folder / "model.pt", cell="lstm")
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(folder)}
        for block in runnable_blocks(guide):
            done = _run(block, folder, env)
            assert done.returncode == 0, (
                f"{guide} block failed with exit code {done.returncode}:\n{block}\n"
                f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
            )
        folders[guide] = folder
    return folders


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_has_runnable_blocks(guide):
    blocks = runnable_blocks(guide)
    commands = " ".join(blocks)
    assert len(blocks) >= 4
    for command in ("rnnedge doctor", "--stream", "rnnedge profile", "rnnedge report"):
        assert command in commands


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_commands_leave_profile(guide_runs, guide):
    folder = guide_runs[guide]
    profiles = list((folder / "devices").glob("*.yaml"))
    assert len(profiles) == 1
    measurements = yaml.safe_load(profiles[0].read_text())["measurements"]
    assert len(measurements) == 2
    assert all("conditions" in m for m in measurements)
    assert (folder / "report.html").is_file()
    assert (folder / "doctor.json").is_file()


def _arm64_available() -> str | None:
    if not ARM64_RUNNER.is_file():
        return "tests/arm64/run.sh is not in this checkout"
    probe = subprocess.run(
        [str(ARM64_RUNNER), "-c", "import onnxruntime"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"the aarch64 runner is not usable: {probe.stderr.strip()[-300:]}"
    return None


def test_raspberry_pi_guide_under_arm64(guide_runs, tmp_path):
    reason = _arm64_available()
    if reason:
        pytest.skip(reason)
    # The workstation steps ran on x86-64; the board steps reuse their model files.
    source = guide_runs["raspberry-pi.md"]
    for name in ("model.onnx", "model.int8.onnx", "model.stream.int8.onnx"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    env = {**os.environ, "HOME": str(tmp_path)}
    runner = f'"{ARM64_RUNNER}"'
    for block in runnable_blocks("raspberry-pi.md", "arm64"):
        board = re.sub(r"^rnnedge ", f"{runner} -m rnnedge ", block, flags=re.MULTILINE)
        board = re.sub(r"^python3 ", f"{runner} ", board, flags=re.MULTILINE)
        done = _run(board, tmp_path, env)
        assert done.returncode == 0, (
            f"block failed under arm64 with exit code {done.returncode}:\n{board}\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
    profiles = list((tmp_path / "devices").glob("*.yaml"))
    assert len(profiles) == 1
    measurements = yaml.safe_load(profiles[0].read_text())["measurements"]
    assert {m["host"]["cpu"]["arch"] for m in measurements} == {"aarch64"}
