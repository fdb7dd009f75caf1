"""Streaming sessions on real exported LSTM and GRU graphs with explicit state inputs.

The models are exported here with torch.onnx.export (explicit h0/c0 inputs, hn/cn outputs,
dynamic batch and time axes), and the state pairs are written into the metadata the way
rnnedge's exporter records them.

Tolerances: chunked against whole-sequence ONNX Runtime outputs, 1e-6, because the same
kernels run the same arithmetic in another grouping of time steps (observed: exactly 0);
ONNX Runtime against PyTorch, 1e-5, as for the exporter's parity check.
"""

from __future__ import annotations

import json
import logging
import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from rnnedge.cli import main  # noqa: E402
from rnnedge.errors import InputError  # noqa: E402
from rnnedge.runtime import Session, StreamingSession  # noqa: E402
from rnnedge.runtime.providers import CUDA_EP  # noqa: E402
from tests.test_export_variants import LstmWithCellState, WithState  # noqa: E402

FEATURES = 5
HIDDEN = 16
OUTPUTS = 3
CHUNK_ATOL = 1e-6
TORCH_ATOL = 1e-5


class StatefulRNN(torch.nn.Module):
    """An LSTM or GRU with a per-step linear head, its state as explicit inputs/outputs."""

    def __init__(
        self, cell: str, batch_first: bool = True, gain_input: bool = False, last: bool = False
    ):
        super().__init__()
        rnn = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
        self.cell = cell
        self.gain_input = gain_input
        self.last = last
        self.rnn = rnn(FEATURES, HIDDEN, num_layers=2, batch_first=batch_first)
        self.head = torch.nn.Linear(HIDDEN, OUTPUTS)

    def forward(self, x, *rest):
        if self.gain_input:
            gain, *rest = rest
            x = x * gain
        state = tuple(rest) if self.cell == "lstm" else rest[0]
        y, new_state = self.rnn(x, state)
        if self.cell == "lstm":
            return self.head(y), new_state[0], new_state[1]
        if self.last:
            # A second output of the final hidden state, (layers, batch, hidden), that no
            # state pair names.
            return self.head(y), new_state, new_state * 1.0
        return self.head(y), new_state


def export_streaming(
    path: Path,
    cell: str,
    batch_first: bool = True,
    record_pairs: bool = True,
    gain_input: bool = False,
    seed: int = 0,
    record_layout: bool = True,
    axis_names: tuple[str, str] = ("batch", "sequence"),
    last: bool = False,
) -> tuple[Path, StatefulRNN]:
    """Export a stateful model; with `record_pairs`, write rnnedge.state_pairs metadata,
    and with `record_layout`, rnnedge.layout. `axis_names` names the batch and time axes;
    `last` adds an output `last` of the final hidden state (GRU only)."""
    torch.manual_seed(seed)
    model = StatefulRNN(cell, batch_first, gain_input, last).eval()
    batch_axis, time_axis = (0, 1) if batch_first else (1, 0)
    batch_name, time_name = axis_names
    x = torch.randn((2, 4, FEATURES) if batch_first else (4, 2, FEATURES))
    states = ["h0", "c0"] if cell == "lstm" else ["h0"]
    outputs = ["y", "hn", "cn"] if cell == "lstm" else ["y", "hn"]
    outputs += ["last"] if last else []
    args = [x] + ([torch.tensor([1.0])] if gain_input else [])
    args += [torch.zeros(2, 2, HIDDEN) for _ in states]
    inputs = ["x"] + (["gain"] if gain_input else []) + states
    axes = {"x": {batch_axis: batch_name, time_axis: time_name},
            "y": {batch_axis: batch_name, time_axis: time_name}}  # fmt: skip
    axes.update({name: {1: batch_name} for name in states + outputs[1:]})
    with warnings.catch_warnings():
        # The TorchScript-based exporter warns about tracing and batch sizes; the parity
        # tests below check what those warnings are about.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(args), str(path), input_names=inputs,
                          output_names=outputs, dynamic_axes=axes, opset_version=17,
                          dynamo=False)  # fmt: skip
    proto = onnx.load(str(path))
    props = {"rnnedge.cell": cell}
    if record_layout:
        props["rnnedge.layout"] = "batch-major" if batch_first else "time-major"
    if record_pairs:
        pairs = [["h0", "hn"], ["c0", "cn"]] if cell == "lstm" else [["h0", "hn"]]
        props["rnnedge.state_pairs"] = json.dumps(pairs)
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path, model


@pytest.fixture(scope="module")
def streaming_models(tmp_path_factory) -> dict[str, tuple[Path, StatefulRNN]]:
    root = tmp_path_factory.mktemp("streaming")
    models = {}
    for cell in ("lstm", "gru"):
        models[cell] = export_streaming(root / f"{cell}.onnx", cell)
    models["gru-time-major"] = export_streaming(root / "tm.onnx", "gru", batch_first=False)
    models["lstm-no-pairs"] = export_streaming(root / "np.onnx", "lstm", record_pairs=False)
    models["gru-gain"] = export_streaming(root / "gain.onnx", "gru", gain_input=True)
    return models


def sequence(rng, batch=3, length=23, time_major=False) -> np.ndarray:
    shape = (length, batch, FEATURES) if time_major else (batch, length, FEATURES)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("chunk", [1, 7, 23, 100], ids=lambda c: f"chunk{c}")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chunked_matches_whole_sequence(streaming_models, rng, cell, chunk):
    path, _ = streaming_models[cell]
    x = sequence(rng)
    whole = Session(path, provider="cpu").run(x)
    streaming = StreamingSession(path, provider="cpu")
    chunked = streaming.run(x, chunk=chunk)
    assert list(chunked) == list(whole)
    np.testing.assert_allclose(chunked["y"], whole["y"], atol=CHUNK_ATOL, rtol=0)
    np.testing.assert_allclose(streaming.state["h0"], whole["hn"], atol=CHUNK_ATOL, rtol=0)
    # The state outputs of a chunked run hold the final carried state.
    np.testing.assert_allclose(chunked["hn"], whole["hn"], atol=CHUNK_ATOL, rtol=0)
    if cell == "lstm":
        np.testing.assert_allclose(streaming.state["c0"], whole["cn"], atol=CHUNK_ATOL, rtol=0)
        np.testing.assert_allclose(chunked["cn"], whole["cn"], atol=CHUNK_ATOL, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_streaming_matches_pytorch(streaming_models, rng, cell):
    path, model = streaming_models[cell]
    x = sequence(rng, batch=2, length=17)
    with torch.no_grad():
        zeros = [torch.zeros(2, 2, HIDDEN)] * (2 if cell == "lstm" else 1)
        expected = model(torch.from_numpy(x), *zeros)[0].numpy()
    actual = StreamingSession(path, provider="cpu").run(x, chunk=5)["y"]
    np.testing.assert_allclose(actual, expected, atol=TORCH_ATOL, rtol=0)


def test_step_by_step_then_reset(streaming_models, rng):
    path, _ = streaming_models["gru"]
    x = sequence(rng, batch=2, length=6)
    streaming = StreamingSession(path, provider="cpu")
    first = [streaming.step(x[:, t : t + 1])["y"] for t in range(6)]
    assert streaming.batch == 2
    streaming.reset()
    assert streaming.state == {}
    again = [streaming.step(x[:, t : t + 1])["y"] for t in range(6)]
    np.testing.assert_array_equal(np.concatenate(first, 1), np.concatenate(again, 1))
    # Without the reset the state carries on, so the same chunk gives another output.
    assert not np.allclose(streaming.step(x[:, :1])["y"], first[0])


def test_step_outputs_are_copies(streaming_models, rng):
    path, _ = streaming_models["gru"]
    streaming = StreamingSession(path, provider="cpu")
    x = sequence(rng, batch=1, length=2)
    outputs = [streaming.step(x[:, t : t + 1])["y"] for t in range(2)]
    assert not np.shares_memory(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[1])


def test_io_binding_matches_plain_run(streaming_models, rng):
    path, _ = streaming_models["lstm"]
    x = sequence(rng, length=30)
    bound = StreamingSession(path, provider="cpu", io_binding=True).run(x, chunk=4)
    plain = StreamingSession(path, provider="cpu", io_binding=False).run(x, chunk=4)
    np.testing.assert_array_equal(bound["y"], plain["y"])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_allocated_by_onnxruntime(streaming_models, rng, cell):
    """The buffers a GPU session keeps its state in, here allocated on the CPU device."""
    path, _ = streaming_models[cell]
    x = sequence(rng, length=30)
    host = StreamingSession(path, provider="cpu")
    device = StreamingSession(path, provider="cpu", state_on_device=True)
    assert host.state_device is None
    assert device.state_device == ("cpu", 0)
    expected = host.run(x, chunk=4)
    actual = device.run(x, chunk=4)
    np.testing.assert_array_equal(actual["y"], expected["y"])
    assert device.state.keys() == host.state.keys()
    for name, value in host.state.items():
        np.testing.assert_array_equal(device.state[name], value)
    device.reset()
    again = device.run(x, chunk=4)
    np.testing.assert_array_equal(again["y"], expected["y"])


def test_state_on_device_defaults_to_host_on_cpu(streaming_models):
    path, _ = streaming_models["gru"]
    assert StreamingSession(path, provider="cpu").state_device is None
    unbound = StreamingSession(path, provider="cpu", io_binding=False, state_on_device=True)
    assert unbound.state_device == ("cpu", 0)


@pytest.mark.gpu
def test_state_stays_on_cuda(streaming_models, rng):
    if CUDA_EP not in ort.get_available_providers():
        pytest.skip(
            "CUDAExecutionProvider is not in this onnxruntime build; install "
            "onnxruntime-gpu with pip install 'rnnedge[cuda]' on a machine with an NVIDIA GPU"
        )
    if not Path("/dev/nvidia0").exists() and not Path("/dev/nvhost-ctrl").exists():
        pytest.skip("no NVIDIA GPU device node (/dev/nvidia0 or /dev/nvhost-ctrl) on this host")
    path, _ = streaming_models["lstm"]
    x = sequence(rng, length=30)
    gpu = StreamingSession(path, provider="cuda", strict_provider=True)
    assert gpu.state_device == ("cuda", 0)
    actual = gpu.run(x, chunk=1)
    expected = StreamingSession(path, provider="cpu").run(x, chunk=1)
    # GPU kernels sum in another order (and use TF32 on Ampere and later) than the CPU.
    np.testing.assert_allclose(actual["y"], expected["y"], atol=1e-3, rtol=0)


def test_batch_change_needs_reset(streaming_models, rng):
    path, _ = streaming_models["gru"]
    streaming = StreamingSession(path, provider="cpu")
    streaming.step(sequence(rng, batch=2, length=3))
    with pytest.raises(InputError, match="chunk has batch 3, but the carried state has batch 2"):
        streaming.step(sequence(rng, batch=3, length=3))
    streaming.reset()
    assert streaming.step(sequence(rng, batch=3, length=3))["y"].shape == (3, 3, OUTPUTS)


def test_time_major_layout(streaming_models, rng):
    path, _ = streaming_models["gru-time-major"]
    x = sequence(rng, time_major=True)
    whole = Session(path, provider="cpu").run(x)
    chunked = StreamingSession(path, provider="cpu").run(x, chunk=6)
    np.testing.assert_allclose(chunked["y"], whole["y"], atol=CHUNK_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("axis_names", "rule"),
    [
        pytest.param(("batch", "time"), "from the axis names", id="axis-names"),
        pytest.param(("d_b", "d_t"), "from the batch axis 'd_b' of a state input", id="state"),
    ],
)
def test_time_major_without_layout_metadata(tmp_path, rng, caplog, axis_names, rule):
    """A model from torch.onnx.export with batch_first=False records no layout."""
    path, model = export_streaming(tmp_path / "tm.onnx", "gru", batch_first=False,
                                   record_pairs=False, record_layout=False,
                                   axis_names=axis_names)  # fmt: skip
    x = sequence(rng, batch=3, length=9, time_major=True)
    with torch.no_grad():
        expected = model(torch.from_numpy(x), torch.zeros(2, 3, HIDDEN))[0].numpy()
    with caplog.at_level(logging.DEBUG, logger="rnnedge"):
        session = Session(path, provider="cpu", state_pairs=[("h0", "hn")])
    assert not session.batch_major
    assert f"tm.onnx: time-major layout {rule}" in caplog.text
    whole = session.run(x)
    np.testing.assert_allclose(whole["y"], expected, atol=TORCH_ATOL, rtol=0)
    assert whole["hn"].shape == (2, 3, HIDDEN)
    chunked = StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn")]).run(x, chunk=4)
    np.testing.assert_allclose(chunked["y"], expected, atol=TORCH_ATOL, rtol=0)
    # A rank-2 input is one sequence: (time, features) gets its batch axis at 1.
    single = session.run(x[:, 0])["y"]
    np.testing.assert_allclose(single, expected[:, :1], atol=TORCH_ATOL, rtol=0)


def test_layout_default_when_undecided(tmp_path, caplog):
    path, _ = export_streaming(tmp_path / "bm.onnx", "gru", record_pairs=False,
                               record_layout=False, axis_names=("d0", "d1"))  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="rnnedge"):
        session = Session(path, provider="cpu", state_pairs=[("h0", "hn")])
    assert session.batch_major
    assert "bm.onnx: batch-major layout from the batch axis 'd0'" in caplog.text
    with caplog.at_level(logging.DEBUG, logger="rnnedge"):
        caplog.clear()
        assert Session(path, provider="cpu", feeds={"h0": np.zeros((2, 1, HIDDEN))}).batch_major
    # A state given as a constant shares its batch axis with the sequence input too.
    assert "bm.onnx: batch-major layout from the batch axis 'd0'" in caplog.text
    auto_path, _ = export_auto_named(tmp_path / "auto.onnx")
    with caplog.at_level(logging.DEBUG, logger="rnnedge"):
        caplog.clear()
        session = Session(auto_path, provider="cpu", state_pairs=[("h0", "hn")])
    assert session.batch_major
    assert session.layout_guessed
    assert "auto.onnx: batch-major layout by default" in caplog.text


