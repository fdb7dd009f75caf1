"""`rnnedge profile` and `convert --ort` on models whose state inputs have no rnnedge metadata.

The models are built here with onnx.helper, as a model from another exporter would be:
a recurrent node whose initial state is a graph input and whose final state is an output,
with no `rnnedge.*` metadata naming the pair.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rnnedge.cli import main
from rnnedge.errors import InputError
from rnnedge.profiling import profile_model
from rnnedge.profiling.profile import synthetic_input
from rnnedge.profiling.remote import _input_args
from rnnedge.runtime import Session

FEATURES = 4
HIDDEN = 8


def foreign_rnn(
    path: Path,
    cell: str = "GRU",
    state_axis: str | int = "batch",
    sequence_shape: tuple[str | int, str | int] = ("batch", "seq"),
    with_states: bool = True,
) -> Path:
    """Write a batch-major GRU or LSTM whose states are the inputs h_in (and c_in).

    `sequence_shape` is the declared (batch, time) of the input x. Without `with_states`,
    the recurrent node starts at zero and the states are outputs only.
    """
    gates = 3 if cell == "GRU" else 4
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(0.3 * rng.standard_normal(shape).astype(np.float32), name)

    state_names = ["h_in"] if cell == "GRU" else ["h_in", "c_in"]
    if not with_states:
        state_names = []
    output_names = ["h_out"] if cell == "GRU" else ["h_out", "c_out"]
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2]),
        helper.make_node(
            cell,
            ["x_time_major", "W", "R", "B", "", *state_names]
            if state_names
            else ["x_time_major", "W", "R", "B"],
            ["y", *output_names],
            hidden_size=HIDDEN,
        ),
    ]
    state_shape = [1, state_axis, HIDDEN]
    graph = helper.make_graph(
        nodes,
        f"foreign_{cell.lower()}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*sequence_shape, FEATURES])]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in state_names],
        [
            helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, [sequence_shape[1], 1, sequence_shape[0], HIDDEN]
            )
        ]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in output_names],
        initializer=[
            weight("W", 1, gates * HIDDEN, FEATURES),
            weight("R", 1, gates * HIDDEN, HIDDEN),
            weight("B", 1, 2 * gates * HIDDEN),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


GRU_MESSAGE = (
    "error: input 'h_in' looks like a recurrent state (like output 'h_out'); name the pair "
    "with --state h_in=h_out, or give a constant with --feed h_in=VALUE\n"
)


def test_profile_unnamed_state_rejected(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx")
    devices = tmp_path / "devices"
    code, out, err = run_cli(capsys, "profile", model, "--runs", "3", "--warmup", "0",
                             "--operators", "0", "--devices-dir", devices)  # fmt: skip
    assert code == 2
    assert err == GRU_MESSAGE
    assert out == ""
    assert not devices.exists()


def test_profile_sweep_unnamed_state_rejected(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx")
    code, _, err = run_cli(capsys, "profile", model, "--sweep", "batch=1,3", "--runs", "2",
                           "--warmup", "0", "--operators", "0", "--no-store")  # fmt: skip
    assert code == 2
    assert err == GRU_MESSAGE


def test_lstm_names_both_pairs(tmp_path):
    model = foreign_rnn(tmp_path / "lstm.onnx", cell="LSTM")
    session = Session(model, provider="cpu", normalize=False)
    assert session.unnamed_state_inputs() == [("h_in", "h_out"), ("c_in", "c_out")]
    with pytest.raises(InputError) as raised:
        synthetic_input(session, batch=2, seq_len=5)
    message = str(raised.value)
    assert message.startswith("inputs 'h_in' and 'c_in' look like recurrent states")
    assert "--state h_in=h_out --state c_in=c_out" in message
    assert "--feed h_in=VALUE --feed c_in=VALUE" in message


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(["--state", "h_in=h_out"], id="state"),
        pytest.param(["--feed", "h_in=0.5"], id="feed-number"),
    ],
)
def test_profile_sweep_with_state_options(capsys, tmp_path, options):
    model = foreign_rnn(tmp_path / "gru.onnx")
    code, out, err = run_cli(capsys, "profile", model, "--sweep", "batch=1,3", "--seq-len", "7",
                             "--runs", "2", "--warmup", "0", "--operators", "2", "--no-store",
                             "--json", *options)  # fmt: skip
    assert code == 0, err
    documents = json.loads(out)
    assert [d["batch"] for d in documents] == [1, 3]
    assert all(d["top_operators"] for d in documents)


def test_feed_value_fills_state_shape(tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx")
    session = Session(model, provider="cpu", normalize=False, feeds={"h_in": "0.25"})
    feed = synthetic_input(session, batch=3, seq_len=5)
    assert feed["h_in"].shape == (1, 3, HIDDEN)
    assert np.all(feed["h_in"] == np.float32(0.25))
    assert feed["x"].shape == (3, 5, FEATURES)


def test_feed_npy_reaches_state(tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx")
    state = np.random.default_rng(1).standard_normal((1, 2, HIDDEN)).astype(np.float32)
    np.save(tmp_path / "h.npy", state)
    session = Session(
        model, provider="cpu", normalize=False, feeds={"h_in": str(tmp_path / "h.npy")}
    )
    feed = synthetic_input(session, batch=2, seq_len=5)
    np.testing.assert_array_equal(feed["h_in"], state)


def test_profile_model_state_pairs(tmp_path):
    model = foreign_rnn(tmp_path / "lstm.onnx", cell="LSTM")
    result = profile_model(model, provider="cpu", batch=2, seq_len=6, warmup=0, runs=3,
                           operators=0, store=False,
                           state_pairs=[("h_in", "h_out"), ("c_in", "c_out")])  # fmt: skip
    assert result.latency.count == 3
    assert result.measurement["batch"] == 2


def test_state_with_fixed_batch_is_flagged(tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx", state_axis=2)
    session = Session(model, provider="cpu", normalize=False)
    assert session.unnamed_state_inputs() == [("h_in", "h_out")]


def test_second_sequence_input_not_flagged(tmp_path):
    """Two batch-major sequence inputs, one output of the same shape: no state."""
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "seq", FEATURES])
        for name in ("a", "b")
    ]
    output = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", "seq", FEATURES])
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])], "add", inputs, [output]
    )
    path = tmp_path / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    session = Session(path, provider="cpu", normalize=False)
    assert session.unnamed_state_inputs() == []
    assert synthetic_input(session, batch=2, seq_len=3)["b"].shape == (2, 3, FEATURES)


def test_only_input_never_flagged(tmp_path):
    """A model whose one input is shaped like a state keeps it as the data input."""
    shape = [1, "batch", HIDDEN]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["h"], ["r"])], "relu",
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, shape)],
    )  # fmt: skip
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert Session(path, provider="cpu", normalize=False).unnamed_state_inputs() == []


def test_remote_arguments_forward_states():
    args = _input_args([("h_in", "h_out")], {"gain": "0.5"})
    assert args == ["--state", "h_in=h_out", "--feed", "gain=0.5"]
    with pytest.raises(InputError, match=r"--feed h_in=h\.npy cannot be sent to the board"):
        _input_args([], {"h_in": "h.npy"})


def test_threads_zero_names_option(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx")
    code, _, err = run_cli(capsys, "profile", model, "--threads", "0", "--no-store")
    assert code == 2
    assert err == "error: --threads must be a whole number of at least 1, got 0\n"


def test_feed_npy_batch_mismatch(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx")
    np.save(tmp_path / "h.npy", np.zeros((1, 1, HIDDEN), np.float32))
    code, _, err = run_cli(capsys, "profile", model, "--feed", f"h_in={tmp_path / 'h.npy'}",
                           "--sweep", "batch=1,3", "--runs", "2", "--warmup", "0",
                           "--operators", "0", "--no-store")  # fmt: skip
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert len(errors) == 1, err
    assert (
        "--feed h_in has shape [1, 1, 8], for a batch of 1, but the run has a batch of 3"
        in (errors[0])
    )


FAST = ["--runs", "2", "--warmup", "0", "--operators", "0"]


def test_profile_layout_against_state(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx")
    devices = tmp_path / "devices"
    code, out, err = run_cli(capsys, "profile", model, "--state", "h_in=h_out", "--layout",
                             "time-major", "--devices-dir", devices, *FAST)  # fmt: skip
    assert code == 2
    assert err == (
        "error: synthetic input 'x' has shape (100, 1, 4), read time-major by --layout as a "
        "batch of 1, but state input 'h_in' [1, 'batch', 8] takes a batch of 100, which is "
        "axis 0; pass --layout batch-major\n"
    )
    assert out == ""
    assert not devices.exists()


def test_profile_sweep_layout_each_point(capsys, tmp_path):
    """The first point (1, 1, 4) fits either layout; the second stops the sweep."""
    model = foreign_rnn(tmp_path / "gru.onnx")
    devices = tmp_path / "devices"
    code, _, err = run_cli(capsys, "profile", model, "--state", "h_in=h_out", "--layout",
                           "time-major", "--sweep", "seq-len=1,6", "--devices-dir", devices,
                           *FAST)  # fmt: skip
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert len(errors) == 1, err
    assert errors[0].startswith("error: synthetic input 'x' has shape (6, 1, 4)")
    assert errors[0].endswith("pass --layout batch-major")
    assert not devices.exists()


def test_profile_fixed_state_names_layout(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx", state_axis=3, sequence_shape=(3, 5))
    code, _, err = run_cli(capsys, "profile", model, "--state", "h_in=h_out", "--layout",
                           "time-major", "--no-store", *FAST)  # fmt: skip
    assert code == 2
    assert err == (
        "error: synthetic input 'x' has shape (3, 5, 4), read time-major by --layout as a "
        "batch of 5, but state input 'h_in' [1, 3, 8] takes a batch of 3, which is axis 0; "
        "pass --layout batch-major\n"
    )


def test_convert_layout_against_state(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx")
    code, out, err = run_cli(capsys, "convert", model, "--ort", "--state", "h_in=h_out",
                             "--layout", "time-major")  # fmt: skip
    assert code == 2
    assert err == (
        "error: the check run's synthetic input 'x' has shape (17, 2, 4), read time-major by "
        "--layout as a batch of 2, but state input 'h_in' [1, 'batch', 8] takes a batch of "
        "17, which is axis 0; pass --layout batch-major\n"
    )
    assert out == ""
    assert not (tmp_path / "gru.ort").exists()


OVERRIDE_WARNING = (
    "WARNING: --layout time-major overrides the batch-major layout read from the axis names "
    "of gru.onnx"
)


def test_profile_sweep_warns_override_once(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx", with_states=False)
    code, _, err = run_cli(capsys, "profile", model, "--layout", "time-major", "--sweep",
                           "seq-len=1,3", "--no-store", *FAST)  # fmt: skip
    warnings = [line for line in err.splitlines() if "overrides" in line]
    assert code == 0, err
    assert warnings == [OVERRIDE_WARNING]


def test_convert_warns_override(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx", with_states=False)
    code, _, err = run_cli(capsys, "convert", model, "--ort", "--layout", "time-major")
    warnings = [line for line in err.splitlines() if "overrides" in line]
    assert code == 0, err
    assert warnings == [OVERRIDE_WARNING]


def test_guessed_layout_warning_names_use(capsys, tmp_path):
    model = foreign_rnn(tmp_path / "gru.onnx", sequence_shape=(3, 5), with_states=False)
    undecided = (
        "WARNING: gru.onnx records no layout, and the axis names of input 'x' do not decide "
        "whether it is (batch, time, features) or (time, batch, features); "
    )
    code, _, err = run_cli(capsys, "convert", model, "--ort")
    assert code == 0, err
    assert err == (
        f"{undecided}the check run of the .ort file feeds it as batch-major, so pass --layout "
        "time-major if the model takes time first\n"
    )
    # Another file: the warning is printed once per model file and process.
    (tmp_path / "profiled").mkdir()
    model = foreign_rnn(
        tmp_path / "profiled" / "gru.onnx", sequence_shape=(3, 5), with_states=False
    )
    code, _, err = run_cli(capsys, "profile", model, "--no-store", *FAST)
    assert code == 0, err
    assert err == (
        f"{undecided}measuring it as batch-major, so pass --layout time-major if the model "
        "takes time first\n"
    )
