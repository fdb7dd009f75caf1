"""`rnnedge quantize` on models whose input shape is fixed, as `torch.onnx.export` without
dynamic axes leaves it, and on models whose layout quantize has to guess.

The models come from the trained time-major GRU classifier of `test_quantize_layout`,
exported by plain `torch.onnx.export`: time-major [STEPS, 1, FEATURES], and batch-first
[1, STEPS, FEATURES] or [4, STEPS, FEATURES]. They record no layout and have no axis names.
"""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from rnnedge.errors import CheckFailedError, InputError
from rnnedge.quantize import evaluate as evaluate_module
from rnnedge.quantize import quantize_model
from rnnedge.quantize import quantizer as quantizer_module
from rnnedge.quantize.feeds import DataLayout
from rnnedge.quantize.quantizer import SAMPLE_SHAPE
from tests.conftest import FEATURES
from tests.test_quantize_layout import (
    STEPS,
    _labelled,
    _without_layout,
    trained_time_major_gru,
)

torch = pytest.importorskip("torch")


class BatchFirst(torch.nn.Module):
    """The time-major classifier behind a transpose: it takes (batch, time, features)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.transpose(0, 1))


@pytest.fixture(scope="module")
def trained():
    return trained_time_major_gru()


def _export(model, example_shape, path):
    """Export with plain torch.onnx.export, without dynamic axes: the shape stays fixed."""
    example = torch.zeros(example_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and trace notes
        torch.onnx.export(model, (example,), str(path), input_names=["x"],
                          output_names=["logits"], dynamo=False)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def fixed(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("fixed")
    return {
        "time_major": _export(trained, (STEPS, 1, FEATURES), root / "ext_static.onnx"),
        "batch_first": _export(BatchFirst(trained), (1, STEPS, FEATURES), root / "bf1.onnx"),
        "batch4": _export(BatchFirst(trained), (4, STEPS, FEATURES), root / "bf4.onnx"),
    }


@pytest.fixture(scope="module")
def dynamic(trained, tmp_path_factory):
    """The classifier exported by rnnedge: time-major, any batch and length."""
    from rnnedge.export import export_model

    path = tmp_path_factory.mktemp("dynamic") / "gru.onnx"
    export_model(trained, path, example_shape=f"2x10x{FEATURES}", batch_first=False, atol=1e-4)
    return path


@pytest.fixture(scope="module")
def eval_data():
    return _labelled(30, seed=1)  # 30 is no multiple of 4: the last batch is filled up


def _batch_accuracy(path, x, y, batch, time_major=False) -> float:
    """Accuracy of the model at `path`, fed batches of `batch` sequences by hand, the last
    filled up with zeros."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predictions = []
    for start in range(0, len(x), batch):
        part = x[start : start + batch]
        count = len(part)
        part = np.concatenate([part, np.zeros((batch - count, *part.shape[1:]), np.float32)])
        if time_major:
            part = part.transpose(1, 0, 2)
        logits = session.run(None, {"x": np.ascontiguousarray(part)})[0]
        predictions.extend(logits.argmax(-1)[:count])
    return float(np.mean(np.array(predictions) == y))


