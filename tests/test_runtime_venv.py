"""A fresh virtual environment with only the core dependencies runs a model end to end.

The venv is made without pip, and the core dependencies (onnxruntime with its own
requirements, numpy, click, PyYAML) are linked in from the test environment's installed
distributions, so the test needs no network. rnnedge goes in as the wheel lays it out:
the package folder with the device catalog at `rnnedge/_catalog`. torch and onnx are not
there, and the test checks that importing them fails.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

import rnnedge
from rnnedge.runtime import Session
from tests.conftest import FEATURES

CORE = ("onnxruntime", "numpy", "click", "PyYAML", "flatbuffers", "packaging", "protobuf")
REPO = Path(rnnedge.__file__).resolve().parent.parent


def _link_distribution(name: str, site: Path) -> None:
    dist = importlib.metadata.distribution(name)
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    for top in tops:
        source = Path(str(dist.locate_file(top)))
        if source.exists() and not (site / top).exists():
            (site / top).symlink_to(source)


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("core-venv")
    venv.create(root, with_pip=False)
    site = next(root.glob("lib/python*/site-packages"))
    for name in CORE:
        _link_distribution(name, site)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "rnnedge", site / "rnnedge", ignore=ignore)
    shutil.copytree(REPO / "devices", site / "rnnedge" / "_catalog", ignore=ignore)
    return root / "bin" / "python"


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)  # fmt: skip


@pytest.mark.parametrize("module", ["torch", "onnx"])
def test_venv_lacks_export_dependencies(core_venv, tmp_path, module):
    result = _run(core_venv, "-c", f"import {module}", cwd=tmp_path)
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr


def test_venv_runs_model_end_to_end(core_venv, exported, tmp_path, rng):
    x = rng.standard_normal((2, 12, FEATURES)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = _run(core_venv, "-m", "rnnedge", "run", str(exported["gru"]), "-i", "x.npy",
                  "-o", "y.npy", "--provider", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    expected = Session(exported["gru"], provider="cpu").run(x)["output"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_venv_profiles_model(core_venv, exported, tmp_path):
    result = _run(core_venv, "-m", "rnnedge", "profile", str(exported["lstm"]), "--runs", "5",
                  "--provider", "cpu", "--devices-dir", "devices", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert list((tmp_path / "devices").glob("*.yaml"))
