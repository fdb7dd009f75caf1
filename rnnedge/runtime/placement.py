"""Which execution provider ran each node, read from ONNX Runtime's session profile.

`InferenceSession.get_providers()` lists the providers a session registered, not where
the nodes went: a CUDA session can still run an unsupported operator on the CPU, and a
TensorRT session runs the subgraphs it accepted as fused `TRTKernel_*` nodes and leaves
the rest to CUDA or the CPU. ONNX Runtime's session profiler records every executed node
with its `op_name` and `provider`, so rnnedge starts the session with profiling on,
ends profiling after the first run, and reads the placement from the profile's JSON.
The profile covers the nodes that the first run executed; a node inside a branch of
`If` that the run did not take does not appear.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rnnedge.errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Executed nodes per execution provider: operator counts and node names."""

    operators: dict[str, dict[str, int]] = field(default_factory=dict)
    nodes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def providers(self) -> list[str]:
        """Providers that ran at least one node, in the order of first use."""
        return list(self.operators)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {ep: dict(ops) for ep, ops in self.operators.items()}

    def describe(self) -> list[str]:
        """One line per provider: `CPUExecutionProvider: 12 nodes (GRU x2, MatMul x1)`."""
        lines = []
        for ep, ops in self.operators.items():
            count = sum(ops.values())
            detail = ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()))
            lines.append(f"{ep}: {count} node{'s' if count != 1 else ''} ({detail})")
        return lines


def read_profile(path: str | os.PathLike[str]) -> Placement:
    """Parse an ONNX Runtime profile (a JSON list of trace events) into a placement."""
    try:
        events = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the ONNX Runtime profile {str(path)!r}: {exc}") from exc
    operators: dict[str, Counter[str]] = {}
    nodes: dict[str, list[str]] = {}
    seen: set[str] = set()
    for event in events:
        if not isinstance(event, dict) or event.get("cat") != "Node":
            continue
        args = event.get("args") or {}
        provider = args.get("provider")
        name = str(event.get("name", ""))
        # Each node appears as *_fence_before, *_kernel_time and *_fence_after events;
        # only the kernel event carries the provider.
        if not provider or not name.endswith("_kernel_time"):
            continue
        node = name[: -len("_kernel_time")]
        if node in seen:
            continue
        seen.add(node)
        operators.setdefault(provider, Counter())[str(args.get("op_name", "?"))] += 1
        nodes.setdefault(provider, []).append(node)
    return Placement({ep: dict(ops) for ep, ops in operators.items()}, nodes)