def export_auto_named(path: Path, fixed: bool = False) -> tuple[Path, StatefulRNN]:
    """Export a time-major GRU with a state input as torch.onnx.export does without axis
    names: `dynamic_axes` given as lists of axes, which torch names `x_dynamic_axes_1` and
    so on, or with `fixed`, no dynamic axes at all (x [4, 2, 5], h0 [2, 2, 16])."""
    torch.manual_seed(0)
    model = StatefulRNN("gru", batch_first=False).eval()
    example = (torch.randn(4, 2, FEATURES), torch.zeros(2, 2, HIDDEN))
    axes = None if fixed else {"x": [0, 1], "h0": [1], "y": [0, 1], "hn": [1]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), input_names=["x", "h0"],
                          output_names=["y", "hn"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)  # fmt: skip
    return path, model


@pytest.mark.parametrize("stream", [False, True], ids=["batch", "stream"])
def test_ort_shape_rejection_is_usage_error(capsys, tmp_path, stream):
    """A wrong --layout that no declared name can catch is left to ONNX Runtime to reject.
    Its rejection is one line naming the node and --layout, exit 2, not an internal error."""
    path, _ = export_auto_named(tmp_path / "auto.onnx")
    np.save(tmp_path / "x.npy", np.zeros((20, 3, FEATURES), np.float32))
    extra = ["--stream", "--chunk", "4"] if stream else []
    code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--state", "h0=hn",
                           "--layout", "batch-major", *extra)  # fmt: skip
    assert code == 2, err
    assert err.startswith("error: ONNX Runtime rejected the inputs of auto.onnx: GRU node")
    assert "initial_h must have shape" in err
    assert "--layout batch-major or time-major" in err
    assert err.count("\n") == 1


def test_layout_from_fixed_state_size(tmp_path, rng, caplog):
    """A fixed [4, 2, 5] sequence with a fixed [2, 2, 16] state is time-major: the state's
    batch of 2 is axis 1 of the sequence."""
    path, model = export_auto_named(tmp_path / "fixed.onnx", fixed=True)
    with caplog.at_level(logging.DEBUG, logger="rnnedge"):
        session = Session(path, provider="cpu", state_pairs=[("h0", "hn")])
    assert not session.batch_major
    assert "fixed.onnx: time-major layout from the batch axis 2 of a state input" in caplog.text
    x = sequence(rng, batch=2, length=4, time_major=True)
    assert session.describe_layout(x) == (
        "input x: (4, 2, 5) read as (time, batch, features), from the state's batch axis"
    )
    expected = _gru_reference(model, x, np.zeros((2, 2, HIDDEN), np.float32))
    np.testing.assert_allclose(session.run(x)["y"], expected, atol=TORCH_ATOL, rtol=0)


@pytest.mark.parametrize("how", [["--state", "h0=hn"], ["--feed", "h0=0"],
                                 ["--state", "h0=hn", "--stream", "--chunk", "3"]],
                         ids=["state", "feed", "stream"])  # fmt: skip
def test_cli_layout_option_time_major(capsys, tmp_path, rng, how):
    path, model = export_auto_named(tmp_path / "auto.onnx")
    x = sequence(rng, batch=3, length=10, time_major=True)
    np.save(tmp_path / "x.npy", x)
    args = ["run", path, "-i", tmp_path / "x.npy", *how, "-o", tmp_path / "out.npz"]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "pass --layout batch-major or --layout time-major" in err
    assert not (tmp_path / "out.npz").exists()
    code, out, err = run_cli(capsys, *args, "--layout", "time-major")
    assert code == 0, err
    assert "input x: (10, 3, 5) read as (time, batch, features), as --layout sets it\n" in out
    expected = _gru_reference(model, x, np.zeros((2, 3, HIDDEN), np.float32))
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["y"], expected, atol=TORCH_ATOL,
                               rtol=0)  # fmt: skip


def test_cli_default_layout_is_named(capsys, tmp_path, rng):
    """Where both layouts give one batch, the default guess runs, and the layout line
    calls it a guess."""
    path, _ = export_auto_named(tmp_path / "auto.onnx")
    np.save(tmp_path / "x.npy", sequence(rng, batch=3, length=3, time_major=True))
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--state", "h0=hn")
    assert code == 0, err
    assert out.splitlines()[1] == (
        "input x: (3, 3, 5) read as (batch, time, features), by default: the axis names "
        "do not decide it; pass --layout to set it"
    )


def test_layout_option_against_metadata(streaming_models):
    path, _ = streaming_models["gru"]
    assert Session(path, provider="cpu", layout="batch-major").batch_major
    with pytest.raises(InputError, match=r"^--layout time-major contradicts gru.onnx, whose "
                       r"rnnedge metadata records batch-major; drop --layout"):  # fmt: skip
        Session(path, provider="cpu", layout="time-major")
    with pytest.raises(InputError, match=r"^layout must be batch-major or time-major, got 'tm'"):
        StreamingSession(path, provider="cpu", layout="tm")


def test_profile_feed_follows_inferred_layout(tmp_path):
    from rnnedge.profiling.profile import synthetic_input

    path, _ = export_streaming(tmp_path / "tm.onnx", "gru", batch_first=False,
                               record_pairs=False, record_layout=False,
                               axis_names=("batch", "time"))  # fmt: skip
    session = Session(path, provider="cpu", state_pairs=[("h0", "hn")])
    feed = synthetic_input(session, batch=2, seq_len=7)
    assert feed["x"].shape == (7, 2, FEATURES)
    assert feed["h0"].shape == (2, 2, HIDDEN)
    assert session.run_prepared(feed)["y"].shape == (7, 2, OUTPUTS)


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-major", "time-major"])
def test_state_shaped_output_not_concatenated(tmp_path, rng, batch_first):
    """An output of shape (layers, batch, hidden) that no pair names comes from the last
    chunk; it is not joined along its batch axis."""
    path, _ = export_streaming(tmp_path / "last.onnx", "gru", batch_first=batch_first,
                               last=True)  # fmt: skip
    x = sequence(rng, batch=3, length=10, time_major=not batch_first)
    whole = Session(path, provider="cpu").run(x)
    chunked = StreamingSession(path, provider="cpu").run(x, chunk=3)
    assert chunked["last"].shape == (2, 3, HIDDEN)
    np.testing.assert_allclose(chunked["last"], whole["last"], atol=CHUNK_ATOL, rtol=0)
    np.testing.assert_allclose(chunked["y"], whole["y"], atol=CHUNK_ATOL, rtol=0)


def test_user_state_pairs(streaming_models, rng):
    path, _ = streaming_models["lstm-no-pairs"]
    with pytest.raises(InputError) as raised:
        StreamingSession(path, provider="cpu")
    # A constant would restart the state on every chunk, so no --feed is offered.
    assert str(raised.value) == (
        "inputs 'h0' and 'c0' look like recurrent states (like outputs 'hn' and 'cn'); name "
        "the pairs with --state h0=hn --state c0=cn"
    )
    x = sequence(rng)
    pairs = [("h0", "hn"), ("c0", "cn")]
    chunked = StreamingSession(path, provider="cpu", state_pairs=pairs).run(x, chunk=5)
    whole = Session(path, provider="cpu", state_pairs=pairs).run(x)
    np.testing.assert_allclose(chunked["y"], whole["y"], atol=CHUNK_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        pytest.param([("h1", "hn")], "state input 'h1' is not an input", id="unknown-input"),
        pytest.param([("h0", "hx")], "state output 'hx' is not an output", id="unknown-output"),
        pytest.param(
            [("x", "y")],
            r"state pair x=y does not match: the input is .*, the output is .*for example h0=hn",
            id="data-input-as-state",
        ),
    ],
)
def test_bad_state_pairs(streaming_models, pairs, message):
    path, _ = streaming_models["lstm-no-pairs"]
    with pytest.raises(InputError, match=message):
        StreamingSession(path, provider="cpu", state_pairs=pairs)


def test_pairs_sharing_a_name_rejected(streaming_models):
    path, _ = streaming_models["lstm"]
    # The given pair replaces the recorded c0=cn, which leaves two pairs on 'hn'.
    with pytest.raises(InputError, match=r"state pairs h0=hn and c0=hn both name the output 'hn'"):
        Session(path, provider="cpu", state_pairs=[("c0", "hn")])
    path, _ = streaming_models["lstm-no-pairs"]
    with pytest.raises(InputError, match=r"state pairs h0=hn and h0=cn both name the state input"):
        StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn"), ("h0", "cn")])


