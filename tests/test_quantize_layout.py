"""`rnnedge quantize` on time-major models: every array it feeds is read as
(batch, time, features) and transposed to the model's (time, batch, features).

The model is a GRU classifier exported from an `nn.GRU` with `batch_first=False` and trained
briefly on labelled sequences whose class shifts the mean of one feature. Fed the right way
it scores about 1.0; fed (batch, time, features) as if it were (time, batch, features) it
scores at chance, or its outputs no longer line up with the labels.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rnnedge.errors import InputError
from rnnedge.quantize import evaluate as evaluate_module
from rnnedge.quantize import quantize_model
from rnnedge.quantize import quantizer as quantizer_module
from rnnedge.quantize.quantizer import SAMPLE_SHAPE
from rnnedge.quantize.static import CALIBRATION_BATCH
from tests.conftest import FEATURES

torch = pytest.importorskip("torch")

CLASSES = 4
STEPS = 20  # differs from CALIBRATION_BATCH and EVAL_BATCH, so a swapped axis shows


def _labelled(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(batch, time, features) sequences whose class k adds 1 to feature k at every step."""
    rng = np.random.default_rng(seed)
    y = np.arange(count) % CLASSES
    rng.shuffle(y)
    x = rng.standard_normal((count, STEPS, FEATURES)).astype(np.float32)
    x[np.arange(count), :, y] += 1.0
    return x, y.astype(np.int64)


class TimeMajorGru(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.GRU(FEATURES, 16)  # batch_first=False: (time, batch, features)
        self.head = torch.nn.Linear(16, CLASSES)

    def forward(self, x):
        return self.head(self.rnn(x)[0][-1])


def trained_time_major_gru() -> TimeMajorGru:
    """A TimeMajorGru trained for 40 steps on 160 labelled sequences, in eval mode."""
    torch.manual_seed(0)
    model = TimeMajorGru()
    x, y = _labelled(160, seed=0)
    inputs, labels = torch.from_numpy(x).transpose(0, 1), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def time_major(tmp_path_factory):
    from rnnedge.export import export_model

    model = trained_time_major_gru()
    path = tmp_path_factory.mktemp("time_major") / "gru.onnx"
    # Trained logits reach about 10, so float rounding exceeds the default 1e-5.
    export_model(model, path, example_shape=f"2x10x{FEATURES}", batch_first=False, atol=1e-4)
    return path


@pytest.fixture(scope="module")
def eval_data():
    return _labelled(120, seed=1)


def _accuracy(path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the model at `path` fed (time, batch, features) directly."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": np.ascontiguousarray(x.transpose(1, 0, 2))})[0]
    return float(np.mean(logits.argmax(-1) == y))


def _without_layout(source, target, axis_names=None):
    """Copy a model without its `rnnedge.layout` metadata, its input axes renamed."""
    model = onnx.load(str(source))
    props = [p for p in model.metadata_props if p.key != "rnnedge.layout"]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    if axis_names is not None:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        for dim, name in zip(dims, axis_names, strict=False):
            dim.dim_param = name
    onnx.save(model, str(target))
    return target


def test_model_time_major_and_trained(time_major, eval_data):
    props = {p.key: p.value for p in onnx.load(str(time_major)).metadata_props}
    assert props["rnnedge.layout"] == "time-major"
    x, y = eval_data
    assert _accuracy(time_major, x, y) >= 0.9
    # Fed batch-major, the model reads 120 steps of 20 sequences: its outputs cannot match.
    assert _accuracy(time_major, x.transpose(1, 0, 2), y[:STEPS]) < 0.6


@pytest.mark.parametrize("mode", ["dynamic-int8", "weight-int8"])
def test_eval_accuracy_batch_major_data(time_major, eval_data, tmp_path, mode):
    x, y = eval_data
    report = quantize_model(time_major, tmp_path / "q.onnx", mode, eval_data=(x, y),
                            latency_runs=0)  # fmt: skip
    assert report.metric_name == "accuracy"
    assert report.metric_before == _accuracy(time_major, x, y)
    assert report.metric_before >= 0.9
    assert report.metric_after == _accuracy(tmp_path / "q.onnx", x, y)
    assert report.settings["layout"] == "time-major"


def test_eval_time_major_data_rejected(time_major, eval_data, tmp_path):
    x, y = eval_data
    message = (
        rf"--eval has {STEPS} sequences in x \({STEPS}, 120, {FEATURES}\) but 120 labels in y; "
        r"x is read as \(batch, time, features\) whatever the model's layout, so pass "
        r"x.transpose\(1, 0, 2\)$"
    )
    with pytest.raises(InputError, match=message):
        quantize_model(time_major, tmp_path / "q.onnx", eval_data=(x.transpose(1, 0, 2), y),
                       latency_runs=0)  # fmt: skip
    assert not (tmp_path / "q.onnx").exists()


