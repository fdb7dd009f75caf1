"""Untrusted files: external data outside the model's folder, pickles, YAML tags, ssh commands.

Each hostile file here would do something observable if it were trusted: read a file
outside the model's folder, or create a marker file. Every test asserts that the effect is
absent, and a positive control shows that the same file does have the effect when it is
loaded the unsafe way, so the test can fail.
"""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

from rnnedge.cli import main
from rnnedge.errors import InputError
from rnnedge.runtime import Session
from tests.conftest import FEATURES

PACKAGE = Path(__file__).parents[1] / "rnnedge"


def run_cli(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def ort_calls(monkeypatch) -> list[str]:
    """The model paths ONNX Runtime is asked to open, recorded as the calls happen."""
    calls: list[str] = []
    real = ort.InferenceSession

    def recording(model, *args, **kwargs):
        calls.append(str(model) if not isinstance(model, bytes) else "<bytes>")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    return calls


# --- external data ----------------------------------------------------------------------


def save_external(model: onnx.ModelProto, path: Path, location: str = "weights.bin") -> Path:
    """Save `model` with every tensor's data in the file `location` next to it."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location=location, size_threshold=0
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / location).parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, path)
    return path


def set_location(path: Path, location: str, only: str | None = None) -> None:
    """Rewrite the `location` entries of the model at `path` (of tensor `only`, if given)."""
    model = onnx.load(path, load_external_data=False)
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if only is not None and tensor.name != only:
            continue
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


@pytest.fixture
def external_lstm(exported, tmp_path) -> Path:
    """The exported LSTM saved with its weights in `model/weights.bin`."""
    path = save_external(onnx.load(exported["lstm"]), tmp_path / "model" / "model.onnx")
    assert (tmp_path / "model" / "weights.bin").stat().st_size > 0
    return path


def _escape(kind: str, model: Path) -> str:
    """Point the model's data outside its folder, to a real copy of the weights there."""
    folder = model.parent
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy(folder / "weights.bin", outside / "weights.bin")
    if kind == "parent":
        return "../outside/weights.bin"
    if kind == "nested-parent":
        return "sub/../../outside/weights.bin"
    if kind == "backslash-parent":
        return "..\\outside\\weights.bin"
    if kind == "absolute":
        return str(outside / "weights.bin")
    if kind == "link":
        (folder / "linked.bin").symlink_to(outside / "weights.bin")
        return "linked.bin"
    if kind == "linked-folder":
        (folder / "data").symlink_to(outside, target_is_directory=True)
        return "data/weights.bin"
    raise AssertionError(kind)


ESCAPES = ["parent", "nested-parent", "backslash-parent", "absolute", "link", "linked-folder"]


@pytest.mark.parametrize("kind", ESCAPES)
def test_external_data_outside_folder_rejected(external_lstm, ort_calls, kind):
    location = _escape(kind, external_lstm)
    set_location(external_lstm, location)
    with pytest.raises(InputError) as caught:
        Session(external_lstm, provider="cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert repr(location) in message
    assert (
        "outside the model's folder" in message
        or "leaves the model's folder" in message
        or ("absolute path" in message)
    )
    assert ort_calls == []


def test_external_data_cli_exit_2(capsys, external_lstm, ort_calls, rng, tmp_path):
    set_location(external_lstm, _escape("parent", external_lstm))
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 5, FEATURES)).astype(np.float32))
    code, out, err = run_cli(capsys, "run", external_lstm, "-i", tmp_path / "x.npy")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "'../outside/weights.bin'" in err
    assert "Traceback" not in err
    assert ort_calls == []


def test_external_data_quantize_rejected(external_lstm, ort_calls, tmp_path):
    from rnnedge.quantize import quantize_model

    set_location(external_lstm, _escape("link", external_lstm))
    with pytest.raises(InputError, match="a link that resolves to"):
        quantize_model(external_lstm, tmp_path / "q.onnx")
    assert ort_calls == []
    assert not (tmp_path / "q.onnx").exists()


def test_external_data_doctor_reports_error(external_lstm, ort_calls):
    from rnnedge.doctor.model import check_model

    set_location(external_lstm, _escape("absolute", external_lstm))
    findings = check_model(external_lstm)
    assert [f.status.value for f in findings] == ["error"]
    assert "absolute path" in findings[0].message
    assert ort_calls == []


