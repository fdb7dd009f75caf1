"""`rnnedge convert --ort`: the .ort file and the operator list for a reduced build."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from rnnedge.cli import main
from rnnedge.errors import InputError
from rnnedge.quantize import quantize_model
from rnnedge.runtime import Session
from rnnedge.runtime.ort_format import convert_to_ort
from tests.conftest import FEATURES, LABELS


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_convert_matches_onnx(exported, tmp_path, rng, precision):
    source = exported["lstm"]
    if precision == "int8":
        source = tmp_path / "lstm.int8.onnx"
        quantize_model(exported["lstm"], source, "dynamic-int8")
    result = convert_to_ort(source, tmp_path / "lstm.ort")
    assert result.model.read_bytes()[4:8] == b"ORTM"  # the flatbuffer file identifier
    assert result.max_abs_error <= 1e-5
    x = rng.standard_normal((3, 21, FEATURES)).astype(np.float32)
    expected = Session(source, provider="cpu").run(x)["output"]
    converted = Session(result.model, provider="cpu")
    np.testing.assert_allclose(converted.run(x)["output"], expected, atol=1e-5, rtol=0)
    assert converted.metadata.labels == tuple(LABELS)
    wanted = "com.microsoft;1;DynamicQuantizeLSTM" if precision == "int8" else "LSTM"
    assert any(wanted in line for line in result.operators)


def test_operator_config_loads_in_onnxruntime_tooling(exported, tmp_path):
    result = convert_to_ort(exported["gru"], tmp_path / "gru.ort", type_reduction=True)
    text = result.config.read_text()
    assert result.config.name == "gru.required_operators_and_types.config"
    assert "GRU" in text
    # With type reduction each operator line carries its element types as JSON.
    assert "{" in text


def test_convert_cli(capsys, exported, tmp_path):
    code = main(["convert", str(exported["gru"]), "--ort", "-o", str(tmp_path / "g.ort"), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["model"].endswith("g.ort")
    assert (tmp_path / "g.required_operators.config").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param([], "pass --ort", id="no-format"),
        pytest.param(["--ort", "-o", "{tmp}/x.onnx"], "must end in .ort", id="suffix"),
        pytest.param(["--ort", "-o", "{tmp}/missing/x.ort"], "does not exist", id="folder"),
        pytest.param(["--ort", "--optimization", "max"], "'max' is not one of", id="level"),
    ],
)
def test_convert_bad_input(capsys, exported, tmp_path, args, fragment):
    argv = ["convert", str(exported["gru"]), *[a.format(tmp=tmp_path) for a in args]]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert fragment in err
    assert list(tmp_path.iterdir()) == []


def test_convert_rejects_ort_input(exported, tmp_path):
    result = convert_to_ort(exported["gru"], tmp_path / "g.ort")
    with pytest.raises(InputError, match="already in the ORT format"):
        convert_to_ort(result.model, tmp_path / "again.ort")


def test_ort_file_runs_in_plain_onnxruntime(exported, tmp_path, rng):
    result = convert_to_ort(exported["lstm"], tmp_path / "l.ort")
    session = ort.InferenceSession(str(result.model), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((1, 9, FEATURES)).astype(np.float32)
    assert session.run(None, {"input": x})[0].shape == (1, len(LABELS))


def test_operator_config_names_final_model(exported, tmp_path):
    result = convert_to_ort(exported["lstm"], tmp_path / "lstm.ort")
    header = [line for line in result.config.read_text().splitlines() if line.startswith("#")]
    assert header == ["# Generated from model/s:", "# - lstm.ort"]


def test_optimization_all_warning_summarized(capfd, exported, tmp_path):
    code = main(["convert", str(exported["lstm"]), "--ort", "-o", str(tmp_path / "l.ort"),
                 "--optimization", "all"])  # fmt: skip
    out, err = capfd.readouterr()
    assert code == 0, err
    # ONNX Runtime writes its warning to file descriptor 2 itself, in colour.
    assert "onnxruntime" not in err
    assert "\x1b[" not in err
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1
    assert "--optimization all" in notes[0]


def test_convert_unnamed_state_rejected(capsys, tmp_path):
    from tests.test_profile_states import foreign_rnn

    model = foreign_rnn(tmp_path / "gru.onnx")
    code = main(["convert", str(model), "--ort", "-o", str(tmp_path / "gru.ort")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "error: input 'h_in' looks like a recurrent state (like output 'h_out'); name the pair "
        "with --state h_in=h_out, or give a constant with --feed h_in=VALUE\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gru.onnx"]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(["--state", "h_in=h_out", "--state", "c_in=c_out"], id="state"),
        pytest.param(["--feed", "h_in=0.1", "--feed", "c_in=-0.2"], id="feed"),
    ],
)
def test_convert_with_state_options(capsys, tmp_path, rng, options):
    from tests.test_profile_states import FEATURES as FOREIGN_FEATURES
    from tests.test_profile_states import foreign_rnn

    model = foreign_rnn(tmp_path / "lstm.onnx", cell="LSTM")
    code = main(["convert", str(model), "--ort", "-o", str(tmp_path / "lstm.ort"), "--json",
                 *options])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["max_abs_error"] <= 1e-5
    x = rng.standard_normal((2, 5, FOREIGN_FEATURES)).astype(np.float32)
    state = np.zeros((1, 2, 8), np.float32)
    feed = {"x": x, "h_in": state, "c_in": state}
    converted = ort.InferenceSession(str(tmp_path / "lstm.ort"), providers=["CPUExecutionProvider"])
    source = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(converted.run(None, feed)[1], source.run(None, feed)[1], atol=1e-6)
