"""The demo pipeline: train, export, quantize, score with ONNX Runtime, profile.

Every accuracy is computed by ONNX Runtime on the exported or quantized file, from raw
sensor values; the runtime applies the normalization stored in the model's metadata.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rnnedge.errors import InputError
from rnnedge.profiling.catalog import USER_DEVICES_DIR, DeviceProfile, default_device, load_device
from rnnedge.profiling.isolated import profile_in_child
from rnnedge.profiling.profile import UNKNOWN_DEVICE_HINT, confirm_host
from rnnedge.profiling.store import check_user_dir
from rnnedge.quantize import QuantMode, quantize_model
from rnnedge.runtime.session import Session

logger = logging.getLogger(__name__)

CELLS = ("lstm", "gru")
DEFAULT_MODES = (QuantMode.DYNAMIC_INT8, QuantMode.FP16)


@dataclass(frozen=True)
class DemoRow:
    """One artifact: which model, its precision and what it costs and achieves."""

    model: str
    precision: str
    accuracy: float
    size_bytes: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class DemoResult:
    device: str
    output_dir: Path
    profile_path: Path | None
    rows: tuple[DemoRow, ...]
    notes: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {"device": self.device, "rows": [asdict(row) for row in self.rows]}


def new_output_dir(base: Path = Path(".")) -> Path:
    """A new, empty folder named after the current time, in `base`."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in [""] + [f"-{i}" for i in range(1, 100)]:
        candidate = base / f"rnnedge-demo-{stamp}{suffix}"
        if not candidate.exists():
            candidate.mkdir(parents=True)
            return candidate
    raise InputError(f"cannot find a free folder name for the demo in {base}; pass --output-dir")


def run_demo(
    output_dir: str | os.PathLike[str] | None = None,
    device: str | DeviceProfile | None = None,
    epochs: int = 60,
    hidden_size: int = 32,
    runs: int = 200,
    modes: Sequence[QuantMode] = DEFAULT_MODES,
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR,
    progress: Callable[[str], None] | None = None,
    *,
    force_device: bool = False,
) -> DemoResult:
    """Train an LSTM and a GRU on BasicMotions and compare every artifact on this host.

    Every argument is checked before any work starts. The artifact folder is created
    next, and removed again when the run fails before writing anything into it.

    Args:
        force_device: record under `device` even when this host does not match it (see
            `rnnedge.profiling.profile.confirm_host`).
    """
    say = progress or (lambda message: logger.info("%s", message))
    output_dir = None if output_dir is None else Path(output_dir)
    profile = check_demo_options(output_dir, device, epochs, hidden_size, runs, user_dir,
                                 force_device)  # fmt: skip
    created = output_dir is None or not output_dir.exists()
    output_dir = _writable_output_dir(output_dir)
    try:
        return _run_pipeline(output_dir, profile, epochs, hidden_size, runs, modes, user_dir,
                             say, force_device)  # fmt: skip
    except BaseException:
        if created and output_dir.is_dir() and not any(output_dir.iterdir()):
            logger.info("removing the empty demo folder %s", output_dir)
            output_dir.rmdir()
        raise


def check_demo_options(
    output_dir: Path | None,
    device: str | DeviceProfile | None,
    epochs: int,
    hidden_size: int,
    runs: int,
    user_dir: str | os.PathLike[str],
    force_device: bool = False,
) -> DeviceProfile:
    """Check the demo's arguments without doing any work; return the device profile."""
    for name, value in (("epochs", epochs), ("hidden size", hidden_size), ("run count", runs)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    check_user_dir(user_dir)
    if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output-dir {str(output_dir)!r} is a file; pass a folder")
    profile = _resolve_device(device, user_dir)
    confirm_host(profile, device is not None, force_device, records=True)
    return profile


def _run_pipeline(
    output_dir: Path,
    profile: DeviceProfile,
    epochs: int,
    hidden_size: int,
    runs: int,
    modes: Sequence[QuantMode],
    user_dir: str | os.PathLike[str],
    say: Callable[[str], None],
    force_device: bool,
) -> DemoResult:
    from rnnedge.demo.data import load_basic_motions
    from rnnedge.demo.train import train_classifier
    from rnnedge.export import export_checkpoint, save_checkpoint

    say("loading BasicMotions (sktime)")
    dataset = load_basic_motions()
    rows: list[DemoRow] = []
    notes: list[str] = []
    profile_path = None
    for cell in CELLS:
        say(f"training {cell.upper()} ({epochs} epochs, hidden size {hidden_size})")
        model = train_classifier(dataset, cell, hidden_size=hidden_size, epochs=epochs)
        checkpoint = output_dir / f"{cell}.pt"
        save_checkpoint(model, checkpoint, list(dataset.labels), dataset.normalization())

        float_path = output_dir / f"{cell}.onnx"
        report = export_checkpoint(checkpoint, float_path)
        say(f"exported {float_path.name}: parity max abs error {report.parity.max_abs_error:.2g}")
        artifacts = [("fp32", float_path)]
        for mode in modes:
            suffix = "int8" if mode is QuantMode.DYNAMIC_INT8 else mode.precision
            target = output_dir / f"{cell}.{suffix}.onnx"
            quantized = quantize_model(float_path, target, mode, samples=_normalized(dataset))
            notes.extend(f"{cell} {mode.precision}: {note}" for note in quantized.notes)
            artifacts.append((mode.precision, target))

        for precision, path in artifacts:
            accuracy = score(path, dataset.x_test, dataset.y_test)
            # A child process without torch, so peak_rss_mb compares with rnnedge profile's.
            result = profile_in_child(
                path,
                device=profile,
                provider="cpu",
                batch=1,
                seq_len=dataset.x_test.shape[1],
                runs=runs,
                user_dir=user_dir,
                force_device=force_device,
            )
            profile_path = result.profile_path
            say(f"{path.name}: accuracy {accuracy:.3f}, p50 {result.latency.p50_ms:.3f} ms")
            rows.append(DemoRow(
                model=cell,
                precision=precision,
                accuracy=round(accuracy, 4),
                size_bytes=path.stat().st_size,
                p50_ms=round(result.latency.p50_ms, 4),
                p99_ms=round(result.latency.p99_ms, 4),
            ))  # fmt: skip
    return DemoResult(profile.name, output_dir, profile_path, tuple(rows), tuple(notes))


def _writable_output_dir(output_dir: Path | None) -> Path:
    """Create the artifact folder and check it is writable, before any training."""
    try:
        if output_dir is None:
            output_dir = new_output_dir()
        else:
            output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        folder = str(output_dir) if output_dir is not None else "the current folder"
        raise InputError(
            f"cannot create the demo folder in {folder!r}: {exc.strerror}; pass --output-dir "
            "with a writable folder"
        ) from exc
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise InputError(
            f"--output-dir {str(output_dir)!r} is not writable; pass a writable folder"
        )
    return output_dir


def score(model_path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy of a classification model, computed with ONNX Runtime alone."""
    session = Session(model_path, provider="cpu")
    logits = session.run(x)[session.output_names[0]]
    return float(np.mean(logits.argmax(axis=-1) == y))


def _normalized(dataset) -> np.ndarray:
    stats = dataset.normalization()
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)
    return np.ascontiguousarray((dataset.x_train - mean) / std, dtype=np.float32)


def _resolve_device(
    device: str | DeviceProfile | None, user_dir: str | os.PathLike[str]
) -> DeviceProfile:
    if isinstance(device, DeviceProfile):
        return device
    if device is None:
        return default_device(user_dir)
    return load_device(device, user_dir, hint=UNKNOWN_DEVICE_HINT)
