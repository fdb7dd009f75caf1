"""The runtime on an emulated aarch64 user space, compared with x86 and PyTorch.

tests/arm64/run.sh runs Debian's arm64 python3.11 with the aarch64 onnxruntime and numpy
wheels under qemu-user-static (Cortex-A72 CPU model); .ci/setup-arm64.sh installs them.
The tests skip with the reason where the runner cannot start (not root, or no userland).

Tolerances per precision:
- float32, ARM against x86: 1e-5. The kernels differ (NEON against AVX2), and the float
  GRU and LSTM outputs were seen to agree to about 5e-8.
- int8, ARM against x86: 0.1 on logits of order 1. Dynamic quantization runs different
  integer kernels on each architecture, and another int8 LSTM was seen to differ by 2.2e-2.
- float32 against PyTorch: 1e-5, as for the exporter's parity check. int8 against PyTorch
  is the quantization report's check, not this job's.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402

from rnnedge.export import load_checkpoint  # noqa: E402
from rnnedge.quantize import quantize_model  # noqa: E402
from rnnedge.runtime import Session, StreamingSession  # noqa: E402
from tests.conftest import FEATURES  # noqa: E402
from tests.test_streaming import export_streaming  # noqa: E402

RUNNER = Path(__file__).parent / "arm64" / "run.sh"
CACHE = Path(os.environ.get("RNNEDGE_ARM64_CACHE", "/var/cache/rnnedge-arm64"))
FLOAT_ATOL = 1e-5
INT8_ATOL = 0.1
TORCH_ATOL = 1e-5


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the ARM64 runner needs root for unshare -m and a bind mount of /proc/cpuinfo"
    if not (CACHE / "ready").is_file():
        return f"no aarch64 userland in {CACHE}; run .ci/setup-arm64.sh (CI does)"
    if subprocess.run(["which", "qemu-aarch64-static"], capture_output=True).returncode:
        return "qemu-aarch64-static is not installed; run .ci/setup-arm64.sh (CI does)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

# Runs under emulation: each model through Session (and StreamingSession for the
# streaming model), outputs saved for the x86 side to compare.
ARM_SCRIPT = textwrap.dedent("""
    import json, platform, sys
    import numpy as np
    from rnnedge.runtime import Session, StreamingSession
    from rnnedge.runtime.providers import available_providers
    job = json.load(open(sys.argv[1]))
    x = np.load(job["input"])
    results = {}
    for name, path in job["models"].items():
        session = Session(path, provider="arm", strict_provider=True, threads=1)
        results[name] = session.run(x)[session.output_names[0]]
    streaming = StreamingSession(job["streaming"], provider="arm", strict_provider=True)
    results["streaming"] = streaming.run(np.load(job["stream_input"]), chunk=4)["y"]
    np.savez(job["output"], **results)
    print(json.dumps({"machine": platform.machine(), "providers": available_providers()}))
""")


@pytest.fixture(scope="module")
def arm_run(exported, tmp_path_factory):
    """Run every model once under emulation; return the paths, inputs and ARM outputs."""
    root = tmp_path_factory.mktemp("arm64")
    models = {}
    for cell in ("lstm", "gru"):
        models[f"{cell}-fp32"] = str(exported[cell])
        int8 = root / f"{cell}.int8.onnx"
        quantize_dynamic(str(exported[cell]), str(int8), weight_type=QuantType.QInt8)
        models[f"{cell}-int8"] = str(int8)
    # rnnedge's int8 GRU path (DynamicQuantizeMatMul inside a Scan), forced on at this size.
    scan = root / "gru.int8-scan.onnx"
    quantize_model(exported["gru"], scan, "dynamic-int8", gru_int8="always", latency_runs=0)
    models["gru-int8-scan"] = str(scan)
    streaming, _ = export_streaming(root / "stream.onnx", "gru")
    rng = np.random.default_rng(7)
    np.save(root / "x.npy", rng.standard_normal((3, 20, FEATURES)).astype(np.float32))
    np.save(root / "s.npy", rng.standard_normal((2, 11, 5)).astype(np.float32))
    job = {"models": models, "streaming": str(streaming), "input": str(root / "x.npy"),
           "stream_input": str(root / "s.npy"), "output": str(root / "arm.npz")}  # fmt: skip
    (root / "job.json").write_text(json.dumps(job))
    (root / "arm_job.py").write_text(ARM_SCRIPT)
    result = subprocess.run([str(RUNNER), str(root / "arm_job.py"), str(root / "job.json")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return {"job": job, "report": report, "arm": dict(np.load(root / "arm.npz"))}


def test_runs_on_aarch64(arm_run):
    assert arm_run["report"]["machine"] == "aarch64"
    assert "CPUExecutionProvider" in arm_run["report"]["providers"]


@pytest.mark.parametrize(
    "name", ["lstm-fp32", "lstm-int8", "gru-fp32", "gru-int8", "gru-int8-scan"]
)
def test_arm_matches_x86(arm_run, record_property, name):
    precision = "fp32" if name.endswith("fp32") else "int8"
    x = np.load(arm_run["job"]["input"])
    x86 = Session(arm_run["job"]["models"][name], provider="cpu", threads=1).run(x)["output"]
    drift = float(np.abs(arm_run["arm"][name] - x86).max())
    record_property(f"arm_vs_x86_{name}", drift)
    atol = FLOAT_ATOL if precision == "fp32" else INT8_ATOL
    assert drift <= atol, f"{name}: ARM differs from x86 by {drift:.3g} (tolerance {atol})"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_arm_float_matches_pytorch(arm_run, exported, cell):
    checkpoint = load_checkpoint(exported[f"{cell}.pt"])
    x = np.load(arm_run["job"]["input"])
    stats = Session(exported[cell], provider="cpu").metadata.normalization
    normalized = (x - np.asarray(stats.mean, np.float32)) / np.asarray(stats.std, np.float32)
    with torch.no_grad():
        expected = checkpoint.model(torch.from_numpy(normalized)).numpy()
    np.testing.assert_allclose(arm_run["arm"][f"{cell}-fp32"], expected, atol=TORCH_ATOL, rtol=0)


def test_arm_streaming_matches_x86(arm_run):
    stream_input = np.load(arm_run["job"]["stream_input"])
    x86 = StreamingSession(arm_run["job"]["streaming"], provider="cpu").run(stream_input, chunk=4)
    np.testing.assert_allclose(arm_run["arm"]["streaming"], x86["y"], atol=FLOAT_ATOL, rtol=0)


def test_arm_cli_run(exported, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 8, FEATURES), np.float32))
    result = subprocess.run(
        [str(RUNNER), "-m", "rnnedge", "run", str(exported["gru"]), "-i", "x.npy",
         "-o", "y.npy", "--provider", "arm", "--strict-provider"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "providers: CPUExecutionProvider" in result.stdout
    assert "placement: CPUExecutionProvider:" in result.stdout
    x86 = Session(exported["gru"], provider="cpu").run(np.load(tmp_path / "x.npy"))["output"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), x86, atol=FLOAT_ATOL, rtol=0)
