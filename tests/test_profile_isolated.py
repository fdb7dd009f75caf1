"""Profiling in a child process without torch, as the demo does, and the session's memory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnnedge.errors import DeviceProfileError
from rnnedge.profiling import profile_model
from rnnedge.profiling.fingerprint import rss_mb
from rnnedge.profiling.isolated import profile_in_child
from rnnedge.profiling.measurement_schema import check_measurement

QUICK = {"provider": "cpu", "seq_len": 10, "warmup": 1, "runs": 10, "operators": 0}


def test_child_leaves_out_parent_memory(exported):
    assert "torch" in sys.modules  # the fixtures export with torch in this process
    parent_rss = rss_mb()["rss_mb"]
    child = profile_in_child(exported["lstm"], store=False, **QUICK)
    here = profile_model(exported["lstm"], store=False, **QUICK)
    # The child's whole process is smaller than this one before it started.
    assert child.measurement["peak_rss_mb"] < parent_rss
    assert here.measurement["peak_rss_mb"] >= parent_rss
    assert child.measurement["model_sha256"] == here.measurement["model_sha256"]
    assert child.latency.count == 10


def test_child_stores_in_user_dir(exported, tmp_path):
    result = profile_in_child(exported["gru"], user_dir=tmp_path, **QUICK)
    assert result.profile_path is not None
    assert result.profile_path.parent == tmp_path
    assert "gru.onnx" in result.profile_path.read_text()


def test_child_raises_profile_error(exported, tmp_path):
    with pytest.raises(DeviceProfileError, match="unknown device 'pi9'"):
        profile_in_child(exported["lstm"], device="pi9", user_dir=tmp_path, **QUICK)


def test_profiling_imports_no_torch(exported):
    script = (
        "import sys\n"
        "from rnnedge.profiling.profile import profile_model\n"
        f"profile_model({str(exported['lstm'])!r}, store=False, **{QUICK!r})\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torch'))\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=120, check=False)  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_session_rss_recorded(exported):
    m = profile_model(exported["lstm"], store=False, **QUICK).measurement
    if m["peak_rss_since"] != "session":
        assert m["session_rss_mb"] is None  # the kernel could not reset the peak
        return
    assert m["session_rss_mb"] == pytest.approx(m["peak_rss_mb"] - m["rss_before_mb"], abs=0.11)
    assert m["session_rss_mb"] >= 0


def test_schema_rejects_negative_session_rss():
    entry = {"latency_ms": {"p50_ms": 1.0}, "session_rss_mb": -1.0}
    with pytest.raises(DeviceProfileError, match="'session_rss_mb' must be a finite number"):
        check_measurement(entry, "devices/x.yaml: measurements[0]")