def test_state_pairs_add_to_metadata(streaming_models):
    path, _ = streaming_models["lstm"]
    recorded = StreamingSession(path, provider="cpu").state_pairs
    given = StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn")]).state_pairs
    assert [(p.input, p.output) for p in given] == [(p.input, p.output) for p in recorded]


def test_feed_of_the_sequence_input_rejected(streaming_models, tmp_path):
    message = "'x' is the sequence input; it comes from --input, not --feed"
    path, _ = streaming_models["gru"]
    with pytest.raises(InputError, match=re.escape(message)):
        Session(path, provider="cpu", feeds={"x": "1"})
    # With another float input left over, the sequence would otherwise go to 'gain'.
    path, _ = streaming_models["gru-gain"]
    with pytest.raises(InputError, match=re.escape(message)):
        Session(path, provider="cpu", feeds={"x": "0"}, state_pairs=[("h0", "hn")])
    # Without a named time axis, the sequence input is not known until no input is left.
    fixed = tmp_path / "fixed.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "fixed",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, FEATURES])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, FEATURES])],
    )  # fmt: skip
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]),
              str(fixed))  # fmt: skip
    with pytest.raises(InputError, match=r"--feed gives 'x', which leaves no input for the data"):
        Session(fixed, provider="cpu", feeds={"x": np.zeros((1, 4, FEATURES), np.float32)})


def test_missing_state_input_in_batch_mode(streaming_models, rng):
    path, _ = streaming_models["lstm-no-pairs"]
    with pytest.raises(InputError) as raised:
        Session(path, provider="cpu").run(sequence(rng))
    assert str(raised.value) == (
        "inputs 'h0' and 'c0' look like recurrent states (like outputs 'hn' and 'cn'); name "
        "the pairs with --state h0=hn --state c0=cn, or give constants with --feed h0=VALUE "
        "--feed c0=VALUE"
    )


def test_missing_constant_input_in_batch_mode(streaming_models, rng):
    path, _ = streaming_models["gru-gain"]
    with pytest.raises(InputError) as raised:
        Session(path, provider="cpu").run(sequence(rng))
    message = str(raised.value)
    assert message.startswith("the model has 2 inputs to feed (x, gain)")
    assert message.count(".npz") == 1, message
    assert "for gain use --feed NAME=VALUE (a constant input)" in message
    # gain does not look like a recurrent state, so no --state is offered for it.
    assert "--state" not in message


def test_stream_rejects_state_constant(streaming_models, rng):
    """A --feed constant for an input shaped like a state would restart it on every chunk."""
    path, _ = streaming_models["lstm-no-pairs"]
    with pytest.raises(InputError) as raised:
        StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn")], feeds={"c0": "0.5"})
    assert str(raised.value) == (
        "c0 looks like a recurrent state; under --stream give it a pair with --state c0=cn"
    )
    with pytest.raises(InputError) as raised:
        StreamingSession(path, provider="cpu", feeds={"h0": "0", "c0": "0"})
    assert str(raised.value) == (
        "h0 and c0 look like recurrent states; under --stream give them pairs with "
        "--state h0=hn --state c0=cn"
    )


def test_cli_stream_state_constant_rejected(capsys, streaming_models, rng, tmp_path):
    path, _ = streaming_models["lstm-no-pairs"]
    np.save(tmp_path / "x.npy", sequence(rng, batch=3, length=12))
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--stream",
                             "--chunk", "6", "--state", "h0=hn", "--feed", "c0=0",
                             "-o", tmp_path / "out.npz")  # fmt: skip
    assert code == 2
    assert out == ""
    assert err == (
        "error: c0 looks like a recurrent state; under --stream give it a pair with --state c0=cn\n"
    )
    assert not (tmp_path / "out.npz").exists()


def test_partial_start_states_warn(capsys, streaming_models, rng, tmp_path, caplog):
    """A start-state file that gives hn but not cn names c0, which starts at zero."""
    path, _ = streaming_models["lstm"]
    x = sequence(rng, batch=2, length=6)
    hn = rng.standard_normal((2, 2, HIDDEN)).astype(np.float32)
    warning = (
        "next.npz gives start states hn but none for the state input c0, which starts at "
        "zero; give every state output of the earlier run to continue it"
    )
    np.savez(tmp_path / "next.npz", x=x, hn=hn)
    for extra in ([], ["--stream", "--chunk", "3"]):
        code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "next.npz",
                               "--provider", "cpu", *extra)  # fmt: skip
        assert code == 0, err
        assert err == f"WARNING: input {warning}\n"
    np.savez(tmp_path / "both.npz", x=x, hn=hn, cn=hn)
    code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "both.npz", "--provider", "cpu")
    assert code == 0, err
    assert err == ""
    stream = StreamingSession(path, provider="cpu")
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        stream.reset(states={"c0": hn})
    assert "reset(states=...) gives start states c0 but none for the state input h0" in caplog.text


def test_doc_resume_recipe(capsys, tmp_path, rng, monkeypatch):
    """The resume recipe of docs/runtime.md saves every state output, so that the resumed
    run continues the stream of a model from rnnedge export --streaming."""
    from rnnedge.export import export_model

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True)
    export_model(lstm_classifier(lstm), tmp_path / "lstm.onnx", example_shape="1x10x5",
                 streaming=True)  # fmt: skip
    x = sequence(rng, batch=2, length=12)
    whole = Session(tmp_path / "lstm.onnx", provider="cpu").run(x)
    np.save(tmp_path / "first.npy", x[:, :5])
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run", "lstm.onnx", "-i", "first.npy", "--stream",
                           "-o", "out.npz")  # fmt: skip
    assert code == 0, err
    text = (Path(__file__).parents[1] / "docs" / "runtime.md").read_text()
    recipe = next(
        textwrap.dedent(block)
        for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL)
        if "np.savez" in block
    )
    exec(compile(recipe, "docs/runtime.md", "exec"), {"next_part": x[:, 5:]})
    code, _, err = run_cli(capsys, "run", "lstm.onnx", "-i", "next.npz", "--stream",
                           "--chunk", "4", "-o", "next_out.npz")  # fmt: skip
    assert code == 0, err
    assert "WARNING" not in err
    np.testing.assert_allclose(np.load("next_out.npz")["output"], whole["output"],
                               atol=CHUNK_ATOL, rtol=0)  # fmt: skip


def lstm_classifier(lstm: torch.nn.LSTM) -> torch.nn.Module:
    """Wrap `lstm` with a linear head on the last step's output."""

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = lstm
            self.head = torch.nn.Linear(HIDDEN, OUTPUTS)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    return Classifier().eval()


def test_constant_feed(streaming_models, rng):
    path, model = streaming_models["gru-gain"]
    x = sequence(rng, batch=2, length=9)
    with torch.no_grad():
        expected = model(torch.from_numpy(x), torch.tensor([0.5]), torch.zeros(2, 2, HIDDEN))
    streaming = StreamingSession(path, provider="cpu", feeds={"gain": "0.5"})
    np.testing.assert_allclose(streaming.run(x, chunk=4)["y"], expected[0].numpy(),
                               atol=TORCH_ATOL, rtol=0)  # fmt: skip
    with pytest.raises(InputError, match="'rate', which is not an input"):
        StreamingSession(path, provider="cpu", feeds={"rate": "1"})
    with pytest.raises(InputError, match="'h0' is a state input"):
        StreamingSession(path, provider="cpu", feeds={"gain": "1", "h0": "0"})


def test_data_inputs_follow_feeds(streaming_models):
    path, _ = streaming_models["gru-gain"]
    session = Session(path, provider="cpu", feeds={"gain": "0.5"})
    assert [info.name for info in session.data_inputs] == ["x"]
    session.data_inputs.clear()
    assert [info.name for info in session.data_inputs] == ["x"]
    session.feeds = {}
    assert [info.name for info in session.data_inputs] == ["x", "gain"]


