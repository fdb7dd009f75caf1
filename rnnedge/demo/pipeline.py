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

from rnnedge.errors import DeviceProfileError, InputError
from rnnedge.profiling.catalog import (
    USER_DEVICES_DIR,
    DeviceProfile,
    default_device,
    describe_host,
    describe_recognize,
    host_matches,
    load_device,
    read_profile,
)
from rnnedge.profiling.isolated import profile_in_child
from rnnedge.profiling.profile import UNKNOWN_DEVICE_HINT, confirm_host
from rnnedge.profiling.store import check_user_dir
from rnnedge.quantize import QuantMode, quantize_model
from rnnedge.runtime.session import Session

logger = logging.getLogger(__name__)

CELLS = ("lstm", "gru")
DEFAULT_MODES = (QuantMode.DYNAMIC_INT8, QuantMode.FP16)
# Written into the output folder by `rnnedge demo` (`rnnedge.report.write_demo_report`)
# after the artifacts.
REPORT_FILES = ("results.json", "report.html")


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


class DemoInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_demo`, with what the run had kept by then.

    A KeyboardInterrupt, so code that catches Ctrl-C still catches it. `files` are the
    names of the files this run wrote into `output_dir` and left there, `stored` the
    measurements it appended to `profile_path`, out of `total`.
    """

    def __init__(self, output_dir: Path, files: Sequence[str], stored: int, total: int,
                 profile_path: Path | None, named: bool = True) -> None:  # fmt: skip
        super().__init__()
        # Whether the caller named `output_dir`; else it is a new timestamped folder.
        self.named = named
        self.output_dir = output_dir
        self.files = tuple(files)
        self.stored = stored
        self.total = total
        self.profile_path = profile_path

    def describe(self) -> str:
        """Return one line: how far the run got, and which files and measurements it kept."""
        if self.stored == self.total:
            done = f"interrupted after all {self.total} measurements, before the report was done"
        else:
            done = f"interrupted after {self.stored} of {self.total} measurements"
        if self.files:
            names = ", ".join(self.files)
            verb = "is" if len(self.files) == 1 else "are"
            kept = f"{names} {verb} kept in {self.output_dir}"
        else:
            kept = "no artifact was kept"
        if self.stored == 0:
            stored = "no measurement was stored"
        else:
            which = "that measurement is" if self.stored == 1 else f"those {self.stored} are"
            stored = f"{which} stored in {self.profile_path}"
        text = f"{done}; {kept}, and {stored}"
        if self.files and self.named:
            text += "; to run the demo again, pass another --output-dir or delete those files"
        elif self.files:
            text += "; the next run writes a new folder, so delete this one if it is not needed"
        return text


def demo_file_names(modes: Sequence[QuantMode] = DEFAULT_MODES) -> tuple[str, ...]:
    """Return the names of the files the demo writes into its output folder, in that order."""
    names = []
    for cell in CELLS:
        names += [f"{cell}.pt", f"{cell}.onnx"]
        names += [f"{cell}.{_suffix(mode)}.onnx" for mode in modes]
    return (*names, *REPORT_FILES)


def _suffix(mode: QuantMode) -> str:
    return "int8" if mode is QuantMode.DYNAMIC_INT8 else mode.precision


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

    Every argument is checked before any work starts, and an output folder that already
    holds a file the demo writes (see `demo_file_names`) is refused. The artifact folder is
    created next, and removed again when the run fails before writing anything into it.

    Args:
        force_device: record under `device` even when this host does not match it (see
            `rnnedge.profiling.profile.confirm_host`).

    Raises:
        DemoInterrupted: Ctrl-C; it names the files and measurements kept so far.
    """
    say = progress or (lambda message: logger.info("%s", message))
    output_dir = None if output_dir is None else Path(output_dir)
    profile = check_demo_options(output_dir, device, epochs, hidden_size, runs, user_dir,
                                 force_device, modes)  # fmt: skip
    named = output_dir is not None
    created = output_dir is None or not output_dir.exists()
    output_dir = _writable_output_dir(output_dir)
    profile_path = check_user_dir(user_dir) / f"{profile.name}.yaml"
    before = _measurement_count(profile_path)
    reported: list[Path] = []  # the profile path of each measurement stored
    try:
        return _run_pipeline(output_dir, profile, epochs, hidden_size, runs, modes, user_dir,
                             say, force_device, reported)  # fmt: skip
    except KeyboardInterrupt as exc:
        _remove_if_empty(output_dir, created)
        after = _measurement_count(profile_path)
        # The profile counts a measurement whose child process stored it just before the
        # Ctrl-C reached this process; the list counts only those reported back.
        stored = after - before if after is not None and before is not None else None
        if stored is None or stored < 0:
            stored = len(reported)
        kept = [name for name in demo_file_names(modes) if (output_dir / name).is_file()]
        raise DemoInterrupted(output_dir, kept, stored, len(CELLS) * (1 + len(modes)),
                              profile_path, named) from exc  # fmt: skip
    except BaseException:
        _remove_if_empty(output_dir, created)
        raise


def _remove_if_empty(output_dir: Path, created: bool) -> None:
    if created and output_dir.is_dir() and not any(output_dir.iterdir()):
        logger.info("removing the empty demo folder %s", output_dir)
        output_dir.rmdir()


def _measurement_count(path: Path) -> int | None:
    """Count the measurements in the profile at `path`: 0 if it is missing, None if it
    cannot be read."""
    if not path.exists():
        return 0
    try:
        return len(read_profile(path).measurements)
    except (DeviceProfileError, OSError):
        return None


def check_demo_options(
    output_dir: Path | None,
    device: str | DeviceProfile | None,
    epochs: int,
    hidden_size: int,
    runs: int,
    user_dir: str | os.PathLike[str],
    force_device: bool = False,
    modes: Sequence[QuantMode] = DEFAULT_MODES,
) -> DeviceProfile:
    """Check the demo's arguments without doing any work; return the device profile.

    Raises:
        InputError: an argument is out of range, or `output_dir` is a file or already
            contains a file that the demo writes.
        DeviceProfileError: `device` is unknown, or does not describe this host and
            `force_device` is not set.
    """
    for name, value in (("epochs", epochs), ("hidden size", hidden_size), ("run count", runs)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    check_user_dir(user_dir)
    if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output-dir {str(output_dir)!r} is a file; pass a folder")
    if output_dir is not None and output_dir.is_dir():
        taken = next((n for n in demo_file_names(modes) if (output_dir / n).exists()), None)
        if taken is not None:
            raise InputError(
                f"--output-dir {str(output_dir)!r} already contains {taken}, which the demo "
                "would overwrite; pass another --output-dir or an empty folder"
            )
    profile = _resolve_device(device, user_dir)
    if device is not None and not force_device and not host_matches(profile):
        # confirm_host's fix names profiling on the device over SSH, which the demo lacks.
        raise DeviceProfileError(
            f"this host ({describe_host()}) does not look like device {profile.name!r}, "
            f"whose recognize rules need {describe_recognize(profile)}; the demo measures "
            "the host it runs on, so run it on that device, omit --device to record this "
            "host under its own name, or pass --force-device (force_device=True from "
            "Python) to record this host's measurements under it anyway"
        )
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
    stored: list[Path],
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
            target = output_dir / f"{cell}.{_suffix(mode)}.onnx"
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
            if profile_path is not None:
                stored.append(profile_path)
            say(f"{path.name}: accuracy {accuracy:.3f}, p50 {result.latency.p50_ms:.3f} ms")
            rows.append(DemoRow(
                model=cell,
                precision=precision,
                accuracy=round(accuracy, 4),
                size_bytes=path.stat().st_size,
                # Unrounded, so that the table, its progress line and results.json each
                # round the measured value once.
                p50_ms=result.latency.p50_ms,
                p99_ms=result.latency.p99_ms,
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
