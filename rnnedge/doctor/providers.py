"""Checks of onnxruntime: version, installed packages, providers and whether each loads.

ONNX Runtime drops a provider whose libraries fail to load and runs on the CPU without an
error. So doctor tries each provider the build offers on a one-node model and reports a
provider missing from the session's list afterwards as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import metadata

import onnxruntime as ort

from rnnedge.doctor.findings import Area, Finding, error, ok, warning
from rnnedge.doctor.onnx_proto import identity_model
from rnnedge.runtime.providers import CPU_EP, CUDA_EP, TENSORRT_EP, parse_provider

logger = logging.getLogger(__name__)

_A = Area.ONNXRUNTIME
# Providers that run no kernels on this host, so a load test cannot check them.
_NOT_COMPUTE = {"AzureExecutionProvider"}
# Distributions that install the same `onnxruntime` import package; two at once overwrite
# each other's files and leave a mixture.
_ORT_DISTRIBUTIONS = (
    "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
    "onnxruntime-qnn", "onnxruntime-training",
)  # fmt: skip
_GPU_FIX = (
    "install the CUDA and cuDNN versions this onnxruntime-gpu release was built for and make "
    "their libraries findable (LD_LIBRARY_PATH, or the JetPack libraries on a Jetson); or "
    "replace onnxruntime-gpu with onnxruntime and run with --provider cpu"
)


def check_onnxruntime(
    device_preference: Sequence[str] = (), generic_device: bool = False
) -> list[Finding]:
    """Run every onnxruntime check.

    Args:
        device_preference: the provider preference of the device profile in use.
        generic_device: the profile is a generic one (an architecture, not a board), whose
            GPU entries mean "use a GPU if there is one".
    """
    available = list(ort.get_available_providers())
    findings = [_version(), _distributions(), _built_providers(available)]
    for provider in available:
        if provider not in (CPU_EP, *_NOT_COMPUTE):
            findings.append(check_provider_loads(provider))
    findings.append(_preference(device_preference, available, generic_device))
    return findings


def _version() -> Finding:
    return ok(_A, "version", f"onnxruntime {ort.__version__} ({ort.__file__})",
              version=ort.__version__, device=ort.get_device())  # fmt: skip


def _distributions() -> Finding:
    installed = {}
    for name in _ORT_DISTRIBUTIONS:
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    listed = ", ".join(f"{name} {version}" for name, version in installed.items())
    if len(installed) > 1:
        return error(
            _A, "packages",
            f"several onnxruntime packages are installed at once: {listed}",
            "they share one import name and overwrite each other's files; uninstall all of "
            f"them (pip uninstall -y {' '.join(installed)}) and install exactly one",
            packages=installed,
        )  # fmt: skip
    return ok(_A, "packages", listed or "onnxruntime (no package metadata found)",
              packages=installed)  # fmt: skip


def _built_providers(available: list[str]) -> Finding:
    return ok(_A, "providers", "built with " + ", ".join(available), available=available)


def check_provider_loads(provider: str) -> Finding:
    """Create a session on a one-node model with `provider` and check that it stayed."""
    check = f"provider.{provider.removesuffix('ExecutionProvider').lower()}"
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the finding reports the failure, not ONNX Runtime's log
    try:
        session = ort.InferenceSession(
            identity_model(), options, providers=list(dict.fromkeys([provider, CPU_EP]))
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return error(_A, check, f"{provider} failed to create a session: {first}",
                     _fix_for(provider), provider=provider)  # fmt: skip
    actual = session.get_providers()
    if provider not in actual:
        return error(
            _A, check,
            f"{provider} is built in but did not load (the session fell back to "
            f"{', '.join(actual)})",
            _fix_for(provider), provider=provider, session_providers=actual,
        )  # fmt: skip
    return ok(_A, check, f"{provider} loads", provider=provider)


def _fix_for(provider: str) -> str:
    if provider in (CUDA_EP, TENSORRT_EP):
        fix = _GPU_FIX
        if provider == TENSORRT_EP:
            fix += "; TensorRT needs its libnvinfer libraries as well"
        return fix
    return f"reinstall the onnxruntime package that provides {provider}, or use --provider cpu"


def _preference(preference: Sequence[str], available: list[str], generic: bool) -> Finding:
    """Compare what the device profile prefers with what this build can offer."""
    if not preference:
        return ok(_A, "device_providers", "no device profile preference to compare")
    missing = []
    for name in preference:
        try:
            member = parse_provider(str(name))
        except Exception:  # an invalid name is reported by the profile's own validation
            continue
        if member.value in ("cuda", "tensorrt"):
            wanted = CUDA_EP if member.value == "cuda" else TENSORRT_EP
            if wanted not in available:
                missing.append(member.value)
    if missing and generic:
        return ok(
            _A, "device_providers",
            f"this build lacks {', '.join(missing)}, so runs use the CPU (the generic device "
            "profile uses a GPU only where one is installed)",
            preference=list(preference), missing=missing,
        )  # fmt: skip
    if missing:
        return warning(
            _A, "device_providers",
            f"the device profile prefers {', '.join(preference)}, but this build lacks "
            f"{', '.join(missing)}: models will run on the CPU",
            "install an onnxruntime build with the GPU providers for this board "
            "(see docs/jetson.md), or accept CPU latency",
            preference=list(preference), missing=missing,
        )  # fmt: skip
    return ok(_A, "device_providers", "the device profile's preferred providers are available",
              preference=list(preference))  # fmt: skip
