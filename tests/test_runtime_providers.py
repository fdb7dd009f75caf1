"""Execution provider options, node placement, and the CUDA and TensorRT paths.

The option assembly is checked everywhere; the tests marked `gpu` start real CUDA and
TensorRT sessions and are skipped with the reason where onnxruntime-gpu or a GPU is
missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rnnedge.errors import InputError, ProviderError
from rnnedge.runtime import Session
from rnnedge.runtime.options import cpu_settings, merge_options, provider_options
from rnnedge.runtime.placement import read_profile
from rnnedge.runtime.providers import CPU_EP, CUDA_EP, TENSORRT_EP
from tests.conftest import FEATURES


def test_cpu_settings_default_to_physical_cores():
    settings = cpu_settings({}, threads=None, physical_cores=6)
    assert settings.intra_op_threads == 6
    assert settings.inter_op_threads == 1
    assert settings.allow_spinning is None
    assert settings.graph_optimization_level == "all"


def test_cpu_settings_threads_override_profile():
    profile = {"intra_op_num_threads": 4, "allow_spinning": False,
               "graph_optimization_level": "basic"}  # fmt: skip
    settings = cpu_settings(profile, threads=2, physical_cores=8)
    assert settings.intra_op_threads == 2
    options = settings.session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize(
    ("options", "threads", "message"),
    [
        pytest.param({}, 0, "threads must be a whole number of at least 1, got 0", id="zero"),
        pytest.param({"intra_op_num_threads": "4"}, None, "got '4'", id="text-threads"),
        pytest.param(
            {"allow_spinning": "yes"}, None, "allow_spinning must be true or false", id="spinning"
        ),
        pytest.param({"graph_optimization_level": "max"}, None, "'max' is not one of", id="level"),
        pytest.param({"intra_threads": 2}, None, "unknown cpu option 'intra_threads'", id="typo"),
    ],
)
def test_cpu_settings_rejects(options, threads, message):
    with pytest.raises(InputError, match=message):
        cpu_settings(options, threads=threads, physical_cores=4)


def test_tensorrt_options_stringified_and_cache_created(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    result = provider_options("tensorrt", {
        "device_id": 1, "trt_fp16_enable": True, "trt_max_workspace_size": 1 << 30,
        "trt_engine_cache_path": "~/.cache/rnnedge/trt",
    })  # fmt: skip
    assert result == {
        "device_id": "1",
        "trt_fp16_enable": "True",
        "trt_max_workspace_size": str(1 << 30),
        "trt_engine_cache_path": str(tmp_path / ".cache/rnnedge/trt"),
        "trt_engine_cache_enable": "True",
    }
    assert (tmp_path / ".cache/rnnedge/trt").is_dir()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"device_id": -1}, "device_id must be a whole number of at least 0", id="device-id"
        ),
        pytest.param(
            {"trt_fp16_enable": "yes"}, "trt_fp16_enable must be true or false", id="fp16"
        ),
        pytest.param({"trt_max_workspace_size": 0}, "at least 1", id="workspace"),
    ],
)
def test_gpu_options_rejected(options, message):
    with pytest.raises(InputError, match=message):
        provider_options("tensorrt", options)


def test_merge_options_overlays_keys():
    profile = {"cpu": {"intra_op_num_threads": 4, "allow_spinning": True}}
    override = {"cpu": {"allow_spinning": False}, "cuda": {"device_id": 1}}
    merged = merge_options(profile, override)
    assert merged == {"cpu": {"intra_op_num_threads": 4, "allow_spinning": False},
                      "cuda": {"device_id": 1}}  # fmt: skip


def test_session_uses_profile_and_override(exported):
    override = {"cpu": {"graph_optimization_level": "extended"}}
    session = Session(exported["gru"], device="raspberry-pi-4", provider="cpu",
                      provider_options=override)  # fmt: skip
    assert session.threads == 4
    assert session.settings.allow_spinning is True
    assert session.settings.graph_optimization_level == "extended"


def test_session_placement_after_first_run(exported, rng):
    session = Session(exported["lstm"], provider="cpu", report_placement=True)
    assert session.placement is None
    session.run(rng.standard_normal((2, 7, FEATURES)).astype(np.float32))
    assert session.placement is not None
    assert session.placement.providers == [CPU_EP]
    assert session.placement.operators[CPU_EP]["LSTM"] == 2
    assert all(name for name in session.placement.nodes[CPU_EP])


def test_read_profile_counts_kernel_events(tmp_path):
    events = [
        {"cat": "Session", "name": "model_run", "args": {}},
        {"cat": "Node", "name": "a_fence_before", "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "a_kernel_time",
         "args": {"op_name": "MatMul", "provider": CUDA_EP}},
        {"cat": "Node", "name": "b_kernel_time",
         "args": {"op_name": "TRTKernel_graph_0", "provider": TENSORRT_EP}},
        {"cat": "Node", "name": "a_kernel_time",
         "args": {"op_name": "MatMul", "provider": CUDA_EP}},
        {"cat": "Node", "name": "c_kernel_time", "args": {"op_name": "Shape", "provider": CPU_EP}},
    ]  # fmt: skip
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    placement = read_profile(path)
    assert placement.as_dict() == {CUDA_EP: {"MatMul": 1}, TENSORRT_EP: {"TRTKernel_graph_0": 1},
                                   CPU_EP: {"Shape": 1}}  # fmt: skip
    assert placement.describe()[0] == f"{CUDA_EP}: 1 node (MatMul x1)"


def test_read_profile_rejects_garbage(tmp_path):
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read the ONNX Runtime profile"):
        read_profile(tmp_path / "p.json")


@pytest.mark.skipif(CUDA_EP in ort.get_available_providers(), reason="this build has CUDA")
def test_strict_cuda_without_gpu_build(exported):
    with pytest.raises(ProviderError, match="needs CUDAExecutionProvider"):
        Session(exported["gru"], provider="cuda", strict_provider=True)


def _gpu_reason(provider: str) -> str | None:
    if provider not in ort.get_available_providers():
        return (
            f"{provider} is not in this onnxruntime build; install onnxruntime-gpu with "
            "pip install 'rnnedge[cuda]' on a machine with an NVIDIA GPU"
        )
    if not Path("/dev/nvidia0").exists() and not Path("/dev/nvhost-ctrl").exists():
        return "no NVIDIA GPU device node (/dev/nvidia0 or /dev/nvhost-ctrl) on this host"
    return None


@pytest.mark.gpu
@pytest.mark.parametrize(("provider", "ep"), [("cuda", CUDA_EP), ("tensorrt", TENSORRT_EP)])
def test_gpu_session_places_nodes(exported, rng, tmp_path, provider, ep):
    reason = _gpu_reason(ep)
    if reason:
        pytest.skip(reason)
    options = {"cuda": {"device_id": 0},
               "tensorrt": {"device_id": 0, "trt_fp16_enable": False,
                            "trt_engine_cache_path": str(tmp_path / "trt")}}  # fmt: skip
    session = Session(exported["gru"], provider=provider, strict_provider=True,
                      provider_options=options, report_placement=True)  # fmt: skip
    x = rng.standard_normal((2, 9, FEATURES)).astype(np.float32)
    gpu = session.run(x)["output"]
    cpu = Session(exported["gru"], provider="cpu").run(x)["output"]
    assert session.primary_provider == ep
    assert ep in session.placement.providers
    # GPU kernels use other summation orders (and TF32 on Ampere and later) than the CPU.
    np.testing.assert_allclose(gpu, cpu, atol=1e-3, rtol=0)
    if provider == "tensorrt":
        assert any((tmp_path / "trt").iterdir()), "TensorRT wrote no engine cache"