def test_metric_budget_real_accuracy(time_major, eval_data, tmp_path):
    x, y = eval_data
    report = quantize_model(time_major, tmp_path / "q.onnx", eval_data=(x, y),
                            max_metric_drop=0.05, latency_runs=0)  # fmt: skip
    assert report.metric_drop is not None
    assert report.metric_drop <= 0.05
    assert report.metric_before >= 0.9


def test_drift_counts_sequences(time_major, eval_data, tmp_path, rng):
    report = quantize_model(time_major, tmp_path / "a.onnx", latency_runs=0)
    assert report.drift.samples == SAMPLE_SHAPE[0]
    samples = rng.standard_normal((7, STEPS, FEATURES)).astype(np.float32)
    report = quantize_model(time_major, tmp_path / "b.onnx", samples=samples, latency_runs=0)
    assert report.drift.samples == 7


def test_static_calibration_model_layout(time_major, eval_data, tmp_path, monkeypatch):
    x, y = eval_data
    calibration = x[:40]
    seen = []
    real = quantizer_module.quantize_static_int8

    def spy(source, feeds, *args, **kwargs):
        seen.extend(feed["input"].shape for feed in feeds)
        return real(source, feeds, *args, **kwargs)

    monkeypatch.setattr(quantizer_module, "quantize_static_int8", spy)
    report = quantize_model(time_major, tmp_path / "q.onnx", "static-int8",
                            calibration=calibration, eval_data=(x, y),
                            latency_runs=0)  # fmt: skip
    batches = [min(CALIBRATION_BATCH, 40 - start) for start in range(0, 40, CALIBRATION_BATCH)]
    assert seen == [(STEPS, batch, FEATURES) for batch in batches]
    assert report.drift.samples == 40
    assert report.metric_before == _accuracy(time_major, x, y)
    assert report.metric_after >= 0.9


