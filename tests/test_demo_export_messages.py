"""`rnnedge demo`, `rnnedge export --labels`, the report and the README's claims.

Covered: a demo output folder that already contains the demo's files, a Ctrl-C during the
demo, `export --labels`, messages that name the right fix, the report's plots and
measurement table, and the README's demo sample and int8 GRU claim.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from rnnedge.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICK_DEMO = ["--epochs", "1", "--runs", "2"]
QUICK_PROFILE = ["--runs", "3", "--warmup", "0", "--operators", "0", "--provider", "cpu",
                 "--threads", "1"]  # fmt: skip


def _other_device() -> str:
    from rnnedge.profiling.catalog import catalog_names, host_matches, load_device

    return next(n for n in catalog_names() if not host_matches(load_device(n, "/nonexistent")))


# --- 1. the demo does not overwrite the user's files -------------------------------------


def test_demo_refuses_taken_output_dir(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sktime")
    monkeypatch.chdir(tmp_path)
    mine = {"lstm.onnx": b"my lstm", "gru.onnx": b"my gru", "results.json": b"{}"}
    for name, data in mine.items():
        (tmp_path / name).write_bytes(data)
    code = main(["demo", "--output-dir", ".", "--devices-dir", "devs", *QUICK_DEMO])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "already contains lstm.onnx" in lines[0]  # the first the demo would write
    assert "pass another --output-dir or an empty folder" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(mine)  # nothing written
    for name, data in mine.items():
        assert (tmp_path / name).read_bytes() == data


def test_run_demo_refuses_report_file(tmp_path):
    from rnnedge.demo import run_demo
    from rnnedge.errors import InputError

    (tmp_path / "report.html").write_text("mine")
    with pytest.raises(InputError, match=r"already contains report\.html"):
        run_demo(output_dir=tmp_path, runs=1, epochs=1, user_dir=tmp_path / "devs")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


# --- 2. Ctrl-C during the demo reports what was kept -------------------------------------


def test_demo_interrupt_names_kept_files(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sktime")
    import rnnedge.demo.pipeline as pipeline

    real = pipeline.profile_in_child
    calls = []

    def stopped_at_third(*args, **kwargs):  # Ctrl-C while the third file is measured
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "profile_in_child", stopped_at_third)
    out, devices = tmp_path / "out", tmp_path / "devs"
    code = main(["demo", "--output-dir", str(out), "--devices-dir", str(devices), *QUICK_DEMO])
    err = capsys.readouterr().err
    assert code == 130
    (profile,) = devices.glob("*.yaml")
    assert len(yaml.safe_load(profile.read_text())["measurements"]) == 2
    kept = "lstm.pt, lstm.onnx, lstm.int8.onnx, lstm.fp16.onnx"
    assert err.strip().splitlines()[-1] == (
        f"error: interrupted after 2 of 6 measurements; {kept} are kept in {out}, and "
        f"those 2 are stored in {profile}; to run the demo again, pass another "
        "--output-dir or delete those files"
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(kept.split(", "))


def test_demo_interrupt_default_folder_advice(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sktime")
    import rnnedge.demo.pipeline as pipeline

    def stopped(*args, **kwargs):  # Ctrl-C while the first file is measured
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "profile_in_child", stopped)
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--devices-dir", str(tmp_path / "devs"), *QUICK_DEMO])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 130
    assert last.endswith(
        "; the next run writes a new folder, so delete this one if it is not needed"
    )
    assert "--output-dir" not in last


def test_demo_interrupt_in_training_keeps_nothing(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sktime")
    import rnnedge.demo.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rnnedge.demo.train, "train_classifier", interrupted)
    code = main(["demo", "--output-dir", str(tmp_path / "out"), "--devices-dir",
                 str(tmp_path / "devs"), *QUICK_DEMO])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        "error: interrupted after 0 of 6 measurements; no artifact was kept, and no "
        "measurement was stored"
    )
    assert list(tmp_path.iterdir()) == []


# --- 3. export --labels, and `rnnedge run` printing the labels ---------------------------

MODEL_FILE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(6, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def build():
    torch.manual_seed(0)
    return Net()


def regressor():
    torch.manual_seed(0)
    model = Net()
    model.head = nn.Linear(8, 1)
    return model


def notmodule():
    return 3
"""


@pytest.fixture
def model_file(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(MODEL_FILE))
    return path