def test_external_data_inside_folder_loads(exported, external_lstm, rng):
    """A model whose data sits next to it, or in a subfolder, runs like the inline one."""
    nested = save_external(
        onnx.load(exported["lstm"]), external_lstm.parent / "nested.onnx", "data/w.bin"
    )
    onnx.checker.check_model(str(external_lstm))
    onnx.checker.check_model(str(nested))
    x = rng.standard_normal((3, 7, FEATURES)).astype(np.float32)
    expected = Session(exported["lstm"], provider="cpu").run(x)["output"]
    for path in (external_lstm, nested):
        got = Session(path, provider="cpu").run(x)["output"]
        np.testing.assert_array_equal(got, expected)  # same weights, same kernels


def test_external_data_missing_file(external_lstm):
    (external_lstm.parent / "weights.bin").unlink()
    with pytest.raises(InputError, match=r"'weights.bin', which is not found in .*copy the data"):
        Session(external_lstm, provider="cpu")


def test_external_data_truncated_file(external_lstm):
    data = external_lstm.parent / "weights.bin"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(InputError, match="but the file has 100 bytes; the data file is truncated"):
        Session(external_lstm, provider="cpu")


def test_external_data_invalid_offset(external_lstm):
    model = onnx.load(external_lstm, load_external_data=False)
    tensor = model.graph.initializer[0]
    offset = next(e for e in tensor.external_data if e.key == "offset")
    offset.value = "-4"
    external_lstm.write_bytes(model.SerializeToString())
    with pytest.raises(InputError, match="external-data offset '-4', not a whole number"):
        Session(external_lstm, provider="cpu")


def test_external_flag_without_location(external_lstm):
    model = onnx.load(external_lstm, load_external_data=False)
    tensor = model.graph.initializer[0]
    del tensor.external_data[:]
    external_lstm.write_bytes(model.SerializeToString())
    with pytest.raises(InputError, match="marked as external data but names no location"):
        Session(external_lstm, provider="cpu")


def _if_model() -> onnx.ModelProto:
    """y = x + W when cond, else x - W, with W an initializer of each branch."""

    def branch(op: str, name: str) -> onnx.GraphProto:
        weights = numpy_helper.from_array(np.arange(3, dtype=np.float32) + 1, f"W_{name}")
        return helper.make_graph(
            [helper.make_node(op, ["x", f"W_{name}"], [f"y_{name}"])],
            name,
            [],
            [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, [1, 3])],
            [weights],
        )

    node = helper.make_node(
        "If", ["cond"], ["y"], then_branch=branch("Add", "then"), else_branch=branch("Sub", "else")
    )
    graph = helper.make_graph(
        [node],
        "if_model",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_external_data_in_subgraph(tmp_path, ort_calls):
    """Tensors inside an If branch are checked as well as the graph's initializers."""
    path = save_external(_if_model(), tmp_path / "model" / "if.onnx")
    onnx.checker.check_model(str(path))
    x = np.zeros((1, 3), np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(
        session.run(None, {"cond": np.array(True), "x": x})[0], [[1, 2, 3]]
    )
    Session(path, provider="cpu")  # the legitimate model passes the check
    (tmp_path / "secret.bin").write_bytes((tmp_path / "model" / "weights.bin").read_bytes())
    set_location(path, "../secret.bin", only="W_else")
    ort_calls.clear()
    with pytest.raises(InputError, match=r"tensor 'W_else' \(initializer of subgraph of node"):
        Session(path, provider="cpu")
    assert ort_calls == []


def test_external_data_in_constant_attribute(tmp_path):
    """A Constant node's tensor attribute may carry external data too."""
    value = numpy_helper.from_array(np.ones(4, np.float32), "c")
    value.data_location = TensorProto.EXTERNAL
    value.ClearField("raw_data")
    for key, text in (("location", "/etc/hostname"), ("offset", "0"), ("length", "16")):
        value.external_data.add(key=key, value=text)
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=value)],
        "constant",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    path = tmp_path / "constant.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(InputError, match=r"attribute of node .* absolute path '/etc/hostname'"):
        Session(path, provider="cpu")


# --- pickles ------------------------------------------------------------------------------