def test_latency_one_whole_sequence(time_major, tmp_path, monkeypatch):
    built = []
    timed = []
    real_build = evaluate_module.build_feed

    def build_spy(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    def fake_measure(call, **kwargs):
        timed.append(built[-1]["input"].shape)
        call()
        return SimpleNamespace(p50_ms=1.0), None

    monkeypatch.setattr(evaluate_module, "build_feed", build_spy)
    monkeypatch.setattr(evaluate_module, "measure", fake_measure)
    report = quantize_model(time_major, tmp_path / "q.onnx", latency_runs=3)
    # Batch 1 of SAMPLE_SHAPE[1] steps, time first, for the float and the int8 model.
    assert timed == [(SAMPLE_SHAPE[1], 1, FEATURES)] * 2
    assert report.p50_ms_before == 1.0
    assert report.p50_ms_after == 1.0


def test_cli_time_major_eval(time_major, eval_data, tmp_path, capsys):
    from rnnedge.cli import main

    x, y = eval_data
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    code = main(["quantize", str(time_major), "-o", str(tmp_path / "q.onnx"),
                 "--eval", str(tmp_path / "eval.npz"), "--latency-runs", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    before = _accuracy(time_major, x, y)
    after = _accuracy(tmp_path / "q.onnx", x, y)
    assert f"accuracy: {before:.4g} -> {after:.4g}" in out
    assert f"drift vs float on {SAMPLE_SHAPE[0]} samples" in out
    assert "layout=time-major" in out


@pytest.mark.parametrize("mode", ["dynamic-int8", "static-int8", "weight-int8"])
def test_cli_float_recurrent_printed_once(time_major, eval_data, tmp_path, capsys, mode):
    from rnnedge.cli import main

    np.save(tmp_path / "calibration.npy", eval_data[0][:20])
    extra = ["--calibration", str(tmp_path / "calibration.npy")] if mode == "static-int8" else []
    code = main(["quantize", str(time_major), "-o", str(tmp_path / "q.onnx"), "--mode", mode,
                 "--latency-runs", "0", *extra])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("FLOAT RECURRENT: /model/rnn/GRU: ") == 1
    assert out.count("/model/rnn/GRU") == 1
    assert "stays float" not in out
    assert " weight tensors stored in int8 for float compute" in out


def test_json_keeps_float_notes(time_major, tmp_path, capsys):
    import json

    from rnnedge.cli import main

    code = main(["quantize", str(time_major), "-o", str(tmp_path / "q.onnx"), "--json",
                 "--latency-runs", "0"])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["settings"]["layout"] == "time-major"
    assert doc["recurrent_left_float"][0]["node"] == "/model/rnn/GRU"
    # Scripts that read the notes alone still find the fact there.
    assert doc["notes"][0].startswith("/model/rnn/GRU stays float: ")


def test_layout_from_axis_names(time_major, eval_data, tmp_path):
    # The exporter's axis names (sequence, batch) mark it time-major, as `rnnedge run` reads them.
    path = _without_layout(time_major, tmp_path / "named.onnx")
    x, y = eval_data
    report = quantize_model(path, tmp_path / "q.onnx", eval_data=(x, y), latency_runs=0)
    assert report.metric_before == _accuracy(path, x, y)
    assert report.metric_before >= 0.9
    assert report.settings["layout"] == "time-major"


def test_undecided_layout_warning_and_option(time_major, eval_data, tmp_path, caplog):
    path = _without_layout(time_major, tmp_path / "anon.onnx", axis_names=("d0", "d1"))
    x, y = eval_data
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        report = quantize_model(path, tmp_path / "a.onnx", samples=x[:8], latency_runs=0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "anon.onnx records no layout, and the axis names of input 'input' do not decide"
    )
    assert warnings[0].endswith("so pass --layout time-major if the model takes time first")
    assert report.settings["layout"] == "batch-major"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        report = quantize_model(path, tmp_path / "b.onnx", eval_data=(x, y), latency_runs=0,
                                layout="time-major")  # fmt: skip
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert report.metric_before == _accuracy(path, x, y)
    assert report.metric_before >= 0.9
    assert report.drift.samples == SAMPLE_SHAPE[0]


def test_cli_layout_option(time_major, eval_data, tmp_path, capsys):
    from rnnedge.cli import main

    path = _without_layout(time_major, tmp_path / "anon.onnx", axis_names=("d0", "d1"))
    x, y = eval_data
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    code = main(["quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--layout",
                 "time-major", "--eval", str(tmp_path / "eval.npz"),
                 "--latency-runs", "0"])  # fmt: skip
    assert code == 0
    assert f"accuracy: {_accuracy(path, x, y):.4g} -> " in capsys.readouterr().out
    # A --layout that contradicts the metadata is one line, exit code 2, nothing written.
    code = main(["quantize", str(time_major), "-o", str(tmp_path / "r.onnx"), "--layout",
                 "batch-major"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "--layout batch-major contradicts gru.onnx, whose rnnedge metadata records " in err
    assert "time-major; drop --layout for this model" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.onnx").exists()


def test_undecided_layout_state_rejected(tmp_path):
    """A bare GRU graph whose state's batch axis shares no name with the sequence input."""
    from onnx import TensorProto, helper, numpy_helper

    hidden = 4
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in (("W", (1, 3 * hidden, FEATURES)), ("R", (1, 3 * hidden, hidden)))
    ]
    node = helper.make_node("GRU", ["x", "W", "R", "", "", "h0"], ["", "hn"],
                            hidden_size=hidden, linear_before_reset=1)  # fmt: skip
    graph = helper.make_graph(
        [node], "gru",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["d0", "d1", FEATURES]),
         helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "d2", hidden])],
        [helper.make_tensor_value_info("hn", TensorProto.FLOAT, [1, "d2", hidden])],
        weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "bare.onnx"))
    message = (
        "bare.onnx records no layout, and the axis names of input 'x' do not decide whether "
        "it takes (batch, time, features) or (time, batch, features), but state input 'h0' "
        "needs the batch size; pass --layout batch-major or --layout time-major"
    )
    with pytest.raises(InputError) as caught:
        quantize_model(tmp_path / "bare.onnx", tmp_path / "q.onnx", latency_runs=0)
    assert str(caught.value) == message
    report = quantize_model(tmp_path / "bare.onnx", tmp_path / "q.onnx", latency_runs=0,
                            layout="time-major")  # fmt: skip
    assert report.settings["layout"] == "time-major"


class TimeMajorTagger(torch.nn.Module):
    """A GRU with a head on every step: output (time, batch, classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.GRU(FEATURES, 16)
        self.head = torch.nn.Linear(16, CLASSES)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def test_tagger_output_batch_axis_moved_first(tmp_path, rng):
    from rnnedge.export import export_model

    torch.manual_seed(0)
    path = tmp_path / "tagger.onnx"
    export_model(TimeMajorTagger(), path, example_shape=f"2x10x{FEATURES}", batch_first=False)
    x = rng.standard_normal((7, STEPS, FEATURES)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": np.ascontiguousarray(x.transpose(1, 0, 2))})[0]
    assert logits.shape == (STEPS, 7, CLASSES)
    # Labels per sequence and step, (batch, time), as the float model predicts them.
    y = logits.argmax(-1).T
    report = quantize_model(path, tmp_path / "q.onnx", "weight-int8", samples=x,
                            eval_data=(x, y), latency_runs=0)  # fmt: skip
    assert report.drift.samples == 7
    assert report.metric_before == 1.0