def _scaled_model(path: Path, scale_type: int, scale_shape: tuple[int, ...] = (1,)) -> Path:
    """A model whose output is its sequence input times a constant input `scale` of shape
    `scale_shape` (broadcast over the features)."""
    helper, tensor = onnx.helper, onnx.TensorProto
    graph = helper.make_graph(
        [helper.make_node("Cast", ["scale"], ["factor"], to=tensor.FLOAT),
         helper.make_node("Mul", ["x", "factor"], ["y"])],
        "scaled",
        [helper.make_tensor_value_info("x", tensor.FLOAT, ["batch", "sequence", FEATURES]),
         helper.make_tensor_value_info("scale", scale_type, list(scale_shape))],
        [helper.make_tensor_value_info("y", tensor.FLOAT, ["batch", "sequence", FEATURES])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("scale_type", "text", "message"),
    [
        pytest.param(
            1, "1e60", "reaches 1e+60, beyond the float32 range (3.4e+38)", id="float-big"
        ),
        pytest.param(1, "-1e39,2", "reaches 1e+39, beyond the float32 range", id="float-list"),
        pytest.param(1, "1e400", "1e400 is beyond the float32 range", id="float-past-double"),
        pytest.param(1, "nan", "contains 1 NaN or infinite values", id="float-nan"),
        pytest.param(1, "-inf", "--nonfinite warn", id="float-inf"),
        pytest.param(1, "x", "'x' is not a number", id="float-text"),
        pytest.param(
            10, "1e5", "reaches 1e+05, beyond the float16 range (6.55e+04)", id="half-big"
        ),
        pytest.param(6, "1e60", "1e60 is beyond the int32 range", id="int-big"),
        pytest.param(
            6,
            "3000000000",
            "beyond the int32 range; give a value from -2147483648",
            id="int-past-int32",
        ),
        pytest.param(7, "9223372036854775808", "beyond the int64 range", id="int-past-int64"),
        pytest.param(6, "0.5", "takes whole numbers (int32), and '0.5' is not one", id="int-half"),
        pytest.param(6, "nan", "takes whole numbers (int32), and 'nan' is not one", id="int-nan"),
        pytest.param(9, "2", "takes booleans, and '2' is not one", id="bool-two"),
    ],
)
def test_feed_parsed_by_input_type(tmp_path, scale_type, text, message):
    path = _scaled_model(tmp_path / "scaled.onnx", scale_type)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's cast and mod warnings become failures
        with pytest.raises(InputError, match=re.escape(message)):
            Session(path, provider="cpu", feeds={"scale": text})


@pytest.mark.parametrize(
    ("shape", "text", "message"),
    [
        pytest.param(
            (), "1,2", "does not fit its shape [] (a scalar); give one value", id="scalar"
        ),
        pytest.param((1,), "1,2", "does not fit its shape [1]; give one value", id="one"),
        pytest.param(
            (FEATURES,),
            "1,2",
            "does not fit its shape [5]; give one value, which fills it, or 5 values",
            id="five",
        ),
    ],
)
def test_feed_count_names_the_values(tmp_path, shape, text, message):
    path = _scaled_model(tmp_path / "scaled.onnx", 1, shape)
    with pytest.raises(InputError) as raised:
        Session(path, provider="cpu", feeds={"scale": text})
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("scale_type", "value", "expected"),
    [
        pytest.param(1, "0.5", 0.5, id="float"),
        pytest.param(1, "16000", 16000.0, id="float-whole"),
        pytest.param(6, "16000", 16000.0, id="int"),
        pytest.param(6, "1.6e4", 16000.0, id="int-float-spelling"),
        pytest.param(7, "-2147483649", -2147483649.0, id="int64-past-int32"),
        pytest.param(9, "true", 1.0, id="bool"),
        pytest.param(6, np.array([3.0]), 3.0, id="int-from-whole-floats"),
        pytest.param(1, 3, 3.0, id="float-from-python-int"),
    ],
)
def test_feed_values_reach_the_model(tmp_path, rng, scale_type, value, expected):
    path = _scaled_model(tmp_path / "scaled.onnx", scale_type)
    x = sequence(rng, batch=2, length=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = Session(path, provider="cpu", feeds={"scale": value}).run(x)["y"]
    np.testing.assert_array_equal(y, x * np.float32(expected))


def test_nonfinite_feed_warns_when_allowed(tmp_path, rng, caplog):
    path = _scaled_model(tmp_path / "scaled.onnx", 1)
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        session = Session(path, provider="cpu", feeds={"scale": "nan"}, nonfinite="warn")
    assert "'scale' contains 1 NaN or infinite values" in caplog.text
    assert np.isnan(session.run(sequence(rng))["y"]).all()


def test_cli_feed_beyond_float32_range(capsys, streaming_models, rng, tmp_path):
    np.save(tmp_path / "x.npy", sequence(rng, batch=1, length=5))
    path, _ = streaming_models["gru-gain"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy cast warning would end the command
        code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--feed",
                                 "gain=1e60", "--provider", "cpu")  # fmt: skip
    assert code == 2, err
    assert err.startswith("error: --feed gain=1e60: the value of input 'gain' reaches 1e+60"), err
    assert out == ""


@pytest.fixture(scope="module")
def role_state_models(tmp_path_factory) -> dict[str, tuple[Path, WithState]]:
    """Models exported by rnnedge without --streaming: their metadata gives h0 (and c0)
    a state role but records no state pairs."""
    from rnnedge.export import export_model

    root = tmp_path_factory.mktemp("role-states")
    models = {}
    models_by_cell = (
        ("gru", WithState("gru", FEATURES, HIDDEN)),
        ("lstm", LstmWithCellState(FEATURES, HIDDEN)),
    )
    for cell, model in models_by_cell:
        torch.manual_seed(0)
        model.eval()
        export_model(model, root / f"{cell}.onnx", example_shape=f"2x6x{FEATURES}")
        models[cell] = (root / f"{cell}.onnx", model)
    return models


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_role_states_start_at_zero(role_state_models, rng, cell):
    path, model = role_state_models[cell]
    session = Session(path, provider="cpu")
    assert session.state_pairs == ()
    assert [state.input for state in session.unpaired_states] == (
        ["h0", "c0"] if cell == "lstm" else ["h0"]
    )
    x = sequence(rng, batch=3, length=7)
    zeros = [torch.zeros(2, 3, HIDDEN)] * (2 if cell == "lstm" else 1)
    with torch.no_grad():
        expected = model(torch.from_numpy(x), *zeros)[0].numpy()
    got = session.run(x)["output"]
    np.testing.assert_allclose(got, expected, atol=TORCH_ATOL, rtol=0)


def test_role_state_given_in_npz(role_state_models, rng):
    path, model = role_state_models["gru"]
    x = sequence(rng, batch=3, length=7)
    h0 = rng.standard_normal((2, 3, HIDDEN)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x), torch.from_numpy(h0))[0].numpy()
    got = Session(path, provider="cpu").run({"input": x, "h0": h0})["output"]
    np.testing.assert_allclose(got, expected, atol=TORCH_ATOL, rtol=0)


def test_role_states_in_profile_feed(role_state_models):
    from rnnedge.profiling.profile import synthetic_input

    path, _ = role_state_models["lstm"]
    session = Session(path, provider="cpu")
    feed = synthetic_input(session, batch=2, seq_len=5)
    assert sorted(feed) == ["c0", "h0", "input"]
    assert feed["h0"].shape == (2, 2, HIDDEN)
    assert session.run_prepared(feed)["output"].shape == (2, 5, HIDDEN)


def test_role_states_stream_only_when_paired(role_state_models, rng):
    path, _ = role_state_models["lstm"]
    with pytest.raises(InputError, match="records no state pairs"):
        StreamingSession(path, provider="cpu")
    with pytest.raises(InputError, match=r"state input 'c0' of lstm.onnx has no state pair.*"
                                         r"--state c0=OUT \(outputs: output, "):  # fmt: skip
        StreamingSession(path, provider="cpu", state_pairs=[("h0", "output_1")])
    x = sequence(rng, batch=2, length=9)
    pairs = [("h0", "output_1"), ("c0", "output_2")]
    chunked = StreamingSession(path, provider="cpu", state_pairs=pairs).run(x, chunk=4)
    whole = Session(path, provider="cpu").run(x)
    np.testing.assert_allclose(chunked["output"], whole["output"], atol=CHUNK_ATOL, rtol=0)


def test_cli_runs_role_state_model(capsys, role_state_models, rng, tmp_path):
    np.save(tmp_path / "x.npy", sequence(rng, batch=1, length=5))
    path, _ = role_state_models["gru"]
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--provider", "cpu",
                             "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["outputs"]["output"] == [1, 5, HIDDEN]
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--feed",
                             "input=0", "--provider", "cpu")  # fmt: skip
    assert code == 2, err
    assert "'input' is the sequence input; it comes from --input, not --feed" in err


@pytest.mark.parametrize("chunk", [0, -2, 1.5], ids=["zero", "negative", "fraction"])
def test_bad_chunk(streaming_models, rng, chunk):
    path, _ = streaming_models["gru"]
    with pytest.raises(InputError, match="chunk must be a whole number"):
        StreamingSession(path, provider="cpu").run(sequence(rng), chunk=chunk)


def test_nonfinite_warn_or_error(streaming_models, rng, caplog):
    path, _ = streaming_models["gru"]
    x = sequence(rng, batch=1, length=4)
    x[0, 2, 1] = np.nan
    with pytest.raises(InputError, match=r"1 NaN or infinite values.*--nonfinite warn"):
        StreamingSession(path, provider="cpu").run(x, chunk=2)
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        out = StreamingSession(path, provider="cpu", nonfinite="warn").run(x, chunk=2)
    assert "1 NaN or infinite values" in caplog.text
    assert "LSTM and GRU return finite but wrong values" in caplog.text
    assert "the outputs are unreliable" in caplog.text
    clean = x.copy()
    clean[0, 2, 1] = 0.0
    reference = StreamingSession(path, provider="cpu").run(clean, chunk=2)["y"]
    np.testing.assert_array_equal(out["y"][0, :2], reference[0, :2])
    # ONNX Runtime 1.32's GRU kernel does not propagate the NaN: the later steps come out
    # finite and wrong, which is why NaN input is an error unless asked otherwise.
    assert np.isfinite(out["y"]).all()
    assert not np.allclose(out["y"][0, 2:], reference[0, 2:], atol=1e-3)


def test_lstm_turns_nan_into_finite_values(streaming_models, rng, caplog):
    """The LSTM, too, returns finite values after a NaN input, as the warning states."""
    path, _ = streaming_models["lstm"]
    x = sequence(rng, batch=1, length=6)
    clean = Session(path, provider="cpu").run(x)["y"]
    x[0, 2, 0] = np.nan
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        out = Session(path, provider="cpu", nonfinite="warn").run(x)["y"]
    assert "the outputs are unreliable" in caplog.text
    assert np.isfinite(out).all()
    assert not np.allclose(out[0, 2:], clean[0, 2:], atol=1e-3)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_cli_stream_matches_batch(capsys, streaming_models, rng, tmp_path, suffix):
    path, _ = streaming_models["lstm"]
    x = sequence(rng, batch=1, length=20)
    if suffix == ".npy":
        np.save(tmp_path / "x.npy", x)
    elif suffix == ".npz":
        np.savez(tmp_path / "x.npz", x=x)
    else:
        np.savetxt(tmp_path / "x.csv", x[0], delimiter=",")
    source = tmp_path / f"x{suffix}"
    code, out, err = run_cli(capsys, "run", path, "-i", source, "-o", tmp_path / "whole.npz",
                             "--provider", "cpu")  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(capsys, "run", path, "-i", source, "-o", tmp_path / "stream.npz",
                             "--provider", "cpu", "--stream", "--chunk", "3")  # fmt: skip
    assert code == 0, err
    assert "output y: shape (1, 20, 3)" in out
    whole = np.load(tmp_path / "whole.npz")
    streamed = np.load(tmp_path / "stream.npz")
    # Both runs read the same file, so even the CSV's rounded text gives equal inputs.
    np.testing.assert_allclose(streamed["y"], whole["y"], atol=CHUNK_ATOL, rtol=0)
    assert sorted(streamed.files) == ["cn", "hn", "y"]
    np.testing.assert_allclose(streamed["hn"], whole["hn"], atol=CHUNK_ATOL, rtol=0)
    np.testing.assert_allclose(streamed["cn"], whole["cn"], atol=CHUNK_ATOL, rtol=0)


def _gru_reference(model: StatefulRNN, x: np.ndarray, h0: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x), torch.from_numpy(h0))[0].numpy()


def test_start_state_from_npz(capsys, streaming_models, rng, tmp_path):
    path, model = streaming_models["gru"]
    x = sequence(rng, batch=2, length=9)
    h0 = rng.standard_normal((2, 2, HIDDEN)).astype(np.float32)
    expected = _gru_reference(model, x, h0)
    np.savez(tmp_path / "start.npz", x=x, h0=h0)
    for extra in ([], ["--stream", "--chunk", "4"]):
        out_path = tmp_path / f"y{len(extra)}.npz"
        code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "start.npz", "-o",
                               out_path, "--provider", "cpu", *extra)  # fmt: skip
        assert code == 0, err
        np.testing.assert_allclose(np.load(out_path)["y"], expected, atol=TORCH_ATOL, rtol=0)


def test_stream_resumes_from_written_state(capsys, streaming_models, rng, tmp_path):
    """`run --stream -o` writes the final state under the state output names, and an input
    file that gives those arrays starts the next run from them."""
    path, _ = streaming_models["lstm"]
    x = sequence(rng, batch=2, length=12)
    whole = Session(path, provider="cpu").run(x)
    np.save(tmp_path / "first.npy", x[:, :5])
    code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "first.npy", "-o",
                           tmp_path / "first_out.npz", "--stream", "--provider", "cpu")  # fmt: skip
    assert code == 0, err
    first = np.load(tmp_path / "first_out.npz")
    np.savez(tmp_path / "next.npz", x=x[:, 5:], hn=first["hn"], cn=first["cn"])
    for extra in ([], ["--stream", "--chunk", "3"]):
        out_path = tmp_path / f"next_out{len(extra)}.npz"
        code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "next.npz", "-o", out_path,
                               "--provider", "cpu", *extra)  # fmt: skip
        assert code == 0, err
        resumed = np.load(out_path)
        np.testing.assert_allclose(resumed["y"], whole["y"][:, 5:], atol=CHUNK_ATOL, rtol=0)
        np.testing.assert_allclose(resumed["hn"], whole["hn"], atol=CHUNK_ATOL, rtol=0)
        np.testing.assert_allclose(resumed["cn"], whole["cn"], atol=CHUNK_ATOL, rtol=0)


