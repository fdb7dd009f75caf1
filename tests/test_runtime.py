from __future__ import annotations

import json
import logging
import os
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rnnedge.cli import main
from rnnedge.errors import InputError, ProviderError
from rnnedge.export import load_checkpoint
from rnnedge.runtime import Session
from rnnedge.runtime.inputs import check_sequence_input, load_array_file
from rnnedge.runtime.metadata import ModelMetadata
from rnnedge.runtime.providers import (
    CPU_EP,
    CUDA_EP,
    TENSORRT_EP,
    Provider,
    check_session_providers,
    parse_provider,
    plan_providers,
)
from tests.conftest import FEATURES, LABELS


def test_session_normalizes_like_training(exported, rng):
    checkpoint = load_checkpoint(exported["gru.pt"])
    raw = rng.normal(3.0, 5.0, (5, 40, FEATURES)).astype(np.float32)
    normalized = (raw - 0.5) / 2.0
    expected = checkpoint.model(torch.from_numpy(normalized)).detach().numpy()
    session = Session(exported["gru"], provider="cpu")
    actual = session.run(raw)["output"]
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)


def test_session_predict_returns_labels(exported, rng):
    session = Session(exported["lstm"], provider="cpu")
    labels = session.predict(rng.standard_normal((6, 20, FEATURES)).astype(np.float32))
    assert labels.shape == (6,)
    assert set(labels) <= set(LABELS)


def test_session_reads_metadata(exported):
    session = Session(exported["lstm"], provider="cpu")
    assert session.metadata.features == FEATURES
    assert session.metadata.labels == tuple(LABELS)
    assert session.providers == [CPU_EP]


def test_rank2_input_is_one_sequence(exported, rng):
    session = Session(exported["lstm"], provider="cpu")
    x = rng.standard_normal((20, FEATURES)).astype(np.float32)
    single = session.run(x)["output"]
    batched = session.run(x[np.newaxis])["output"]
    assert single.shape == (1, len(LABELS))
    np.testing.assert_array_equal(single, batched)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        pytest.param(np.zeros((2, 10, 5), np.float32), "axis 2 must be 6", id="features"),
        pytest.param(np.zeros((2, 10, 6), np.int64), "dtype int64", id="dtype"),
        pytest.param(np.zeros((6,), np.float32), "expects rank 3", id="rank1"),
        pytest.param(np.zeros((1, 2, 10, 6), np.float32), "expects rank 3", id="rank4"),
        pytest.param(np.zeros((2, 0, 6), np.float32), "empty axis 1", id="empty-sequence"),
        pytest.param(np.zeros((0, 10, 6), np.float32), "empty axis 0", id="empty-batch"),
        pytest.param(np.full((1, 3, 6), np.nan, np.float32), "18 NaN or infinite", id="nan"),
    ],
)
def test_bad_input_rejected(exported, array, message):
    session = Session(exported["lstm"], provider="cpu")
    with pytest.raises(InputError, match=message):
        session.run(array)


def test_float64_input_cast():
    out = check_sequence_input(np.ones((1, 2, 3)), "x", ["batch", "sequence", 3], "tensor(float)")
    assert out.dtype == np.float32


def test_missing_and_invalid_model_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Session(tmp_path / "missing.onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        Session(empty)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(InputError, match="not a valid ONNX model"):
        Session(junk)


def test_load_array_file_formats(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "a.npy", array)
    np.savez(tmp_path / "a.npz", input=array)
    np.savetxt(tmp_path / "a.csv", array, delimiter=",", header="x,y,z", comments="")
    np.testing.assert_array_equal(load_array_file(tmp_path / "a.npy"), array)
    np.testing.assert_array_equal(load_array_file(tmp_path / "a.npz")["input"], array)
    np.testing.assert_array_equal(load_array_file(tmp_path / "a.csv"), array)


def test_load_array_file_rejects_pickle_and_truncation(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="cannot read"):
        load_array_file(tmp_path / "obj.npy")
    np.save(tmp_path / "ok.npy", np.zeros((100, 6), np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:300])
    with pytest.raises(InputError, match="cannot read"):
        load_array_file(tmp_path / "cut.npy")
    with pytest.raises(InputError, match=r"unsupported input file type '\.txt'"):
        (tmp_path / "a.txt").write_text("1,2")
        load_array_file(tmp_path / "a.txt")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("auto", Provider.AUTO), ("CPU", Provider.CPU), ("CUDAExecutionProvider", Provider.CUDA),
     ("trt", Provider.TENSORRT), ("arm", Provider.ARM)],
)  # fmt: skip
def test_parse_provider(name, expected):
    assert parse_provider(name) is expected