def test_guessed_fixed_shape_exit_2(fixed, tmp_path, capsys):
    from rnnedge.cli import main

    output = tmp_path / "o.onnx"
    code = main(["quantize", str(fixed["time_major"]), "-o", str(output)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == (
        f"error: ext_static.onnx records no layout, and input 'x' has the fixed shape "
        f"[{STEPS}, 1, {FEATURES}], which read batch-major (the default) is {STEPS} sequences "
        f"of 1 time step each; pass --layout time-major if the model takes {STEPS} time steps "
        f"of 1 sequence, or --layout batch-major if it does take {STEPS} sequences of 1 step"
    )
    assert not output.exists()


@pytest.mark.parametrize(
    ("name", "layout", "batch"),
    [("time_major", "time-major", 1), ("time_major", "batch-major", STEPS),
     ("batch_first", None, 1), ("batch4", None, 4)],
)  # fmt: skip
def test_latency_fixed_batch(fixed, tmp_path, name, layout, batch):
    report = quantize_model(fixed[name], tmp_path / "q.onnx", latency_runs=3, layout=layout)
    assert report.latency_batch == batch
    assert report.p50_ms_before > 0
    assert report.p50_ms_after > 0
    assert report.as_dict()["latency_batch"] == batch
    assert (tmp_path / "q.onnx").exists()


def test_cli_latency_fixed_batch(fixed, tmp_path, capsys):
    from rnnedge.cli import main

    code = main(["quantize", str(fixed["batch4"]), "-o", str(tmp_path / "q.onnx"),
                 "--latency-runs", "3"])  # fmt: skip
    assert code == 0
    assert "p50 latency (batch 4, one thread, this host): " in capsys.readouterr().out


def test_latency_feeds_fixed_batch(fixed, tmp_path, monkeypatch):
    fed = []
    real_build = evaluate_module.build_feed

    def build_spy(inputs, x, layout):
        fed.append(x.shape)
        return real_build(inputs, x, layout)

    def fake_measure(call, **kwargs):
        call()
        return SimpleNamespace(p50_ms=1.0), None

    monkeypatch.setattr(evaluate_module, "build_feed", build_spy)
    monkeypatch.setattr(evaluate_module, "measure", fake_measure)
    quantize_model(fixed["batch4"], tmp_path / "q.onnx", latency_runs=3)
    # The drift check runs 16 random sequences in 4 batches of 4 on each model, then the
    # latency step feeds each model one batch of 4.
    assert fed == [(4, STEPS, FEATURES)] * 10


@pytest.mark.parametrize(
    ("name", "layout", "batch"),
    [("time_major", "time-major", 1), ("batch_first", None, 1), ("batch4", None, 4)],
)
def test_eval_in_fixed_batches(fixed, eval_data, tmp_path, name, layout, batch):
    x, y = eval_data
    report = quantize_model(fixed[name], tmp_path / "q.onnx", eval_data=(x, y), layout=layout,
                            latency_runs=0)  # fmt: skip
    time_major = name == "time_major"
    assert report.metric_before == _batch_accuracy(fixed[name], x, y, batch, time_major)
    assert report.metric_before >= 0.9
    assert report.metric_after == _batch_accuracy(tmp_path / "q.onnx", x, y, batch, time_major)
    # The random drift inputs fill whole batches.
    assert report.drift.samples == SAMPLE_SHAPE[0]


def test_cli_eval_fixed_batch_1(fixed, eval_data, tmp_path, capsys):
    from rnnedge.cli import main

    x, y = eval_data
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    code = main(["quantize", str(fixed["time_major"]), "-o", str(tmp_path / "q.onnx"),
                 "--layout", "time-major", "--eval", str(tmp_path / "eval.npz"),
                 "--latency-runs", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    before = _batch_accuracy(fixed["time_major"], x, y, 1, time_major=True)
    assert f"accuracy: {before:.4g} -> " in out


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_calibration_samples_fixed_batches(fixed, eval_data, tmp_path, monkeypatch,
                                                  method):  # fmt: skip
    x, y = eval_data
    seen = []
    real = quantizer_module.quantize_static_int8

    def spy(source, feeds, *args, **kwargs):
        seen.extend(feed["x"].shape for feed in feeds)
        return real(source, feeds, *args, **kwargs)

    monkeypatch.setattr(quantizer_module, "quantize_static_int8", spy)
    report = quantize_model(fixed["batch4"], tmp_path / "q.onnx", "static-int8",
                            calibration=x[:10], calibration_method=method, samples=x[:7],
                            eval_data=(x, y), latency_runs=3)  # fmt: skip
    assert seen == [(4, STEPS, FEATURES)] * 3  # 10 sequences: 4, 4 and 2 filled up to 4
    assert report.drift.samples == 7
    assert report.metric_before == _batch_accuracy(fixed["batch4"], x, y, 4)
    assert report.latency_batch == 4


def test_fixed_time_must_match(fixed, tmp_path):
    x, y = _labelled(8, seed=2)
    longer = np.concatenate([x, x], axis=1)
    message = (
        rf"--eval x has shape \(8, {2 * STEPS}, {FEATURES}\), but model input 'x' expects "
        rf"\(batch, {STEPS}, {FEATURES}\): axis 1 must be {STEPS}$"
    )
    with pytest.raises(InputError, match=message):
        quantize_model(fixed["batch4"], tmp_path / "q.onnx", eval_data=(longer, y),
                       latency_runs=0)  # fmt: skip
    assert not (tmp_path / "q.onnx").exists()


def test_guessed_layout_eval_rows(dynamic, tmp_path, caplog):
    """A time-major model with torch's generated axis names, which decide no layout."""
    names = ("x_dynamic_axes_1", "x_dynamic_axes_2")
    path = _without_layout(dynamic, tmp_path / "torch_names.onnx", axis_names=names)
    x, y = _labelled(120, seed=1)
    with caplog.at_level(logging.WARNING, logger="rnnedge"), pytest.raises(InputError) as caught:
        quantize_model(path, tmp_path / "q.onnx", eval_data=(x, y), latency_runs=0)
    assert str(caught.value) == (
        f"--eval x runs in batches of 64 sequences of {STEPS} steps, but for such a batch the "
        f"model's first output has shape ({STEPS}, 4) ({STEPS} rows), not one row per "
        "sequence; the model records no layout and quantize fed it batch-major by default, "
        "so pass --layout time-major if it takes (time, batch, features)"
    )
    assert not (tmp_path / "q.onnx").exists()
    report = quantize_model(path, tmp_path / "q.onnx", eval_data=(x, y), latency_runs=0,
                            layout="time-major")  # fmt: skip
    assert report.metric_before >= 0.9


def test_label_mismatch_layout_hint():
    outputs = np.zeros((40, 4), np.float32)
    y = np.zeros(120, np.int64)
    guessed = evaluate_module.layout_hint(DataLayout(guessed=True))
    with pytest.raises(InputError) as caught:
        evaluate_module.task_metric(outputs, y, True, guessed)
    assert str(caught.value) == (
        "--eval labels y have shape (120,), but the model's outputs for all sequences have "
        "shape (40, 4) and need one class index per output row, shape (40,); the model "
        "records no layout and quantize fed it batch-major by default, so if it takes "
        "(time, batch, features), pass --layout time-major"
    )
    with pytest.raises(InputError, match=r"pass --layout time-major$"):
        evaluate_module.task_metric(outputs, np.zeros((120, 4)), False, guessed)
    assert evaluate_module.layout_hint(DataLayout()) == ""


@pytest.mark.parametrize(
    ("mode", "options", "advice"),
    [
        ("dynamic-int8", {}, "Try --per-channel, static-int8 with calibration, or fp16"),
        ("dynamic-int8", {"per_channel": True}, "Try static-int8 with calibration, or fp16"),
        ("static-int8", {"per_channel": True},
         "Try --calibration-method entropy or percentile, or fp16"),
        ("static-int8", {"calibration_method": "entropy"},
         "Try --per-channel, --calibration-method minmax or percentile, or fp16"),
        ("fp16", {}, "fp16 has no setting left to try; keep the float model, or raise "
         "--max-metric-drop"),
    ],
)  # fmt: skip
def test_budget_advice_unused_settings(dynamic, eval_data, tmp_path, mode, options, advice):
    x, y = eval_data
    if mode == "static-int8":
        options = {**options, "calibration": x[:8]}
    with pytest.raises(CheckFailedError) as caught:
        quantize_model(dynamic, tmp_path / "q.onnx", mode, eval_data=(x, y),
                       max_metric_drop=-1.0, latency_runs=0, **options)  # fmt: skip
    message = str(caught.value)
    assert message.endswith(f"no output written. {advice}")
    assert not (tmp_path / "q.onnx").exists()


def test_layout_option_recorded_in_output(fixed, tmp_path):
    import onnx

    output = tmp_path / "q.onnx"
    quantize_model(fixed["time_major"], output, "dynamic-int8", layout="time-major",
                   latency_runs=0)  # fmt: skip
    props = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert props["rnnedge.layout"] == "time-major"