class WritesMarker:
    """Unpickling this object creates a folder: a stand-in for code run by a hostile pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (str(self.path),))


@pytest.fixture
def hostile_checkpoint(exported, tmp_path) -> tuple[Path, Path]:
    """A real rnnedge checkpoint with one extra entry whose unpickling creates a marker."""
    marker = tmp_path / "MARKER"
    payload = torch.load(exported["lstm.pt"], weights_only=True)
    payload["extra"] = WritesMarker(marker)
    path = tmp_path / "hostile.pt"
    torch.save(payload, path)
    assert not marker.exists()
    return path, marker


def test_pickle_code_does_not_run_by_default(capsys, hostile_checkpoint, tmp_path):
    path, marker = hostile_checkpoint
    code, _, err = run_cli(capsys, "export", path, "-o", tmp_path / "out.onnx")
    assert code == 2
    assert err.count("\n") == 1
    assert "needs full unpickling (it imports os.makedirs)" in err
    assert "--trust-pickle" in err
    assert not marker.exists()
    assert not (tmp_path / "out.onnx").exists()


def test_pickle_code_runs_only_when_trusted(hostile_checkpoint, tmp_path):
    """The positive control: the same file does run its code under --trust-pickle."""
    from rnnedge.export.sources import load_source

    path, marker = hostile_checkpoint
    # The payload is a checkpoint, so rnnedge rebuilds it with weights_only=True, which
    # fails on the extra entry. The pickled code has run by then.
    with pytest.raises(InputError):
        load_source(path, trust_pickle=True)
    assert marker.exists()


def test_load_checkpoint_is_weights_only(hostile_checkpoint):
    from rnnedge.export.model import load_checkpoint

    path, marker = hostile_checkpoint
    with pytest.raises(InputError, match="with weights_only=True"):
        load_checkpoint(path)
    assert not marker.exists()


def test_factory_weights_are_weights_only(hostile_checkpoint, tmp_path):
    from rnnedge.export.sources import load_source

    path, marker = hostile_checkpoint
    factory = tmp_path / "factory.py"
    factory.write_text("import torch\n\ndef make():\n    return torch.nn.GRU(6, 4)\n")
    with pytest.raises(InputError, match=r"needs full unpickling \(it imports os.makedirs\)"):
        load_source(f"{factory}:make", weights=path)
    assert not marker.exists()


def test_trust_pickle_help_gives_reason(capsys):
    code, out, _ = run_cli(capsys, "export", "--help")
    assert code == 0
    help_text = " ".join(out.split())
    assert "DANGEROUS: unpickling runs any code the file contains" in help_text


def test_npy_object_array_not_unpickled(capsys, exported, tmp_path):
    marker = tmp_path / "MARKER"
    np.save(tmp_path / "x.npy", np.array([WritesMarker(marker)], dtype=object), allow_pickle=True)
    code, _, err = run_cli(capsys, "run", exported["lstm"], "-i", tmp_path / "x.npy")
    assert code == 2
    assert "pickle" in err
    assert not marker.exists()
    np.load(tmp_path / "x.npy", allow_pickle=True)  # the positive control
    assert marker.exists()


# --- YAML ---------------------------------------------------------------------------------


def _catalog_entry(name: str) -> dict:
    return yaml.safe_load((Path(__file__).parents[1] / "devices" / f"{name}.yaml").read_text())


def test_yaml_python_tag_refused(capsys, tmp_path):
    marker = tmp_path / "MARKER"
    devices = tmp_path / "devices"
    devices.mkdir()
    data = _catalog_entry("x86-64")
    data.pop("description")
    tag = f"!!python/object/apply:os.makedirs ['{marker}']"
    text = f"description: {tag}\n" + yaml.safe_dump(data, sort_keys=False)
    (devices / "x86-64.yaml").write_text(text)
    code, _, err = run_cli(capsys, "devices", "show", "x86-64", "--devices-dir", devices)
    assert code == 2
    assert err.count("\n") == 1
    assert "python/object/apply:os.makedirs" in err
    assert "at line 1 is not allowed" in err
    assert "safe loader" in err
    assert not marker.exists()
    yaml.unsafe_load(text)  # the positive control
    assert marker.exists()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        pytest.param(None, "colour", id="top-level"),
        pytest.param("providers", "fallback", id="providers"),
        pytest.param("quantization", "bits", id="quantization"),
        pytest.param("remote", "proxy_command", id="remote"),
    ],
)
def test_unknown_profile_key_reported(capsys, tmp_path, section, key):
    data = _catalog_entry("raspberry-pi-4")
    if section is None:
        data[key] = "x"
    else:
        if section == "remote":
            data[section] = {"ssh": "pi@board"}
        data[section][key] = "x"
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "raspberry-pi-4.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    code, _, err = run_cli(capsys, "devices", "show", "raspberry-pi-4", "--devices-dir", devices)
    assert code == 2
    dotted = key if section is None else f"{section}.{key}"
    assert f"unknown field '{dotted}'" in err
    assert "allowed" in err


# --- remote commands ----------------------------------------------------------------------


HOSTILE_WORDS = [
    "model;touch INJECTED",
    "$(touch INJECTED)",
    "`touch INJECTED`",
    "a b\tc",
    "it's",
    "line\nbreak",
    "--option",
]


def test_ssh_remote_line_quotes_every_word(tmp_path):
    """The line that the board's shell runs gives back exactly the words, and runs nothing."""
    from rnnedge.profiling.remote import RemoteTarget, ssh_command

    argv = ssh_command(RemoteTarget("pi@board"), ["printf", "%s\\n", *HOSTILE_WORDS])
    assert argv[: argv.index("--") + 1] == ["ssh", "-o", "BatchMode=yes", "--"]
    assert argv[argv.index("--") + 1] == "pi@board"
    assert len(argv) == argv.index("--") + 3
    line = argv[-1]
    assert shlex.split(line) == ["printf", "%s\\n", *HOSTILE_WORDS]
    # Run the line as the board's login shell would, in an empty folder.
    done = subprocess.run(["sh", "-c", line], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout == "".join(f"{word}\n" for word in HOSTILE_WORDS)
    assert list(tmp_path.iterdir()) == []


def test_scp_local_path_is_one_argument(tmp_path):
    from rnnedge.profiling.remote import RemoteTarget, scp_command

    local = tmp_path / "m;touch INJECTED;$(reboot).onnx"
    argv = scp_command(
        RemoteTarget("board", port=2222), local, "/tmp/rnnedge-profile.ab/model.onnx"
    )
    assert argv[0] == "scp"
    assert argv[argv.index("--") + 1] == str(local.resolve())
    assert argv[-1] == "board:/tmp/rnnedge-profile.ab/model.onnx"
    assert argv[argv.index("-P") + 1] == "2222"


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("-oProxyCommand=touch INJECTED", id="option"),
        pytest.param("board;touch INJECTED", id="semicolon"),
        pytest.param("$(touch INJECTED)", id="substitution"),
        pytest.param("pi@board\n-oProxyCommand=x", id="newline"),
        pytest.param("", id="empty"),
        pytest.param("pi@board\n", id="trailing-newline"),
    ],
)
def test_hostile_remote_address_rejected(address):
    from rnnedge.profiling.remote import RemoteTarget

    with pytest.raises(InputError, match="invalid remote address"):
        RemoteTarget(address)