def test_parse_provider_unknown():
    with pytest.raises(InputError, match="unknown provider 'tpu'; choose one of: auto, cpu"):
        parse_provider("tpu")


def test_plan_cuda_unavailable_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        plan = plan_providers("cuda", available=[CPU_EP])
    assert plan.providers == (CPU_EP,)
    assert "falling back to CPUExecutionProvider" in caplog.text


def test_plan_records_fallback():
    assert plan_providers("cuda", available=[CPU_EP]).fallback
    assert not plan_providers("cuda", available=[CUDA_EP, CPU_EP]).fallback
    assert not plan_providers("cpu", available=[CPU_EP]).fallback
    assert not plan_providers("auto", available=[CPU_EP]).fallback


CUDA_MISSING = pytest.mark.skipif(
    CUDA_EP in ort.get_available_providers(), reason="this onnxruntime build offers CUDA"
)


@CUDA_MISSING
def test_cli_fallback_warning_survives_quiet(exported, rng, tmp_path, capsys):
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 10, FEATURES)).astype(np.float32))
    code = main(["run", str(exported["gru"]), "-i", str(tmp_path / "x.npy"), "--provider",
                 "cuda", "-q"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("WARNING: provider 'cuda' needs CUDAExecutionProvider")
    assert "; falling back to CPUExecutionProvider. Install onnxruntime-gpu" in lines[0]


@CUDA_MISSING
@pytest.mark.parametrize(("provider", "fallback"), [("cuda", True), ("cpu", False)])
def test_cli_json_reports_fallback(exported, rng, tmp_path, capsys, provider, fallback):
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 10, FEATURES)).astype(np.float32))
    code = main(["run", str(exported["gru"]), "-i", str(tmp_path / "x.npy"), "--provider",
                 provider, "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["requested_provider"] == provider
    assert report["fallback"] is fallback
    assert report["providers"] == [CPU_EP]


def test_plan_cuda_unavailable_strict():
    with pytest.raises(ProviderError, match="needs CUDAExecutionProvider"):
        plan_providers("cuda", available=[CPU_EP], strict=True)


def test_plan_tensorrt_available_with_options():
    plan = plan_providers(
        "tensorrt",
        options={"tensorrt": {"trt_fp16_enable": True}, "cuda": {"device_id": 1}},
        available=[TENSORRT_EP, CUDA_EP, CPU_EP],
    )
    assert plan.providers == (TENSORRT_EP, CUDA_EP, CPU_EP)
    assert plan.options == ({"trt_fp16_enable": True}, {"device_id": 1}, {})


def test_plan_auto_follows_preference():
    plan = plan_providers("auto", preference=["cuda", "cpu"], available=[CUDA_EP, CPU_EP])
    assert plan.providers == (CUDA_EP, CPU_EP)
    plan = plan_providers("auto", preference=["tensorrt", "cuda", "cpu"], available=[CPU_EP])
    assert plan.providers == (CPU_EP,)


def test_plan_arm_on_x86(monkeypatch, caplog):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        plan_providers("arm", available=[CPU_EP])
    assert "needs an ARM CPU" in caplog.text
    with pytest.raises(ProviderError, match="needs an ARM CPU"):
        plan_providers("arm", available=[CPU_EP], strict=True)


def test_session_fallback_detected():
    plan = plan_providers("cuda", available=[CUDA_EP, CPU_EP])
    with pytest.raises(ProviderError, match="CUDAExecutionProvider failed to load"):
        check_session_providers(plan, [CPU_EP], strict=True)


def test_metadata_roundtrip():
    props = {
        "rnnedge.layout": "time-major",
        "rnnedge.features": "12",
        "rnnedge.labels": '["a", "b"]',
        "rnnedge.normalization": '{"mean": [1, 2], "std": [3, 4]}',
        "rnnedge.task": "classification",
        "rnnedge.hidden_size": "64",
        "other": "ignored",
    }
    metadata = ModelMetadata.from_props(props)
    assert metadata.features == 12
    assert metadata.labels == ("a", "b")
    assert metadata.extra == {"hidden_size": "64"}
    assert ModelMetadata.from_props(metadata.to_props()) == metadata


@pytest.mark.parametrize(
    "props",
    [{"rnnedge.features": "six"}, {"rnnedge.labels": "[not json"},
     {"rnnedge.layout": "sideways"}, {"rnnedge.normalization": '{"mean": [1]}'}],
)  # fmt: skip
def test_metadata_invalid(props):
    with pytest.raises(InputError, match="invalid rnnedge metadata"):
        ModelMetadata.from_props(props)


def test_metadata_newer_format_rejected():
    with pytest.raises(InputError, match="upgrade rnnedge"):
        ModelMetadata.from_props({"rnnedge.format_version": "99"})


# --- input files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("ax,ay,az\n1,2,3\n4,5,6\n", [[1, 2, 3], [4, 5, 6]], id="header"),
        pytest.param("1,2,3\n4,5,6\n", [[1, 2, 3], [4, 5, 6]], id="no-header"),
        pytest.param("nan,inf,-1e3\n4,5,6\n", [[np.nan, np.inf, -1e3], [4, 5, 6]], id="nan-inf"),
        pytest.param("# comment\n\n1,2,3\n\n4,5,6\n", [[1, 2, 3], [4, 5, 6]], id="blank-lines"),
        pytest.param("ax;ay;az\n1;2;3\n4;5;6\n", [[1, 2, 3], [4, 5, 6]], id="semicolons"),
        pytest.param("1;2;3\n4;5;6\n", [[1, 2, 3], [4, 5, 6]], id="semicolons-no-header"),
        pytest.param("ax\tay\taz\n1\t2\t3\n4\t5\t6\n", [[1, 2, 3], [4, 5, 6]], id="tabs"),
        pytest.param("# a;b\n1\n2\n", [[1], [2]], id="one-column"),
    ],
)
def test_csv_keeps_every_time_step(tmp_path, text, expected):
    (tmp_path / "x.csv").write_text(text)
    array = load_array_file(tmp_path / "x.csv")
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, np.array(expected, np.float32))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("1,x,3\n4,5,6\n", "line 1: field 'x' is not a number", id="bad-first-row"),
        pytest.param(
            "a,b,c\n1,2,3\n4,5,oops\n", "line 3: field 'oops' is not a number", id="bad-later-row"
        ),
        pytest.param(
            "1,2\n3,4,5\n", "line 2 has 3 fields, but the first row has 2", id="ragged-longer"
        ),
        pytest.param(
            "a,b,c\n1,2,3\n\n4,5\n",
            "line 4 has 2 fields, but the first row has 3",
            id="ragged-shorter",
        ),
        pytest.param(
            "1,2,3,\n4,5,6\n", "line 1: field 4 of 4 is empty", id="trailing-comma-one-row"
        ),
        pytest.param("1_000,2\n", "line 1: field '1_000' is not a number", id="underscore"),
        pytest.param("", "contains no numbers", id="empty"),
        pytest.param("ax,ay\n", "contains no numbers", id="header-only"),
        pytest.param(
            "0,5;1,5\n", "line 1 contains both ';' and ','; separate the fields", id="decimal-comma"
        ),
        pytest.param("1;2;3\n4;x;6\n", "line 2: field 'x' is not a number", id="semicolon-bad"),
    ],
)
def test_csv_errors_name_the_line(tmp_path, text, message):
    (tmp_path / "x.csv").write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" must not show
        with pytest.raises(InputError, match=message) as info:
            load_array_file(tmp_path / "x.csv")
    assert "numpy" not in str(info.value)
    assert "\n" not in str(info.value)


