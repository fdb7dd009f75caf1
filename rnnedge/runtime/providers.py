"""Execution provider names, their ONNX Runtime identifiers, and the checked selection.

rnnedge never lets a provider fall back silently: ONNX Runtime quietly drops a provider it
cannot load and runs on the CPU, so after a session starts its actual providers are
compared with the request, and a difference is a warning or, in strict mode, an error.
"""

from __future__ import annotations

import enum
import logging
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import onnxruntime as ort

from rnnedge.errors import InputError, ProviderError

logger = logging.getLogger(__name__)
# The logger of the fallback warnings. The CLI keeps it at WARNING under -q, because a
# fallback must never be silent.
fallback_logger = logging.getLogger(f"{__name__}.fallback")

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"
XNNPACK_EP = "XnnpackExecutionProvider"
ACL_EP = "ACLExecutionProvider"


class Provider(str, enum.Enum):
    """The provider names users pass to `--provider`."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"
    ARM = "arm"


# Each name expands to ONNX Runtime providers in priority order. The CPU provider ends
# every chain except where the user asked for an accelerator, so that a missing
# accelerator shows up as a fallback rather than as a silent CPU run.
_CHAINS: dict[Provider, tuple[str, ...]] = {
    Provider.CPU: (CPU_EP,),
    Provider.CUDA: (CUDA_EP,),
    Provider.TENSORRT: (TENSORRT_EP, CUDA_EP),
    # The CPU provider has NEON kernels on aarch64; XNNPACK and ACL are used where the
    # installed build has them (the PyPI aarch64 wheels do not).
    Provider.ARM: (ACL_EP, XNNPACK_EP, CPU_EP),
}


def parse_provider(name: str) -> Provider:
    """Parse a provider name, accepting ONNX Runtime's own identifiers too."""
    lowered = name.strip().lower()
    for member in Provider:
        if lowered == member.value:
            return member
    aliases = {
        CPU_EP.lower(): Provider.CPU,
        CUDA_EP.lower(): Provider.CUDA,
        TENSORRT_EP.lower(): Provider.TENSORRT,
        "trt": Provider.TENSORRT,
    }
    if lowered in aliases:
        return aliases[lowered]
    choices = ", ".join(p.value for p in Provider)
    raise InputError(f"unknown provider {name!r}; choose one of: {choices}")


def available_providers() -> list[str]:
    """Providers the installed onnxruntime build offers."""
    return list(ort.get_available_providers())


@dataclass(frozen=True)
class ProviderPlan:
    """The ONNX Runtime providers to request, with their options."""

    requested: Provider
    providers: tuple[str, ...]
    options: tuple[dict[str, Any], ...]
    # Whether the requested provider is missing from this build or host, so that the plan
    # falls back to the CPU provider.
    fallback: bool = False

    def as_ort_list(self) -> list[tuple[str, dict[str, Any]]]:
        return [(name, dict(opts)) for name, opts in zip(self.providers, self.options, strict=True)]


def plan_providers(
    request: Provider | str,
    preference: Sequence[str] = (),
    options: Mapping[str, Mapping[str, Any]] | None = None,
    available: Sequence[str] | None = None,
    strict: bool = False,
) -> ProviderPlan:
    """Choose the ONNX Runtime providers for `request`.

    Args:
        request: a `Provider` or its name.
        preference: for `auto`, rnnedge provider names in order (from the device
            profile); defaults to cuda, then cpu.
        options: provider options keyed by rnnedge provider name (`cpu`, `cuda`, ...).
        available: the installed build's providers; read from onnxruntime if omitted.
        strict: raise `ProviderError` instead of warning when a requested provider
            is not available.
    """
    request = parse_provider(request) if isinstance(request, str) else request
    available = list(available if available is not None else available_providers())
    options = options or {}

    fallback = False
    if request is Provider.AUTO:
        names = [parse_provider(p) for p in (preference or ("tensorrt", "cuda", "cpu"))]
        wanted: list[str] = []
        for member in names:
            wanted.extend(ep for ep in _CHAINS[member] if ep in available)
        chosen = _dedupe(wanted) or [CPU_EP]
        if CPU_EP not in chosen:
            chosen.append(CPU_EP)
    else:
        chain = _CHAINS[request]
        chosen = [ep for ep in chain if ep in available]
        problem = None
        if request is Provider.ARM and not is_arm_host():
            problem = f"provider 'arm' needs an ARM CPU, but this host is {platform.machine()}"
        elif request is not Provider.ARM and chain[0] not in available:
            problem = (
                f"provider {request.value!r} needs {chain[0]}, which this onnxruntime "
                f"build does not offer (available: {', '.join(available)})"
            )
        if problem is not None:
            hint = _install_hint(request)
            if strict:
                raise ProviderError(f"{problem}; {hint}")
            fallback_logger.warning(
                "%s; falling back to %s. %s", problem, CPU_EP, hint[0].upper() + hint[1:]
            )
        fallback = problem is not None
        if CPU_EP not in chosen:
            chosen.append(CPU_EP)

    ep_options = tuple(dict(options.get(_rnnedge_name(ep), {})) for ep in chosen)
    return ProviderPlan(
        requested=request,
        providers=tuple(chosen),
        options=ep_options,
        fallback=fallback,
    )


def check_session_providers(
    plan: ProviderPlan, actual: Sequence[str], strict: bool = False
) -> list[str]:
    """Compare the providers a session got with the plan; warn or raise on a fallback.

    Returns the planned providers, other than the CPU provider, that the session lacks.
    """
    dropped = [ep for ep in plan.providers if ep not in actual and ep != CPU_EP]
    if not dropped:
        return dropped
    message = (
        f"requested providers {list(plan.providers)} but the session uses {list(actual)}: "
        f"{', '.join(dropped)} failed to load"
    )
    if strict:
        raise ProviderError(f"{message}; {_install_hint(plan.requested)}")
    fallback_logger.warning("%s; %s", message, _install_hint(plan.requested))
    return dropped


def is_arm_host() -> bool:
    """Whether this Python runs on an ARM CPU."""
    return platform.machine().lower() in {"aarch64", "arm64", "armv7l", "armv8l"}


def _install_hint(request: Provider) -> str:
    if request in (Provider.CUDA, Provider.TENSORRT, Provider.AUTO):
        return (
            "install onnxruntime-gpu (pip install 'rnnedge[cuda]') with a matching CUDA "
            "and cuDNN, or pass --provider cpu"
        )
    if request is Provider.ARM:
        return "run on the ARM board itself, or pass --provider cpu"
    return "pass --provider cpu"


def _rnnedge_name(ep: str) -> str:
    return {
        CPU_EP: "cpu",
        CUDA_EP: "cuda",
        TENSORRT_EP: "tensorrt",
        XNNPACK_EP: "xnnpack",
        ACL_EP: "acl",
    }.get(ep, ep)


def _dedupe(items: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