def _attribute_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
            yield f"{function.value.id}.{function.attr}", node


def test_package_never_uses_a_shell():
    """No subprocess call in rnnedge passes shell=True or a command string."""
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for name, call in _attribute_calls(tree):
            assert name not in ("os.system", "os.popen"), f"{path}:{call.lineno} runs a shell"
            if not name.startswith("subprocess."):
                continue
            checked += 1
            shell = [k for k in call.keywords if k.arg == "shell"]
            assert not shell or (
                isinstance(shell[0].value, ast.Constant) and shell[0].value.value is False
            ), f"{path}:{call.lineno} passes shell="
            if call.args:
                command = call.args[0]
                is_text = isinstance(command, (ast.Constant, ast.JoinedStr, ast.BinOp))
                assert not is_text, f"{path}:{call.lineno} passes a command string"
    assert checked >= 2  # remote.py and host.py run subprocesses


def test_no_unsafe_yaml_or_pickle_loading():
    """rnnedge reads YAML with a safe loader only and numpy files with allow_pickle=False."""
    import yaml

    from rnnedge.profiling import catalog

    # The one yaml.load call passes a safe loader: libyaml's or the pure-Python one.
    assert catalog._SAFE_LOADER in (getattr(yaml, "CSafeLoader", None), yaml.SafeLoader)
    torch_loads = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for unsafe in ("yaml.unsafe_load", "yaml.full_load", "allow_pickle=True"):
            assert unsafe not in text, f"{path} uses {unsafe}"
        tree = ast.parse(text, str(path))
        for name, call in _attribute_calls(tree):
            if name == "yaml.load":
                loader = [k for k in call.keywords if k.arg == "Loader"]
                assert loader, f"{path}:{call.lineno} calls yaml.load without a Loader"
                assert ast.unparse(loader[0].value) == "_SAFE_LOADER", f"{path}:{call.lineno}"
            if name != "torch.load":
                continue
            torch_loads += 1
            weights_only = [k for k in call.keywords if k.arg == "weights_only"]
            assert weights_only, f"{path}:{call.lineno} calls torch.load without weights_only"
    # rnnedge.export.torchfile loads checkpoints and factory weights, and sources.py the
    # trusted path.
    assert torch_loads >= 2