def test_labels_export_prints_predictions(model_file, tmp_path, capsys):
    from rnnedge.runtime import Session
    from rnnedge.runtime.metadata import Task

    code = main(["export", "net.py:build", "-o", "net.onnx", "--example-shape", "1x20x6",
                 "--labels", "sit,stand,walk"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "classes: sit, stand, walk" in out
    session = Session(tmp_path / "net.onnx", provider="cpu")
    assert session.metadata.task is Task.CLASSIFICATION
    assert session.metadata.labels == ("sit", "stand", "walk")

    x = np.random.default_rng(0).standard_normal((5, 20, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", "net.onnx", "--input", "x.npy", "--provider", "cpu"]) == 0
    out = capsys.readouterr().out
    logits = session.run(x)[session.output_names[0]]
    expected = ", ".join(("sit", "stand", "walk")[i] for i in logits.argmax(axis=-1))
    assert f"predictions: {expected}" in out.splitlines()


def test_export_without_labels_shapes_only(model_file, capsys):
    assert main(["export", "net.py:build", "-o", "net.onnx", "--example-shape", "1x20x6"]) == 0
    np.save("x.npy", np.zeros((2, 20, 6), dtype=np.float32))
    capsys.readouterr()
    assert main(["run", "net.onnx", "--input", "x.npy", "--provider", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "output output: shape (2, 3)" in out.splitlines()
    assert "predictions:" not in out


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        pytest.param(
            "a,b",
            "names 2 classes, but the model's first output 'output' has 3 on its last axis "
            "(shape (",
            id="count",
        ),
        pytest.param("a,,b", "has an empty class name", id="empty"),
        pytest.param("a,b,a", "names 'a' more than once", id="repeated"),
        pytest.param("a", "names 1 class; a classifier has at least 2", id="one"),
    ],
)
def test_export_labels_rejected(model_file, tmp_path, capsys, labels, message):
    code = main(["-q", "export", "net.py:build", "-o", "net.onnx", "--example-shape",
                 "1x20x6", "--labels", labels])  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert message in lines[0]
    assert not (tmp_path / "net.onnx").exists()


def test_export_labels_on_regressor(model_file, capsys):
    code = main(["-q", "export", "net.py:regressor", "-o", "reg.onnx", "--example-shape",
                 "1x20x6", "--labels", "a,b,c"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "one value per sequence, so it is not a classifier's scores; drop --labels" in err
    assert not (model_file.parent / "reg.onnx").exists()


def test_labels_differ_from_checkpoint(exported, tmp_path, capsys):
    code = main(["export", str(exported["lstm.pt"]), "-o", str(tmp_path / "m.onnx"),
                 "--labels", "a,b,c,d"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "records the labels badminton,running,standing,walking" in err
    assert not (tmp_path / "m.onnx").exists()


# --- 4. messages --------------------------------------------------------------------------


def test_factory_returning_int_message(model_file, capsys):
    code = main(["export", "net.py:notmodule", "-o", "n.onnx", "--example-shape", "1x5x6"])
    err = capsys.readouterr().err
    assert code == 2
    assert "returned an int, not a torch.nn.Module; make it return the model" in err


def test_demo_other_device_fix(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sktime")
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--device", _other_device(), *QUICK_DEMO])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1
    assert "--remote" not in lines[0]
    assert "omit --device" in lines[0]
    assert "--force-device" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_profile_mismatch_names_keyword(exported, tmp_path, capsys):
    from rnnedge.errors import DeviceProfileError
    from rnnedge.profiling.profile import profile_model

    other = _other_device()
    with pytest.raises(DeviceProfileError) as info:
        profile_model(exported["lstm"], device=other, user_dir=tmp_path / "devs")
    assert "force_device=True" in str(info.value)
    code = main(["profile", str(exported["lstm"]), "--device", other, "--devices-dir",
                 str(tmp_path / "devs"), *QUICK_PROFILE])  # fmt: skip
    assert code == 2
    assert "pass --force-device" in capsys.readouterr().err


# --- 5. the report ------------------------------------------------------------------------


def _profile(model: Path, devices: Path, seq_len: int) -> None:
    code = main(["-q", "profile", str(model), "--device", "x86-64", "--force-device", "--seq-len",
                 str(seq_len), "--devices-dir", str(devices), *QUICK_PROFILE])  # fmt: skip
    assert code == 0


def test_report_one_length_no_latency_plot(exported, tmp_path):
    from rnnedge.report import build_report

    devices = tmp_path / "devs"
    _profile(exported["lstm"], devices, 100)
    _profile(exported["gru"], devices, 100)
    summary = build_report([devices], tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "latency" not in summary.plots
    assert "no latency plot: every measurement is at sequence length 100" in html

    _profile(exported["lstm"], devices, 10)
    summary = build_report([devices], tmp_path / "r2.html")
    assert "latency" in summary.plots


def test_report_table_shows_measurement_time(exported, tmp_path):
    from rnnedge.report import build_report

    devices = tmp_path / "devs"
    _profile(exported["lstm"], devices, 5)
    _profile(exported["lstm"], devices, 5)  # a second run of the same model
    build_report([devices], tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "<th>measured (UTC)</th>" in html
    (profile,) = devices.glob("*.yaml")
    for entry in yaml.safe_load(profile.read_text())["measurements"]:
        stamp = str(entry["timestamp"])  # such as 2025-01-31T14:05:09+00:00
        assert stamp.endswith("+00:00")
        assert f"<td>{stamp[:10]} {stamp[11:19]}</td>" in html


# The p50 ms of two real demo runs on one host, in the order lstm fp32, int8, fp16, gru fp32,
# int8, fp16: every artifact at accuracy 1.0 within 0.01 ms of the others, two at one p50.
DEMO_LATENCIES = {
    "run1": [0.048, 0.057, 0.050, 0.055, 0.057, 0.057],
    "run2": [0.0556, 0.0557, 0.0499, 0.0546, 0.056, 0.056],
}


@pytest.mark.parametrize("latencies", DEMO_LATENCIES.values(), ids=DEMO_LATENCIES.keys())
def test_accuracy_labels_do_not_overlap(monkeypatch, latencies):
    pytest.importorskip("matplotlib")
    from matplotlib.text import Text

    from rnnedge.report import figures

    drawn = []
    monkeypatch.setattr(figures, "_png", lambda figure: drawn.append(figure) or b"png")
    names = [("lstm", "fp32"), ("lstm", "int8"), ("lstm", "fp16"), ("gru", "fp32"),
             ("gru", "int8"), ("gru", "fp16")]  # fmt: skip
    rows = [(m, p, t) for (m, p), t in zip(names, latencies, strict=True)]
    points = [{"label": f"{m} {p}", "accuracy": 1.0, "p50_ms": t, "model": m, "precision": p}
              for m, p, t in rows]  # fmt: skip
    assert figures.accuracy_figure(points) == b"png"
    (figure,) = drawn
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    texts = figure.axes[0].texts
    assert sorted(t.get_text() for t in texts) == sorted(p["label"] for p in points)
    boxes = [(t.get_text(), Text.get_window_extent(t, renderer)) for t in texts]
    for i, (name, box) in enumerate(boxes):
        for other, other_box in boxes[i + 1 :]:
            assert not box.overlaps(other_box), f"{name!r} overlaps {other!r}"
    figures._pyplot().close(figure)


# --- 6. the README ------------------------------------------------------------------------


def test_readme_demo_sample_size(exported):
    """The float LSTM's size does not depend on training: it is the demo's at any epoch count."""
    pytest.importorskip("sktime")
    from rnnedge.demo.data import load_basic_motions
    from rnnedge.demo.train import train_classifier
    from rnnedge.export import export_checkpoint, save_checkpoint

    readme = (ROOT / "README.md").read_text()
    sample = re.search(r"^lstm\s+fp32\s+\S+\s+([\d.]+)KB", readme, re.MULTILINE)
    assert sample, "no lstm fp32 row in the README's demo sample"
    dataset = load_basic_motions()
    model = train_classifier(dataset, "lstm", epochs=1)
    folder = exported["lstm"].parent / "readme-demo"
    folder.mkdir(exist_ok=True)
    save_checkpoint(model, folder / "lstm.pt", list(dataset.labels), dataset.normalization())
    export_checkpoint(folder / "lstm.pt", folder / "lstm.onnx")
    assert sample.group(1) == f"{(folder / 'lstm.onnx').stat().st_size / 1024:.1f}"


def test_readme_gru_speedups_measured():
    readme = " ".join((ROOT / "README.md").read_text().split())
    docs = (ROOT / "docs" / "quantization.md").read_text()
    sentence = re.search(r"How much faster than the float GRU operator it runs depends on the "
                         r"host\..*?ran slow\.", readme)  # fmt: skip
    assert sentence, "the README does not say that the int8 GRU speed-up depends on the host"
    for host in ("Intel Xeon with AVX-512 VNNI and AMX", "AMD EPYC with AVX-512 VNNI"):
        assert host in sentence.group(0)
        assert host in docs
    for value in re.findall(r"(\d+\.\d+)(?:x| to)", sentence.group(0)):
        assert f"{value}x" in docs, value