def test_reset_with_start_states(streaming_models, rng):
    path, model = streaming_models["gru"]
    x = sequence(rng, batch=3, length=8)
    h0 = rng.standard_normal((2, 3, HIDDEN)).astype(np.float32)
    expected = _gru_reference(model, x, h0)
    streaming = StreamingSession(path, provider="cpu")
    for states in ({"h0": h0}, {"hn": h0.astype(np.float64)}):
        streaming.reset(states=states)
        steps = [streaming.step(x[:, t : t + 2])["y"] for t in range(0, 8, 2)]
        np.testing.assert_allclose(np.concatenate(steps, 1), expected, atol=TORCH_ATOL, rtol=0)
    # A chunk that gives the state restarts the stream from it.
    streaming.step({"x": x[:, :3], "h0": h0})
    np.testing.assert_allclose(streaming.step(x[:, 3:])["y"], expected[:, 3:], atol=TORCH_ATOL,
                               rtol=0)  # fmt: skip
    streaming.reset()
    zero = streaming.run(x, chunk=4)["y"]
    assert not np.allclose(zero, expected, atol=1e-3)


@pytest.mark.parametrize(
    ("states", "message"),
    [
        pytest.param({"h1": np.zeros((2, 3, HIDDEN), np.float32)},
                     "start state 'h1' is not a state of gru.onnx; name each start state by "
                     "its state input: h0 (or hn)", id="unknown-name"),
        pytest.param({"h0": np.zeros((2, 3, HIDDEN), np.int64)},
                     "start state 'h0' has dtype int64, but state input 'h0' expects float32",
                     id="integer"),
        pytest.param({"h0": np.zeros((3, HIDDEN), np.float32)},
                     r"start state 'h0' has shape (3, 16), but state input 'h0' expects "
                     "(2, ?, 16); give the state in that shape", id="rank"),
        pytest.param({"h0": np.full((2, 3, HIDDEN), np.nan, np.float32)},
                     "start state 'h0' contains 96 NaN or infinite values", id="nan"),
        pytest.param({"h0": np.full((2, 3, HIDDEN), 1e300)},
                     "start state 'h0' has values up to 1e+300, beyond the float32 range",
                     id="beyond-float32"),
        pytest.param({"h0": np.zeros((2, 3, HIDDEN), np.float32),
                      "hn": np.zeros((2, 3, HIDDEN), np.float32)},
                     "the input gives both 'h0' and 'hn', which start the same state input "
                     "'h0'; give only one of them", id="both-names"),
    ],
)  # fmt: skip
def test_bad_start_states(streaming_models, states, message):
    path, _ = streaming_models["gru"]
    with pytest.raises(InputError) as raised:
        StreamingSession(path, provider="cpu").reset(states=states)
    assert message in str(raised.value)


def test_start_state_batch_checked_at_first_step(streaming_models, rng):
    path, _ = streaming_models["gru"]
    streaming = StreamingSession(path, provider="cpu")
    streaming.reset(states={"h0": np.zeros((2, 2, HIDDEN), np.float32)})
    with pytest.raises(InputError) as raised:
        streaming.step(sequence(rng, batch=3, length=2))
    assert str(raised.value) == (
        "start state 'h0' has shape (2, 2, 16), but state input 'h0' expects (2, 3, 16) for "
        "the batch of 3 sequences; give the state in that shape, or leave it out to start "
        "from zero"
    )


@pytest.mark.parametrize("stream", [False, True], ids=["batch", "stream"])
@pytest.mark.parametrize(
    ("state", "message"),
    [
        pytest.param(np.zeros((2, 2, HIDDEN), np.float32),
                     "start.npz[h0] has shape (2, 2, 16), but state input 'h0' expects "
                     "(2, 3, 16) for the batch of 3 sequences", id="batch"),
        pytest.param(np.array(["a"]), "start.npz[h0] has dtype <U1, not numbers, but state "
                     "input 'h0' expects float32; save a numeric array", id="text"),
        pytest.param(np.zeros((2, 3, HIDDEN), np.int64), "start.npz[h0] has dtype int64",
                     id="integer"),
        pytest.param(np.full((2, 3, HIDDEN), np.nan, np.float32),
                     "start.npz[h0] contains 96 NaN or infinite values", id="nan"),
        pytest.param(np.full((2, 3, HIDDEN), 1e300), "start.npz[h0] has values up to 1e+300",
                     id="beyond-float32"),
    ],
)  # fmt: skip
def test_cli_bad_start_state(capsys, streaming_models, rng, tmp_path, state, message, stream):
    path, _ = streaming_models["gru"]
    np.savez(tmp_path / "start.npz", x=sequence(rng, batch=3, length=4), h0=state)
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "start.npz", "-o",
                             tmp_path / "y.npz", "--provider", "cpu",
                             *(["--stream"] if stream else []))  # fmt: skip
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert message in err
    assert "Warning" not in err
    assert out == ""
    assert not (tmp_path / "y.npz").exists()


def test_cli_state_and_feed_options(capsys, streaming_models, rng, tmp_path):
    x = sequence(rng, batch=1, length=8)
    np.save(tmp_path / "x.npy", x)
    path, _ = streaming_models["lstm-no-pairs"]
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--stream",
                             "--chunk", "2", "--state", "h0=hn", "--state", "c0=cn",
                             "--provider", "cpu", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["outputs"] == {"y": [1, 8, OUTPUTS], "hn": [2, 1, HIDDEN], "cn": [2, 1, HIDDEN]}
    assert report["stream"] == {"chunk": 2}
    path, _ = streaming_models["gru-gain"]
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--stream",
                             "--feed", "gain=2", "--provider", "cpu")  # fmt: skip
    assert code == 0, err


def test_cli_reports_placement(capsys, streaming_models, rng, tmp_path):
    np.save(tmp_path / "x.npy", sequence(rng, batch=1, length=5))
    path, _ = streaming_models["gru"]
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--provider", "cpu")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("placement: "))
    assert line.startswith("placement: CPUExecutionProvider: ")
    assert "GRU x2" in line
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--provider", "cpu",
                             "--json", "--stream", "--chunk", "2")  # fmt: skip
    assert json.loads(out)["placement"]["CPUExecutionProvider"]["GRU"] == 2


def _layout1_lstm(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((1, 4 * 4, shape)).astype(np.float32), name)
        for name, shape in (("W", FEATURES), ("R", 4))
    ]
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y", "h"], hidden_size=4, layout=1)
    graph = helper.make_graph(
        [node], "lstm_layout1",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 1, 4]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", 1, 4])],
        weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# (arguments, fragment of the one-line message); "{m}" is a streaming GRU, "{plain}" an
# LSTM without state pairs, "{x}" a valid input.
BAD_STREAM_INPUT = [
    pytest.param(["--stream", "--chunk", "0"], "--chunk must be at least 1", id="chunk-zero"),
    pytest.param(["--chunk", "4"], "--chunk applies to streaming only", id="chunk-no-stream"),
    pytest.param(
        ["--stream", "--state", "h0"],
        "--state 'h0' is not IN=OUT; write it as --state IN=OUT",
        id="state-form",
    ),
    pytest.param(
        ["--stream", "--state", "h9=hn"], "state input 'h9' is not an input", id="state-name"
    ),
    pytest.param(["--feed", "rate=16000"], "'rate', which is not an input", id="feed-name"),
    pytest.param(["--feed", "rate"], "--feed 'rate' is not NAME=VALUE", id="feed-form"),
    pytest.param(["--stream", "--model", "{plain}"], "--state h0=hn --state c0=cn", id="no-pairs"),
    pytest.param(["--model", "{layout1}"], "layout=1 (batch-major)", id="layout1"),
    pytest.param(
        ["--provider", "tensorrt", "--strict-provider"],
        "TensorrtExecutionProvider",
        id="strict-tensorrt",
    ),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_STREAM_INPUT)
def test_cli_bad_stream_input(capsys, streaming_models, rng, tmp_path, args, fragment):
    np.save(tmp_path / "x.npy", sequence(rng, batch=1, length=5))
    files = {"m": streaming_models["gru"][0], "plain": streaming_models["lstm-no-pairs"][0],
             "layout1": _layout1_lstm(tmp_path / "layout1.onnx")}  # fmt: skip
    args = [a.format(**files) for a in args]
    model = files["m"]
    if "--model" in args:
        index = args.index("--model")
        model = args[index + 1]
        del args[index : index + 2]
    code, out, err = run_cli(capsys, "run", model, "-i", tmp_path / "x.npy", *args)
    assert code in (2, 4), err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert fragment in lines[0]
    assert out == ""