def test_csv_not_utf8(tmp_path):
    (tmp_path / "x.csv").write_bytes(b"\xff\xfe1,2\n")
    with pytest.raises(InputError, match="is not UTF-8 text") as info:
        load_array_file(tmp_path / "x.csv")
    assert "numpy" not in str(info.value)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_garbage_array_file_is_not_called_pickle(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(b"this is not numpy output" * 4)
    with pytest.raises(InputError, match=rf"is not a valid \{suffix} file") as info:
        load_array_file(path)
    assert "pickle" not in str(info.value)


def test_object_array_is_called_pickle(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"contains an object array \(pickled data\)"):
        load_array_file(tmp_path / "obj.npy")


def test_input_directory_is_named(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(InputError, match=r"input path '.*adir' is a directory"):
        load_array_file(tmp_path / "adir")


def test_float64_beyond_float32_range_rejected():
    array = np.full((1, 2, 3), 1e39)
    with pytest.raises(InputError, match="beyond the float32 range"):
        check_sequence_input(array, "x", ["batch", "sequence", 3], "tensor(float)")


def test_session_warns_above_logical_cores(exported, caplog):
    threads = (os.cpu_count() or 1) + 1
    session = Session(exported["lstm"], provider="cpu", threads=threads)
    assert session.threads == threads
    assert f"{threads} threads exceed the {os.cpu_count()} logical cores" in caplog.text


# A GRU from torch.onnx.export with no rnnedge metadata: time-major, whose start state is
# the input h_in and whose final state is the output h_out, with no pair recorded.
FOREIGN_HIDDEN = 16


def export_foreign_gru(path) -> torch.nn.GRU:
    """Export nn.GRU(6, 16) to `path` as a model from elsewhere would be; return the GRU."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(FEATURES, FOREIGN_HIDDEN).eval()
    example = (torch.randn(5, 2, FEATURES), torch.zeros(1, 2, FOREIGN_HIDDEN))
    axes = {"x": {0: "seq", 1: "batch"}, "h_in": {1: "batch"},
            "y": {0: "seq", 1: "batch"}, "h_out": {1: "batch"}}  # fmt: skip
    with warnings.catch_warnings():
        # The TorchScript-based exporter warns that a GRU exported without its state
        # input may not run at other batch sizes. This GRU has its state as an input.
        warnings.simplefilter("ignore")
        torch.onnx.export(gru, example, str(path), input_names=["x", "h_in"],
                          output_names=["y", "h_out"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)  # fmt: skip
    return gru


@pytest.fixture(scope="module")
def foreign_gru(tmp_path_factory):
    path = tmp_path_factory.mktemp("foreign") / "foreign_gru.onnx"
    return path, export_foreign_gru(path)


def _torch_gru(gru: torch.nn.GRU, x: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, ...]:
    with torch.no_grad():
        y, hn = gru(torch.from_numpy(x), torch.from_numpy(h0))
    return y.numpy(), hn.numpy()


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


STATE_MESSAGE = (
    "error: input 'h_in' looks like a recurrent state (like output 'h_out'); name the pair "
    "with --state h_in=h_out, or give a constant with --feed h_in=VALUE\n"
)


@pytest.mark.parametrize("value", ["0", "0.5"])
def test_run_feed_value_fills_state(capsys, foreign_gru, rng, tmp_path, value):
    path, gru = foreign_gru
    x = rng.standard_normal((3, 20, FEATURES)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy", "--feed",
                           f"h_in={value}", "-o", tmp_path / "out.npz")  # fmt: skip
    assert code == 0, err
    outputs = np.load(tmp_path / "out.npz")
    h0 = np.full((1, 20, FOREIGN_HIDDEN), float(value), np.float32)
    y, hn = _torch_gru(gru, x, h0)
    np.testing.assert_allclose(outputs["y"], y, atol=1e-5, rtol=0)
    np.testing.assert_allclose(outputs["h_out"], hn, atol=1e-5, rtol=0)


def test_session_feed_fills_each_batch(foreign_gru, rng):
    path, gru = foreign_gru
    session = Session(path, provider="cpu", feeds={"h_in": 0.25})
    for batch in (1, 4):
        x = rng.standard_normal((7, batch, FEATURES)).astype(np.float32)
        h0 = np.full((1, batch, FOREIGN_HIDDEN), 0.25, np.float32)
        outputs = session.run(x)
        np.testing.assert_allclose(outputs["y"], _torch_gru(gru, x, h0)[0], atol=1e-5, rtol=0)


def test_run_unnamed_state_rejected(capsys, foreign_gru, rng, tmp_path):
    path, _ = foreign_gru
    np.save(tmp_path / "x.npy", rng.standard_normal((3, 20, FEATURES)).astype(np.float32))
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy",
                             "-o", tmp_path / "out.npz")  # fmt: skip
    assert code == 2
    assert err == STATE_MESSAGE
    assert out == ""
    assert not (tmp_path / "out.npz").exists()


def test_session_unnamed_state_in_npz(foreign_gru, rng):
    path, _ = foreign_gru
    session = Session(path, provider="cpu")
    assert session.unnamed_state_inputs() == [("h_in", "h_out")]
    x = rng.standard_normal((3, 20, FEATURES)).astype(np.float32)
    with pytest.raises(InputError, match=r"^input 'h_in' looks like a recurrent state"):
        session.run({"x": x})


def test_run_npz_state_of_the_data_batch(capsys, foreign_gru, rng, tmp_path):
    path, gru = foreign_gru
    x = rng.standard_normal((3, 20, FEATURES)).astype(np.float32)
    h0 = rng.standard_normal((1, 20, FOREIGN_HIDDEN)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, h_in=h0)
    code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "in.npz",
                           "-o", tmp_path / "out.npz")  # fmt: skip
    assert code == 0, err
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npz")["y"], _torch_gru(gru, x, h0)[0], atol=1e-5, rtol=0
    )


def test_run_npz_state_batch_mismatch(capsys, foreign_gru, rng, tmp_path):
    path, _ = foreign_gru
    x = rng.standard_normal((3, 20, FEATURES)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, h_in=np.zeros((1, 4, FOREIGN_HIDDEN), np.float32))
    code, out, err = run_cli(capsys, "run", path, "-i", tmp_path / "in.npz")
    assert code == 2
    assert out == ""
    assert err == (
        "error: input in.npz[h_in] has shape (1, 4, 16), a state for a batch of 4, but "
        "input in.npz[x] of shape (3, 20, 6) has a batch of 20 on axis 1 (time-major); "
        "give h_in the shape (1, 20, 16)\n"
    )


def test_run_feed_npy_batch_mismatch(capsys, foreign_gru, rng, tmp_path):
    path, _ = foreign_gru
    np.save(tmp_path / "x.npy", rng.standard_normal((3, 20, FEATURES)).astype(np.float32))
    np.save(tmp_path / "h.npy", np.zeros((1, 4, FOREIGN_HIDDEN), np.float32))
    code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy",
                           "--feed", f"h_in={tmp_path / 'h.npy'}")  # fmt: skip
    assert code == 2
    assert err == (
        "error: --feed h_in has shape [1, 4, 16], for a batch of 4, but the run has a batch "
        "of 20; give one value (such as --feed h_in=0), which fills any batch, or give an "
        "input of 4 sequences\n"
    )


def test_run_states_time_major_layout(capsys, foreign_gru, rng, tmp_path):
    path, _ = foreign_gru
    np.save(tmp_path / "x.npy", rng.standard_normal((3, 20, FEATURES)).astype(np.float32))
    args = ["run", path, "-i", tmp_path / "x.npy", "--state", "h_in=h_out"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "input x: (3, 20, 6) read as (time, batch, features), from the axis names\n" in out
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    assert json.loads(out)["layout"] == "time-major"
    code, out, err = run_cli(capsys, *args, "-q")
    assert code == 0, err
    assert out == ""


def test_run_states_batch_major_layout(capsys, exported, rng, tmp_path):
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 9, FEATURES)).astype(np.float32))
    args = ["run", exported["gru"], "-i", tmp_path / "x.npy"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "input input: (2, 9, 6) read as (batch, time, features), as recorded in the model\n" in (
        out
    )
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    assert json.loads(out)["layout"] == "batch-major"


def test_run_rank2_input_has_no_layout_line(capsys, exported, rng, tmp_path):
    np.save(tmp_path / "x.npy", rng.standard_normal((9, FEATURES)).astype(np.float32))
    code, out, err = run_cli(capsys, "run", exported["gru"], "-i", tmp_path / "x.npy")
    assert code == 0, err
    assert "read as" not in out


def test_constant_feeds_kept_per_batch(foreign_gru):
    path, _ = foreign_gru
    session = Session(path, provider="cpu", feeds={"h_in": "0.5"})
    first = session.constant_feeds(3)["h_in"]
    assert first.shape == (1, 3, FOREIGN_HIDDEN)
    assert session.constant_feeds(3)["h_in"] is first
    assert session.constant_feeds(4)["h_in"].shape == (1, 4, FOREIGN_HIDDEN)
    session.feeds = {"h_in": np.full((1, 3, FOREIGN_HIDDEN), 2.0, np.float32)}
    assert float(session.constant_feeds(3)["h_in"][0, 0, 0]) == 2.0


def test_csv_value_beyond_float32_named(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("1e39,2,3\n4,5,6\n")
    with pytest.raises(InputError, match="beyond the float32 range"):
        check_sequence_input(load_array_file(path), "x", ["batch", "sequence", 3],
                             "tensor(float)")  # fmt: skip
