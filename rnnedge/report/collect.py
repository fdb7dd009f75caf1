"""Finding the inputs of the HTML report in a set of folders.

The report reads, under each folder given (recursively, skipping hidden folders, `.venv`
and rnnedge's shipped catalog, whose entries contain no measurements and would appear
beside the user's profiles of the same names):

- device profiles: `*.yaml` files that validate as rnnedge device profiles;
- export and quantize reports: `*.report.json`, the documents that `rnnedge export --json`
  and `rnnedge quantize --json` print (an export report has `parity`, a quantize report
  has `mode` and `drift`);
- demo results: `results.json` or `*.results.json`, the document `rnnedge demo --json`
  prints (`{"device": ..., "rows": [{"model", "precision", "accuracy", "p50_ms", ...}]}`).
  Any of these JSON files may carry an `accuracy`, with `output` or `model` naming the
  artifact. The accuracy axis of the report comes from these fields.

Files that look like inputs but cannot be used are listed in `ReportInputs.skipped` with
the reason, and the report shows them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnedge.errors import DeviceProfileError, InputError
from rnnedge.profiling.catalog import DeviceProfile, is_catalog_folder, read_profile

logger = logging.getLogger(__name__)

_SKIPPED_DIRS = {".venv", "venv", "node_modules", "__pycache__"}
# Deeper trees are almost certainly not rnnedge output folders.
_MAX_DEPTH = 4


@dataclass
class ReportInputs:
    """Everything the report found, and what it skipped with the reason."""

    profiles: list[DeviceProfile] = field(default_factory=list)
    quantize_reports: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    export_reports: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    demo_results: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def measurement_count(self) -> int:
        return sum(len(p.measurements) for p in self.profiles)

    def is_empty(self) -> bool:
        return not (
            self.profiles or self.quantize_reports or self.export_reports or self.demo_results
        )


def _walk(root: Path) -> Iterator[Path]:
    base_depth = len(root.parts)
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).parts) - base_depth
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and d not in _SKIPPED_DIRS and depth < _MAX_DEPTH
            and not is_catalog_folder(Path(folder) / d)
        )  # fmt: skip
        for name in sorted(files):
            yield Path(folder) / name


def collect(folders: Sequence[str | os.PathLike[str]]) -> ReportInputs:
    """Read every report input under `folders`.

    Raises:
        InputError: a folder does not exist or is not a folder.
    """
    inputs = ReportInputs()
    seen: set[Path] = set()
    for folder in folders:
        root = Path(folder)
        if root.is_file():
            raise InputError(
                f"report folder {str(root)!r} is a file; pass the folder that contains it "
                f"({str(root.parent)!r}): the report reads every report file in a folder"
            )
        if not root.is_dir():
            raise InputError(f"report folder {str(root)!r} not found; pass an existing folder")
        for path in _walk(root):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            _read_one(path, inputs)
    return inputs


def _read_one(path: Path, inputs: ReportInputs) -> None:
    name = path.name
    if name.endswith((".yaml", ".yml")):
        try:
            inputs.profiles.append(read_profile(path))
        except DeviceProfileError as exc:
            inputs.skipped.append((path, str(exc)))
        return
    if not (name == "results.json" or name.endswith((".results.json", ".report.json"))):
        return
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, json.JSONDecodeError) as exc:
        inputs.skipped.append((path, f"not readable as JSON: {exc}"))
        return
    if not isinstance(document, dict):
        inputs.skipped.append((path, "not a JSON object"))
    elif isinstance(document.get("rows"), list):
        inputs.demo_results.append((path, document))
    elif "parity" in document:
        inputs.export_reports.append((path, document))
    elif "drift" in document and "mode" in document:
        inputs.quantize_reports.append((path, document))
    else:
        inputs.skipped.append((path, "neither an export, a quantize nor a demo report"))


def accuracy_by_artifact(inputs: ReportInputs) -> dict[str, float]:
    """Accuracy by artifact file name, from demo results and from any report with one.

    Demo rows name the model (`lstm`) and precision (`int8`); the demo's files are
    `<model>.onnx` for fp32 and `<model>.<precision>.onnx` otherwise.
    """
    found: dict[str, float] = {}
    for _, document in inputs.demo_results:
        for row in _dicts(document.get("rows")):
            if isinstance(row.get("accuracy"), (int, float)):
                found[demo_file_name(row)] = float(row["accuracy"])
    for _, document in [*inputs.quantize_reports, *inputs.export_reports]:
        artifact = document.get("output") or document.get("model")
        if artifact and isinstance(document.get("accuracy"), (int, float)):
            found[Path(str(artifact)).name] = float(document["accuracy"])
    return found


def demo_file_name(row: dict[str, Any]) -> str:
    precision = str(row.get("precision"))
    model = str(row.get("model"))
    return f"{model}.onnx" if precision == "fp32" else f"{model}.{precision}.onnx"


def _dicts(items: Any) -> Iterable[dict[str, Any]]:
    return [item for item in items or [] if isinstance(item, dict)]