def test_runtime_doc_example_runs(tmp_path, monkeypatch, rng):
    """The Python example of docs/runtime.md runs on a model from rnnedge export --streaming."""
    from rnnedge.export import export_model

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(FEATURES, HIDDEN, batch_first=True)
            self.head = torch.nn.Linear(HIDDEN, OUTPUTS)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    torch.manual_seed(0)
    export_model(Classifier().eval(), tmp_path / "gru.onnx", example_shape="1x10x5",
                 streaming=True)  # fmt: skip
    text = (Path(__file__).parents[1] / "docs" / "runtime.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    example = next(block for block in blocks if "StreamingSession(" in block)
    frames = [sequence(rng, batch=2, length=4) for _ in range(3)]
    namespace = {"frames": frames, "sequence": sequence(rng, batch=2, length=25)}
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/runtime.md", "exec"), namespace)
    assert namespace["y"].shape == (2, 4, OUTPUTS)
    assert namespace["whole"]["output"].shape == (2, 25, OUTPUTS)


def test_pair_with_time_axis_output_rejected(tmp_path):
    """h0 [2, batch, 16] cannot take y [batch, sequence, 3]: a fixed 2 faces the time axis."""
    path, _ = export_streaming(tmp_path / "tm.onnx", "gru", batch_first=False,
                               record_pairs=False)  # fmt: skip
    with pytest.raises(InputError, match=r"^state pair h0=y does not match"):
        StreamingSession(path, provider="cpu", state_pairs=[("h0", "y")])


def test_state_output_shape_checked_at_first_step(capsys, tmp_path, rng):
    """torch's generated axis names cannot rule out h0=y, so the first step's shapes do."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(FEATURES, HIDDEN).eval()
    path = tmp_path / "gru.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(gru, (torch.randn(4, 2, FEATURES), torch.zeros(1, 2, HIDDEN)),
                          str(path), input_names=["x", "h0"], output_names=["y", "hn"],
                          dynamic_axes={"x": [0, 1], "h0": [1], "y": [0, 1], "hn": [1]},
                          opset_version=17, dynamo=False)  # fmt: skip
    np.save(tmp_path / "x.npy", sequence(rng, batch=3, length=10, time_major=True))
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--stream",
                             "--chunk", "5", "--state", "h0=y", "--layout", "time-major",
                             "-o", tmp_path / "out.npz")  # fmt: skip
    assert code == 2
    assert out == ""
    assert err == (
        "error: state output 'y' returned shape (5, 3, 16), but state input 'h0' takes "
        "(1, 3, 16); pair h0 with the output of its shape in --state h0=OUT (outputs: y, hn)\n"
    )
    assert not (tmp_path / "out.npz").exists()


def test_feed_state_checked_against_its_shape(streaming_models, tmp_path, rng):
    """A --feed value for a state [2, batch, 16] is one value or an array of that rank,
    and an integer array for a float input is rejected, as --input rejects it."""
    with pytest.raises(InputError) as raised:
        Session(streaming_models["lstm-no-pairs"][0], provider="cpu", feeds={"h0": "1,2"})
    assert str(raised.value) == (
        "--feed h0=1,2: value float32[2] min=1 max=2 for input 'h0' does not fit its shape "
        "[2, 'batch', 16]; give one value, which fills it, or a .npy array of that shape"
    )
    np.save(tmp_path / "gain.npy", np.array([2]))
    with pytest.raises(InputError) as raised:
        Session(
            streaming_models["gru-gain"][0],
            provider="cpu",
            feeds={"gain": str(tmp_path / "gain.npy")},
        )
    assert str(raised.value) == (
        f"--feed gain={tmp_path / 'gain.npy'}: value int64[1] min=2 max=2 for input 'gain' is "
        "an int64 array, but the input takes float32; convert it with array.astype('float32')"
    )


def test_feed_one_value_fills_fixed_state(tmp_path, rng):
    path, model = export_auto_named(tmp_path / "fixed.onnx", fixed=True)
    session = Session(path, provider="cpu", feeds={"h0": "0.5"})
    x = sequence(rng, batch=2, length=4, time_major=True)
    expected = _gru_reference(model, x, np.full((2, 2, HIDDEN), 0.5, np.float32))
    np.testing.assert_allclose(session.run(x)["y"], expected, atol=TORCH_ATOL, rtol=0)


def test_npz_mismatch_names_only_what_differs(streaming_models, rng):
    path, _ = streaming_models["gru"]
    x = sequence(rng)
    with pytest.raises(InputError) as raised:
        Session(path, provider="cpu").run({"x": x, "junk": x})
    message = str(raised.value)
    assert "unexpected ['junk']" in message
    assert "missing" not in message
    with pytest.raises(InputError) as raised:
        Session(path, provider="cpu").run({"feats": x})
    message = str(raised.value)
    assert "missing ['x'], unexpected ['feats']" in message
    # The sequence input comes from the input file only.
    assert "--feed" not in message
    assert "--state" not in message


def _fix_output_time_size(path: Path, output: str, steps: int) -> Path:
    """Declare the time axis of `output` as a fixed `steps`, as the dynamo exporter of
    torch 2.x writes an LSTM's per-step output (`['batch', 5, 16]` for a 5-step example)
    although the graph takes any length."""
    proto = onnx.load(str(path))
    info = next(o for o in proto.graph.output if o.name == output)
    dim = info.type.tensor_type.shape.dim[1]
    dim.ClearField("dim_param")
    dim.dim_value = steps
    onnx.save(proto, str(path))
    return path


def _export_fixed_time_input(path: Path) -> tuple[Path, StatefulRNN]:
    """Export a time-major GRU whose only dynamic axis is the batch: x [4, 'batch', 5]."""
    torch.manual_seed(0)
    model = StatefulRNN("gru", batch_first=False).eval()
    example = (torch.randn(4, 2, FEATURES), torch.zeros(2, 2, HIDDEN))
    axes = {"x": {1: "batch"}, "h0": {1: "batch"}, "y": {1: "batch"}, "hn": {1: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), input_names=["x", "h0"],
                          output_names=["y", "hn"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)  # fmt: skip
    return path, model


def test_fixed_output_time_size_joined(tmp_path, rng):
    """An output declared ['batch', 4, 3] streams in chunks of 4, joined along time."""
    path, _ = export_streaming(tmp_path / "lstm.onnx", "lstm")
    _fix_output_time_size(path, "y", 4)
    x = sequence(rng, batch=3, length=12)
    whole = Session(path, provider="cpu").run(x)
    assert whole["y"].shape == (3, 12, OUTPUTS)
    streaming = StreamingSession(path, provider="cpu")
    chunked = streaming.run(x, chunk=4)
    assert chunked["y"].shape == (3, 12, OUTPUTS)
    assert streaming.chunk_steps == 4
    np.testing.assert_allclose(chunked["y"], whole["y"], atol=CHUNK_ATOL, rtol=0)
    np.testing.assert_allclose(chunked["cn"], whole["cn"], atol=CHUNK_ATOL, rtol=0)


def test_fixed_output_time_size_needs_its_chunk(tmp_path, rng):
    path, _ = export_streaming(tmp_path / "lstm.onnx", "lstm")
    _fix_output_time_size(path, "y", 4)
    streaming = StreamingSession(path, provider="cpu")
    with pytest.raises(InputError) as raised:
        streaming.run(sequence(rng, batch=3, length=12), chunk=3)
    assert str(raised.value) == (
        "lstm.onnx declares output 'y' ['batch', 4, 3], a fixed 4 time steps per call, so "
        "it streams only in chunks of 4; pass --chunk 4"
    )
    assert streaming.batch is None
    with pytest.raises(InputError, match=r"the input length must be a multiple of 4; trim it "
                       r"to 8 or pad it to 12 steps$"):  # fmt: skip
        streaming.run(sequence(rng, batch=3, length=10), chunk=4)
    assert streaming.batch is None
    with pytest.raises(InputError, match=r"multiple of 4; pad it to 4 steps$"):
        streaming.run(sequence(rng, batch=3, length=3), chunk=4)
    with pytest.raises(InputError, match=r"^chunk has 3 time steps, but lstm.onnx declares "):
        streaming.step(sequence(rng, batch=3, length=3))


def test_fixed_input_time_size_streams(tmp_path, rng):
    """x [4, 'batch', 5] takes 4 steps per call, so a stream checks each chunk against 4,
    not the whole input."""
    path, model = _export_fixed_time_input(tmp_path / "gru.onnx")
    x = sequence(rng, batch=3, length=12, time_major=True)
    streaming = StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn")])
    assert not streaming.session.batch_major
    chunked = streaming.run(x, chunk=4)
    expected = _gru_reference(model, x, np.zeros((2, 3, HIDDEN), np.float32))
    assert chunked["y"].shape == (12, 3, OUTPUTS)
    np.testing.assert_allclose(chunked["y"], expected, atol=TORCH_ATOL, rtol=0)
    streaming.reset()
    steps = [streaming.step(x[start : start + 4])["y"] for start in range(0, 12, 4)]
    np.testing.assert_allclose(np.concatenate(steps), expected, atol=TORCH_ATOL, rtol=0)
    with pytest.raises(InputError, match=r"declares input 'x' \[4, 'batch', 5\], a fixed 4 "):
        streaming.run(x, chunk=6)


@pytest.mark.parametrize(
    ("chunk", "length", "fragment"),
    [
        ("5", 12, "a fixed 4 time steps per call, so it streams only in chunks of 4; pass "
                  "--chunk 4"),
        ("4", 10, "the input length must be a multiple of 4; trim it to 8 or pad it to 12 "
                  "steps"),
    ],
    ids=["chunk", "length"],
)  # fmt: skip
def test_cli_fixed_time_size_rejected(capsys, tmp_path, rng, chunk, length, fragment):
    path, _ = _export_fixed_time_input(tmp_path / "gru.onnx")
    np.save(tmp_path / "x.npy", sequence(rng, batch=3, length=length, time_major=True))
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--state",
                             "h0=hn", "--stream", "--chunk", chunk, "-o",
                             tmp_path / "out.npz")  # fmt: skip
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert fragment in err
    assert not (tmp_path / "out.npz").exists()


def test_cli_fixed_time_size_streams(capsys, tmp_path, rng):
    path, model = _export_fixed_time_input(tmp_path / "gru.onnx")
    x = sequence(rng, batch=3, length=12, time_major=True)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--state",
                             "h0=hn", "--stream", "--chunk", "4", "-o",
                             tmp_path / "out.npz")  # fmt: skip
    assert code == 0, err
    assert "output y: shape (12, 3, 3)\n" in out
    expected = _gru_reference(model, x, np.zeros((2, 3, HIDDEN), np.float32))
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["y"], expected, atol=TORCH_ATOL,
                               rtol=0)  # fmt: skip


def test_layout_option_against_state_batch(tmp_path, rng, caplog):
    """--layout batch-major on x ['time', 'batch', 5] with h0 [2, 'batch', 16] reads a batch
    of 10 where the state takes 3."""
    path, _ = export_streaming(tmp_path / "tm.onnx", "gru", batch_first=False,
                               record_pairs=False, record_layout=False,
                               axis_names=("batch", "time"))  # fmt: skip
    session = Session(path, provider="cpu", state_pairs=[("h0", "hn")], layout="batch-major")
    x = sequence(rng, batch=3, length=10, time_major=True)
    with caplog.at_level(logging.WARNING, logger="rnnedge"), pytest.raises(InputError) as raised:
        session.run(x)
    assert str(raised.value) == (
        "input has shape (10, 3, 5), read batch-major by --layout as a batch of 10, but "
        "state input 'h0' [2, 'batch', 16] takes a batch of 3, which is axis 1; pass "
        "--layout time-major"
    )
    assert "overrides" not in caplog.text
    streaming = StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn")],
                                 layout="batch-major")  # fmt: skip
    with pytest.raises(InputError, match=r"pass --layout time-major$"):
        streaming.run(x, chunk=4)
    assert streaming.batch is None
    # Where both axes have one size the override runs, with its warning.
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        session.run(sequence(rng, batch=3, length=3, time_major=True))
    assert "--layout batch-major overrides the time-major layout read from the axis" in (
        caplog.text
    )


def test_layout_option_against_fixed_state(tmp_path, rng):
    """x [4, 2, 5] with h0 [2, 2, 16]: batch-major reads a batch of 4, the state fixes 2."""
    path, _ = export_auto_named(tmp_path / "fixed.onnx", fixed=True)
    session = Session(path, provider="cpu", state_pairs=[("h0", "hn")], layout="batch-major")
    with pytest.raises(InputError, match=r"takes a batch of 2, which is axis 1; pass --layout "
                       r"time-major$"):  # fmt: skip
        session.run(sequence(rng, batch=2, length=4, time_major=True))


def test_cli_layout_option_against_state(capsys, tmp_path, rng):
    path, _ = export_streaming(tmp_path / "tm.onnx", "gru", batch_first=False,
                               record_pairs=False, record_layout=False,
                               axis_names=("batch", "time"))  # fmt: skip
    np.save(tmp_path / "x.npy", sequence(rng, batch=3, length=10, time_major=True))
    for extra in ([], ["--stream", "--chunk", "4"]):
        code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--state",
                                 "h0=hn", "--layout", "batch-major", "-o",
                                 tmp_path / "out.npz", *extra)  # fmt: skip
        assert code == 2
        assert out == ""
        assert err == (
            "error: input x.npy has shape (10, 3, 5), read batch-major by --layout as a batch "
            "of 10, but state input 'h0' [2, 'batch', 16] takes a batch of 3, which is axis "
            "1; pass --layout time-major\n"
        )
        assert not (tmp_path / "out.npz").exists()


def test_layout_checked_before_fixed_chunk(capsys, tmp_path, rng):
    """x [4, 2, 5] with h0 [2, 2, 16], read batch-major, would take 2 time steps per call,
    so the --layout error comes before the error about the chunk size."""
    path, model = export_auto_named(tmp_path / "fixed.onnx", fixed=True)
    x = sequence(rng, batch=2, length=12, time_major=True)
    streaming = StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn")],
                                 layout="batch-major")  # fmt: skip
    with pytest.raises(InputError) as raised:
        streaming.run(x, chunk=4)
    assert str(raised.value) == (
        "input has shape (12, 2, 5), read batch-major by --layout as a batch of 12, but state "
        "input 'h0' [2, 2, 16] takes a batch of 2, which is axis 1; pass --layout time-major"
    )
    np.save(tmp_path / "x.npy", x)
    args = ["run", path, "-i", tmp_path / "x.npy", "--state", "h0=hn", "--stream", "--chunk",
            "4", "-o", tmp_path / "out.npz"]  # fmt: skip
    code, out, err = run_cli(capsys, *args, "--layout", "batch-major")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: input x.npy has shape (12, 2, 5), read batch-major by --layout")
    assert not (tmp_path / "out.npz").exists()
    code, out, err = run_cli(capsys, *args, "--layout", "time-major")
    assert code == 0, err
    expected = _gru_reference(model, x, np.zeros((2, 2, HIDDEN), np.float32))
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["y"], expected, atol=TORCH_ATOL,
                               rtol=0)  # fmt: skip


def test_role_states_stream_names_likely_pairs(role_state_models):
    """A model from rnnedge export whose forward takes h0 cannot be exported with
    --streaming, so the error names the --state pairs only."""
    path, _ = role_state_models["gru"]
    with pytest.raises(InputError) as raised:
        StreamingSession(path, provider="cpu")
    assert str(raised.value) == (
        "gru.onnx records no state pairs in its metadata, so it cannot stream; name each pair "
        "with --state IN=OUT, here likely --state h0=output_1 (inputs: input, h0; outputs: "
        "output, output_1)"
    )
    path, _ = role_state_models["lstm"]
    with pytest.raises(InputError) as raised:
        StreamingSession(path, provider="cpu")
    assert "here likely --state h0=output_1 --state c0=output_2 (inputs: " in str(raised.value)
    assert "--streaming" not in str(raised.value)


def test_layout_option_logged_as_the_rule(tmp_path, caplog):
    path, _ = export_auto_named(tmp_path / "auto.onnx")
    with caplog.at_level(logging.DEBUG, logger="rnnedge"):
        Session(path, provider="cpu", state_pairs=[("h0", "hn")], layout="time-major")
    assert "auto.onnx: time-major layout from --layout" in caplog.text
    assert "by default" not in caplog.text


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_cli_rank2_input_guessed_layout(capsys, tmp_path, rng, suffix):
    """A (10, 5) file is one sequence. Where the layout is a guess, the error describes the
    file as given and names --layout, because the layout decides where its batch axis goes."""
    path, model = export_auto_named(tmp_path / "auto.onnx")
    x = sequence(rng, batch=1, length=10, time_major=True)[:, 0]
    data = tmp_path / f"seq{suffix}"
    if suffix == ".csv":
        np.savetxt(data, x, delimiter=",")
    else:
        np.save(data, x)
    args = ["run", path, "-i", data, "--state", "h0=hn", "-o", tmp_path / "out.npz"]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert err == (
        f"error: input seq{suffix} has shape (10, 5), one sequence of 10 time steps, which "
        "runs as a batch of 1. The model records no layout and its axis names do not decide "
        "it, so the batch axis may go before the time axis (batch-major) or after it "
        "(time-major). State input 'h0' takes a state for the batch; pass --layout "
        "batch-major or --layout time-major\n"
    )
    code, out, err = run_cli(capsys, *args, "--layout", "time-major")
    assert code == 0, err
    expected = _gru_reference(model, x[:, np.newaxis], np.zeros((2, 1, HIDDEN), np.float32))
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["y"], expected, atol=TORCH_ATOL,
                               rtol=0)  # fmt: skip


def test_feed_of_paired_state_names_start_state(streaming_models):
    with pytest.raises(InputError) as raised:
        Session(streaming_models["gru"][0], provider="cpu", feeds={"h0": "0"})
    assert str(raised.value) == (
        "--feed h0=0: input 'h0' is a state input, paired with output 'hn' in the model's "
        "metadata, so it starts at zero; to start it from other values, give array 'h0' in an "
        ".npz input file, with or without --stream"
    )
    pairs = [("h0", "hn"), ("c0", "cn")]
    with pytest.raises(InputError) as raised:
        Session(streaming_models["lstm-no-pairs"][0], provider="cpu", state_pairs=pairs,
                feeds={"h0": "0.5"})  # fmt: skip
    assert str(raised.value) == (
        "--feed h0=0.5: input 'h0' is a state input, paired by --state h0=hn, so it starts at "
        "zero; to start it from other values, give array 'h0' in an .npz input file, with or "
        "without --stream, or drop --state h0=hn to give it as a constant with --feed "
        "(without --stream)"
    )
    # The second fix in the message runs.
    session = Session(streaming_models["lstm-no-pairs"][0], provider="cpu",
                      state_pairs=[("c0", "cn")], feeds={"h0": "0.5"})  # fmt: skip
    outputs = session.run(sequence(np.random.default_rng(0), batch=2, length=3))
    assert outputs["y"].shape == (2, 3, OUTPUTS)


def test_cli_stream_npy_output_notes_state(capsys, streaming_models, rng, tmp_path):
    """-o y.npy keeps the first output only, so under --stream a note names the final state
    that it leaves out."""
    path, _ = streaming_models["gru"]
    x = sequence(rng, batch=2, length=10)
    np.save(tmp_path / "x.npy", x)
    args = ["run", path, "-i", tmp_path / "x.npy", "--provider", "cpu"]
    code, _, err = run_cli(capsys, *args, "--stream", "--chunk", "5", "-o", tmp_path / "y.npy")
    assert code == 0, err
    assert err == (
        "note: y.npy holds output 'y' only, so the final state (hn) was not written; -o y.npz "
        "writes it too, for a later run to resume from\n"
    )
    assert np.load(tmp_path / "y.npy").shape == (2, 10, OUTPUTS)
    code, _, err = run_cli(capsys, *args, "--stream", "--chunk", "5", "-o", tmp_path / "y.npz")
    assert code == 0, err
    assert err == ""
    assert sorted(np.load(tmp_path / "y.npz")) == ["hn", "y"]
    code, _, err = run_cli(capsys, *args, "-o", tmp_path / "y.npy")
    assert code == 0, err
    assert err == ""
    code, _, err = run_cli(capsys, *args, "--stream", "-o", tmp_path / "y.npy", "-q")
    assert code == 0, err
    assert err == ""


def test_crossed_state_pairs_warn(streaming_models, rng, caplog):
    """h0=cn and c0=hn type-check, because h and c have one shape, so only the names show
    the swap."""
    path, _ = streaming_models["lstm-no-pairs"]
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        StreamingSession(path, provider="cpu", state_pairs=[("h0", "cn"), ("c0", "hn")])
    assert caplog.text.count("each pair a hidden state with a cell state") == 1
    assert (
        "state pairs h0=cn and c0=hn each pair a hidden state with a cell state; if that is "
        "not intended, pass --state h0=hn --state c0=cn"
    ) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn"), ("c0", "cn")])
    assert caplog.text == ""


def test_feed_and_input_file_both_give_constant(capsys, streaming_models, rng, tmp_path):
    path, _ = streaming_models["gru-gain"]
    x = sequence(rng, batch=1, length=5)
    np.savez(tmp_path / "in.npz", x=x, gain=np.array([0.5], np.float32))
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "in.npz", "--feed", "gain=2")
    assert code == 2
    assert out == ""
    assert err == (
        "error: input 'gain' is given twice, by input in.npz and as a constant "
        "(--feed gain); remove it from one of them\n"
    )


@pytest.mark.parametrize("rank", [0, 1], ids=["scalar", "vector"])
def test_feed_integer_npy_for_float_rejected(tmp_path, rank):
    path = _scaled_model(tmp_path / "scaled.onnx", 1, (1,) * rank)
    np.save(tmp_path / "g.npy", np.array(2 if rank == 0 else [2], np.int32))
    with pytest.raises(InputError, match=r"is an int32 array, but the input takes float32"):
        Session(path, provider="cpu", feeds={"scale": str(tmp_path / "g.npy")})


def test_feed_pickled_npy_named_like_input(tmp_path):
    path = _scaled_model(tmp_path / "scaled.onnx", 1)
    np.save(tmp_path / "g.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as raised:
        Session(path, provider="cpu", feeds={"scale": str(tmp_path / "g.npy")})
    assert str(raised.value).startswith(f"--feed scale={tmp_path / 'g.npy'}: cannot read ")
    assert "contains an object array (pickled data)" in str(raised.value)


def test_state_pairs_as_mapping(streaming_models, rng):
    path, _ = streaming_models["lstm-no-pairs"]
    x = sequence(rng)
    by_mapping = StreamingSession(path, provider="cpu", state_pairs={"h0": "hn", "c0": "cn"})
    by_pairs = StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn"), ("c0", "cn")])
    assert by_mapping.state_pairs == by_pairs.state_pairs
    np.testing.assert_array_equal(by_mapping.run(x, chunk=5)["y"], by_pairs.run(x, chunk=5)["y"])


@pytest.mark.parametrize(
    "pairs",
    [("h0", "hn"), ["h0=hn"], [("h0", "hn", "x")], [("h0", 1)]],
    ids=["one-pair", "text", "triple", "number"],
)
def test_state_pairs_of_wrong_form(streaming_models, pairs):
    path, _ = streaming_models["lstm-no-pairs"]
    with pytest.raises(InputError, match=r"^state_pairs takes \(state input, state output\) name"):
        StreamingSession(path, provider="cpu", state_pairs=pairs)


class BidirectionalWithState(torch.nn.Module):
    def __init__(self, cell: str):
        super().__init__()
        rnn = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
        self.rnn = rnn(FEATURES, HIDDEN, batch_first=True, bidirectional=True)

    def forward(self, x, h0):
        y, state = self.rnn(x, h0)
        return y, state if isinstance(state, torch.Tensor) else state[0]


def test_bidirectional_model_cannot_stream(capsys, tmp_path, rng):
    torch.manual_seed(0)
    path = tmp_path / "bigru.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(BidirectionalWithState("gru").eval(),
                          (torch.randn(2, 4, FEATURES), torch.zeros(2, 2, HIDDEN)), str(path),
                          input_names=["x", "h0"], output_names=["y", "hn"],
                          dynamic_axes={"x": {0: "batch", 1: "sequence"}, "h0": {1: "batch"}},
                          opset_version=17, dynamo=False)  # fmt: skip
    with pytest.raises(InputError) as raised:
        StreamingSession(path, provider="cpu", state_pairs=[("h0", "hn")])
    assert re.fullmatch(
        r"bigru\.onnx has a bidirectional GRU node '.+', whose backward pass starts at the "
        r"last time step, so it cannot run chunk by chunk; run it without --stream, on the "
        r"whole sequence",
        str(raised.value),
    ), raised.value
    x = sequence(rng, batch=1, length=6)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--stream",
                             "--chunk", "3", "--state", "h0=hn")  # fmt: skip
    assert code == 2
    assert out == ""
    assert "has a bidirectional GRU node" in err
    code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--state", "h0=hn")
    assert code == 0, err


def test_bidirectional_export_not_told_to_stream(capsys, tmp_path):
    # rnnedge's own export of a bidirectional model records no state pairs; its stream
    # error must not suggest export --streaming, which rejects bidirectional models.
    torch.manual_seed(0)
    path = tmp_path / "bilstm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True, bidirectional=True),
                          (torch.randn(2, 4, FEATURES),), str(path), input_names=["x"],
                          output_names=["y", "hn", "cn"], opset_version=17, dynamo=False,
                          dynamic_axes={"x": {0: "batch", 1: "sequence"}})  # fmt: skip
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"rnnedge.cell": "lstm", "rnnedge.layout": "batch-major"})
    onnx.save(proto, str(path))
    with pytest.raises(InputError) as raised:
        StreamingSession(path, provider="cpu")
    assert "bidirectional LSTM node" in str(raised.value)
    assert "--streaming" not in str(raised.value)


def test_chunk_numpy_integer(streaming_models, rng):
    path, _ = streaming_models["gru"]
    x = sequence(rng)
    by_numpy = StreamingSession(path, provider="cpu").run(x, chunk=np.int64(5))
    by_int = StreamingSession(path, provider="cpu").run(x, chunk=5)
    np.testing.assert_array_equal(by_numpy["y"], by_int["y"])
    for bad in (np.float64(5.0), True, 0, np.int64(-1)):
        with pytest.raises(InputError, match="chunk must be a whole number of time steps"):
            StreamingSession(path, provider="cpu").run(x, chunk=bad)


def test_lists_and_numbers_as_inputs(streaming_models, rng):
    path, _ = streaming_models["gru-gain"]
    x = sequence(rng, batch=2, length=4)
    session = Session(path, provider="cpu", state_pairs={"h0": "hn"})
    expected = session.run({"x": x, "gain": np.array([0.5], np.float32)})["y"]
    got = session.run({"x": x.tolist(), "gain": [0.5]})["y"]
    np.testing.assert_allclose(got, expected, atol=1e-7, rtol=0)
    assert Session(path, provider="cpu", feeds={"gain": 0.5}).run(x.tolist())["y"].shape == (
        2, 4, OUTPUTS,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param({1, 2}, "input is a set, not an array; pass a numpy array", id="set"),
        pytest.param(
            [[1.0], [1.0, 2.0]], "input is a list that does not form an array", id="ragged"
        ),
        pytest.param("abc", "input is a str, not an array; pass a numpy array", id="text"),
    ],
)
def test_non_array_input_rejected(streaming_models, value, message):
    path, _ = streaming_models["gru"]
    with pytest.raises(InputError, match=re.escape(message)):
        Session(path, provider="cpu").run(value)


@pytest.mark.parametrize(
    ("length", "fix"),
    [
        (12, "; or run it 4 steps at a time with --stream --chunk 4, which carries the state"),
        (10, "with --stream --chunk 4 after trimming or padding it to a multiple of 4 steps"),
    ],
    ids=["multiple", "not-multiple"],
)
def test_cli_fixed_time_size_batch_run_names_stream(capsys, tmp_path, rng, length, fix):
    path, _ = _export_fixed_time_input(tmp_path / "gru.onnx")
    np.save(tmp_path / "x.npy", sequence(rng, batch=3, length=length, time_major=True))
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--state", "h0=hn")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "axis 0 must be 4" in err
    assert fix in err


def _lstm_reading_one_state(path: Path) -> Path:
    """An LSTM graph whose node takes c0 as both initial states, leaving h0 unread, as
    torch.onnx.export writes when given one tensor for h0 and c0."""
    helper, tensor = onnx.helper, onnx.TensorProto
    rng = np.random.default_rng(0)
    weights = {
        "W": rng.standard_normal((1, 4 * HIDDEN, FEATURES)).astype(np.float32) * 0.1,
        "R": rng.standard_normal((1, 4 * HIDDEN, HIDDEN)).astype(np.float32) * 0.1,
    }
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R", "", "", "c0", "c0"], ["y", "hn", "cn"],
                          hidden_size=HIDDEN)],
        "one_state",
        [helper.make_tensor_value_info("x", tensor.FLOAT, ["sequence", "batch", FEATURES]),
         helper.make_tensor_value_info("h0", tensor.FLOAT, [1, "batch", HIDDEN]),
         helper.make_tensor_value_info("c0", tensor.FLOAT, [1, "batch", HIDDEN])],
        [helper.make_tensor_value_info("y", tensor.FLOAT, ["sequence", 1, "batch", HIDDEN]),
         helper.make_tensor_value_info("hn", tensor.FLOAT, [1, "batch", HIDDEN]),
         helper.make_tensor_value_info("cn", tensor.FLOAT, [1, "batch", HIDDEN])],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in weights.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_unread_state_input_warns(tmp_path, caplog):
    path = _lstm_reading_one_state(tmp_path / "one_state.onnx")
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        StreamingSession(path, provider="cpu", state_pairs={"h0": "hn", "c0": "cn"})
    warnings_seen = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_seen) == 1, warnings_seen
    assert warnings_seen[0].startswith(
        "state input 'h0' of one_state.onnx is read by no node, so the state carried into it "
        "from 'hn' is dropped on every chunk"
    )


def test_read_state_inputs_do_not_warn(streaming_models, caplog):
    path, _ = streaming_models["lstm"]
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        StreamingSession(path, provider="cpu")
    assert "read by no node" not in caplog.text


@pytest.mark.parametrize("command", ["run", "profile"])
def test_fixed_shape_read_as_steps_of_one_rejected(capsys, tmp_path, rng, command):
    # torch.onnx.export without dynamic axes fixes a time-major GRU's input at the example
    # shape [10, 1, 5]: read batch-major by default, that would be 10 sequences of 1 step.
    torch.manual_seed(0)
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.GRU(FEATURES, HIDDEN), (torch.randn(10, 1, FEATURES),),
                          str(path), input_names=["x"], opset_version=17, dynamo=False)  # fmt: skip
    np.save(tmp_path / "x.npy", sequence(rng, batch=1, length=10, time_major=True))
    args = ["-i", tmp_path / "x.npy"] if command == "run" else ["--no-store", "--runs", "3"]
    code, out, err = run_cli(capsys, command, path, *args)
    assert code == 2
    assert out == ""
    assert err.splitlines()[-1] == (
        "error: fixed.onnx records no layout, and input 'x' has the fixed shape [10, 1, 5], "
        "which read batch-major (the default) is 10 sequences of 1 time step each; pass "
        "--layout time-major if the model takes 10 time steps of 1 sequence, or --layout "
        "batch-major if it does take 10 sequences of 1 step"
    )
    code, _, err = run_cli(capsys, command, path, *args, "--layout", "time-major")
    assert code == 0, err


class TimeMajorGruWithHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(FEATURES, HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, OUTPUTS)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def test_folded_time_steps_rejected(capsys, tmp_path, rng):
    # torch 2.13's dynamo exporter fixes the Reshape after this GRU to the example's 20
    # steps while the input's time axis stays dynamic, so 40 steps come back as (20, 4, 3).
    from rnnedge.export.exporters import _clear_rnn_dispatch_caches

    torch.manual_seed(0)
    path = tmp_path / "folded.onnx"
    dynamic = torch.export.Dim.DYNAMIC
    # An earlier dynamo export in this process leaves a stale GRU kernel behind, which would
    # fix the input's time axis too (see the NOTE in rnnedge/export/exporters.py).
    _clear_rnn_dispatch_caches()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TimeMajorGruWithHead().eval(), (torch.randn(20, 2, FEATURES),),
                          str(path), dynamo=True, opset_version=18, input_names=["x"],
                          output_names=["y"], dynamic_shapes=({0: dynamic, 1: dynamic},),
                          verbose=False)  # fmt: skip
    session = Session(path, provider="cpu", layout="time-major")
    assert session.run(sequence(rng, batch=2, length=20, time_major=True))["y"].shape == (
        20, 2, OUTPUTS,
    )  # fmt: skip
    np.save(tmp_path / "x.npy", sequence(rng, batch=2, length=40, time_major=True))
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--layout",
                             "time-major", "-o", tmp_path / "y.npz")  # fmt: skip
    assert code == 2
    assert "output y: shape" not in out
    assert err.count("\n") == 1
    assert "has 40 time steps, but output 'y' of folded.onnx" in err
    assert "came back with shape (20, 4, 3): the graph fixes 20 time steps per call" in err
    assert not (tmp_path / "y.npz").exists()
    # profile stops before measuring, and names the length that the graph runs right.
    code, out, err = run_cli(capsys, "profile", path, "--layout", "time-major", "--no-store",
                             "--runs", "3", "--warmup", "0", "--operators", "0",
                             "--seq-len", "40")  # fmt: skip
    assert code == 2
    assert out == ""
    assert err.rstrip().endswith("pass --seq-len 20")


def test_reset_from_whole_run_output(streaming_models, rng):
    path, _ = streaming_models["gru"]
    x = sequence(rng)
    first = StreamingSession(path, provider="cpu")
    outputs = first.run(x[:, :10], chunk=5)
    resumed = StreamingSession(path, provider="cpu")
    resumed.reset(states=outputs)  # "y" is an output but no state: left out
    continued = resumed.run(x[:, 10:], chunk=5)["y"]
    whole = StreamingSession(path, provider="cpu").run(x, chunk=5)["y"]
    np.testing.assert_allclose(continued, whole[:, 10:], atol=CHUNK_ATOL, rtol=0)
    with pytest.raises(InputError, match=r"takes a mapping of arrays .*, not a list"):
        resumed.reset(states=[outputs["hn"]])


def test_feeds_as_pairs(streaming_models, rng):
    path, _ = streaming_models["gru-gain"]
    x = sequence(rng, batch=2, length=5)
    by_pairs = Session(path, provider="cpu", feeds=[("gain", 0.5)], state_pairs={"h0": "hn"})
    by_mapping = Session(path, provider="cpu", feeds={"gain": 0.5}, state_pairs={"h0": "hn"})
    np.testing.assert_array_equal(by_pairs.run(x)["y"], by_mapping.run(x)["y"])
    with pytest.raises(InputError, match=r"^feeds takes constant inputs by name"):
        Session(path, provider="cpu", feeds=["gain"])


def test_bad_start_state_reported_alone(streaming_models, caplog):
    path, _ = streaming_models["lstm"]
    stream = StreamingSession(path, provider="cpu")
    with (
        caplog.at_level(logging.WARNING, logger="rnnedge"),
        pytest.raises(InputError, match=r"start state 'h0'"),
    ):
        stream.reset(states={"h0": np.zeros((2, 3), np.float32)})
    # c0 would start at zero, but the reset failed, so no warning names it.
    assert "start at zero" not in caplog.text
    assert "starts at zero" not in caplog.text
