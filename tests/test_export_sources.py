"""Sources other than rnnedge checkpoints, through the CLI, and bad input."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from rnnedge.cli import main
from rnnedge.errors import CheckFailedError, ExportError, InputError, MissingDependencyError
from rnnedge.export import export_model
from tests.conftest import make_checkpoint

FACTORY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(6, 12, num_layers=2, batch_first=True)
            self.head = nn.Linear(12, 5)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    def build():
        return Tagger()
    """
)


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(6, 12, batch_first=True)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def build_tagger() -> nn.Module:
    torch.manual_seed(0)
    return Tagger()


class CallsNumpy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(6, 8, batch_first=True)
        self.head = Head()

    def forward(self, x):
        return self.head(self.rnn(x)[0])


class Head(nn.Module):
    def forward(self, x):
        scale = float(x.abs().max().detach().numpy())
        return x / scale


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_factory_file_with_weights(capsys, tmp_path):
    (tmp_path / "tagger.py").write_text(FACTORY)
    namespace: dict = {}
    exec(FACTORY, namespace)
    torch.manual_seed(1)
    torch.save(namespace["build"]().state_dict(), tmp_path / "weights.pt")
    code, out, err = run_cli(
        capsys, "export", f"{tmp_path / 'tagger.py'}:build", "--weights", tmp_path / "weights.pt",
        "--example-shape", "1x100x6", "-o", tmp_path / "t.onnx", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["exporter"] == "torchscript"
    assert all(case["max_abs_error"] <= 1e-5 for case in report["parity"])
    assert {case["seq_len"] for case in report["parity"]}.isdisjoint({100})
    assert report["inputs"][0]["shape"] == ["batch", "sequence", 6]
    assert report["metadata"]["rnnedge.layout"] == "batch-major"


def test_module_factory_text_report(capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "export", "tests.test_export_sources:build_tagger", "--example-shape", "2x20x6",
        "-o", tmp_path / "t.onnx",
    )  # fmt: skip
    assert code == 0, err
    assert "exporter: torchscript (trace), opset 17" in out
    assert "operators:" in out
    assert "LSTM x1" in out


def test_torchscript_archive(tmp_path):
    torch.jit.script(build_tagger()).save(str(tmp_path / "ts.pt"))
    report = export_model(tmp_path / "ts.pt", tmp_path / "ts.onnx", example_shape="1x10x6")
    assert report.capture == "script"
    assert report.parity.max_abs_error <= 1e-5


def test_torchscript_archive_needs_example_shape(tmp_path):
    torch.jit.script(build_tagger()).save(str(tmp_path / "ts.pt"))
    with pytest.raises(InputError, match="--example-shape BxTxF"):
        export_model(tmp_path / "ts.pt", tmp_path / "ts.onnx")


def test_exported_program_file(tmp_path):
    model = build_tagger().eval()
    batch = torch.export.Dim.DYNAMIC
    program = torch.export.export(model, (torch.randn(2, 10, 6),), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp_path / "m.pt2")
    report = export_model(tmp_path / "m.pt2", tmp_path / "m.onnx")
    assert report.exporter == "dynamo"
    assert report.parity.max_abs_error <= 1e-5
    # torch.export fixes the length of nn.LSTM at the example's; the batch stays dynamic.
    assert {c.seq_len for c in report.parity.cases} == {10}
    assert len({c.batch for c in report.parity.cases}) == 3


def test_pickled_module_needs_trust(capsys, tmp_path):
    torch.save(build_tagger(), tmp_path / "whole.pt")
    output = tmp_path / "w.onnx"
    code, _, err = run_cli(
        capsys, "export", tmp_path / "whole.pt", "--example-shape", "1x10x6", "-o", output
    )
    assert code == 2
    assert "--trust-pickle" in err
    assert not output.exists()
    code, _, err = run_cli(
        capsys, "export", tmp_path / "whole.pt", "--example-shape", "1x10x6", "-o", output,
        "--trust-pickle",
    )  # fmt: skip
    assert code == 0, err
    assert output.exists()


def test_pickled_module_as_weights(capsys, tmp_path):
    torch.manual_seed(7)
    pickled = Tagger().eval()
    torch.save(pickled, tmp_path / "whole.pt")
    output = tmp_path / "w.onnx"
    args = [
        "export", "tests.test_export_sources:build_tagger", "--weights", tmp_path / "whole.pt",
        "--example-shape", "1x10x6", "-o", output,
    ]  # fmt: skip
    code, _, err = run_cli(capsys, *args)
    assert code == 2, err
    assert "needs full unpickling" in err
    assert "--trust-pickle" in err
    assert "torch.save(model.state_dict(), path)" in err
    assert not output.exists()
    code, _, err = run_cli(capsys, *args, "--trust-pickle")
    assert code == 0, err
    # The graph computes the pickled module, not the factory's own seed-0 weights.
    x = np.random.default_rng(0).standard_normal((2, 7, 6)).astype(np.float32)
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = pickled(torch.from_numpy(x)).numpy()
        factory_output = build_tagger().eval()(torch.from_numpy(x)).numpy()
    actual = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    assert np.abs(actual - factory_output).max() > 1e-2


def test_checkpoint_rejects_time_major(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "m.pt")
    expected = (
        r"--time-major contradicts rnnedge checkpoint m.pt, which records the input layout "
        r"\(batch, time, features\); drop --time-major"
    )
    with pytest.raises(InputError, match=expected):
        export_model(checkpoint, tmp_path / "m.onnx", batch_first=False)
    assert not (tmp_path / "m.onnx").exists()


def test_trust_pickle_help_warns(capsys):
    code, out, _ = run_cli(capsys, "export", "--help")
    assert code == 0
    assert "DANGEROUS" in out


@pytest.mark.parametrize("shape", ["1x10", "0x10x6", "axbxc"])
def test_bad_example_shape(tmp_path, shape):
    with pytest.raises(InputError, match="example shape"):
        export_model(build_tagger(), tmp_path / "o.onnx", example_shape=shape)


def test_missing_factory_name(tmp_path):
    (tmp_path / "m.py").write_text(FACTORY)
    with pytest.raises(InputError, match="has no callable 'nothing'"):
        export_model(f"{tmp_path / 'm.py'}:nothing", tmp_path / "o.onnx")


def test_numpy_call_names_layer(tmp_path):
    with pytest.raises((CheckFailedError, ExportError)) as error:
        export_model(CallsNumpy(), tmp_path / "o.onnx", example_shape="1x10x6", opset=17)
    message = str(error.value)
    assert "layer 'head'" in message
    assert ".numpy()" in message
    assert not (tmp_path / "o.onnx").exists()


def test_dynamo_below_opset_18_rejected(tmp_path):
    with pytest.raises(InputError, match="opset 17 is below 18"):
        export_model(build_tagger(), tmp_path / "o.onnx", example_shape="1x10x6",
                     exporter="dynamo", opset=17)  # fmt: skip


BRANCHES_ON_MEAN = textwrap.dedent(
    """
    import torch
    from torch import nn

    class BranchOnMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(6, 8, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            if x.mean().item() > 0.5:
                x = x * 2
            return self.head(self.rnn(x)[0][:, -1])

    def build():
        torch.manual_seed(0)
        return BranchOnMean()
    """
)


def _import_file(path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_branch_on_input_not_traced(tmp_path):
    # Standard-normal inputs never reach a mean above 0.5, so a trace that froze the
    # branch would match PyTorch on them. The tracer warning must reject the trace.
    (tmp_path / "branchy.py").write_text(BRANCHES_ON_MEAN)
    report = export_model(
        f"{tmp_path / 'branchy.py'}:build", tmp_path / "b.onnx", example_shape="1x10x6"
    )
    assert report.capture == "script"
    trace = report.attempts[0]
    assert (trace.exporter, trace.capture) == ("torchscript", "trace")
    branch_line = BRANCHES_ON_MEAN.splitlines().index("        if x.mean().item() > 0.5:") + 1
    assert f"branchy.py:{branch_line}" in trace.error
    assert ".item()" in trace.error
    model = _import_file(tmp_path / "branchy.py", "branchy_reference").build().eval()
    session = ort.InferenceSession(str(tmp_path / "b.onnx"), providers=["CPUExecutionProvider"])
    shifted = np.random.default_rng(5).normal(2.0, 1.0, (2, 15, 6)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(shifted)).numpy()
    np.testing.assert_allclose(session.run(None, {"input": shifted})[0], expected, atol=1e-5)


def test_failed_dynamo_attempt_is_one_line(capfd, caplog, tmp_path):
    """torch.export's partial FX graph goes to the debug log, and its error to one line."""
    (tmp_path / "branchy.py").write_text(BRANCHES_ON_MEAN)
    caplog.set_level(logging.DEBUG, logger="rnnedge")
    report = export_model(
        f"{tmp_path / 'branchy.py'}:build", tmp_path / "b.onnx", example_shape="2x10x6",
        exporter="dynamo",
    )  # fmt: skip
    captured = capfd.readouterr()
    assert "def forward(self" not in captured.err
    assert "def forward(self" not in captured.out
    dynamo = report.attempts[0]
    assert dynamo.exporter == "dynamo"
    assert "\x1b[" not in dynamo.error
    assert "\n" not in dynamo.error
    assert "Next steps" not in dynamo.error
    assert "Failed to export the model with torch.export: " in dynamo.error
    assert "data-dependent expression" in dynamo.error
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("def forward(self" in message for message in debug)


class BranchOnBatch(nn.Module):
    """Branches on the batch size, which torch.export then fixes at the example's."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(6, 8, batch_first=True)

    def forward(self, x):
        out = self.rnn(x)[0]
        if x.size(0) == 2:
            out = out * 1.0
        return out


def test_dynamo_shape_conflict_keeps_detail(tmp_path):
    # torch.export ends its first sentence with a colon and names the axis on the next line.
    torch.manual_seed(0)
    report = export_model(
        BranchOnBatch(), tmp_path / "b.onnx", example_shape="2x10x6", exporter="dynamo"
    )
    dynamo = report.attempts[0]
    assert dynamo.exporter == "dynamo"
    assert "Found the following conflicts" in dynamo.error
    assert not dynamo.error.endswith(":")
    assert "static shape of 2" in dynamo.error
    assert "\n" not in dynamo.error


PROJECTED_FACTORY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Projected(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(6, 16, proj_size=4, num_layers=2, bidirectional=True,
                               batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    def build():
        torch.manual_seed(0)
        return Projected()
    """
)


def test_projected_lstm_warning_goes_to_debug(tmp_path):
    # torch warns once per process, so the export runs in a fresh one.
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN, so it does not raise the warning")
    (tmp_path / "projected.py").write_text(PROJECTED_FACTORY)
    command = [
        sys.executable, "-m", "rnnedge", "-vv", "export", f"{tmp_path / 'projected.py'}:build",
        "--example-shape", "1x10x6", "-o", str(tmp_path / "p.onnx"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    notice = [line for line in result.stderr.splitlines() if "not supported with oneDNN" in line]
    assert notice, result.stderr
    assert all(line.startswith("DEBUG: ") for line in notice), notice


def test_factory_metadata_records_architecture(capsys, tmp_path):
    (tmp_path / "projected.py").write_text(PROJECTED_FACTORY)
    code, out, err = run_cli(
        capsys, "export", f"{tmp_path / 'projected.py'}:build", "--example-shape", "1x10x6",
        "-o", tmp_path / "p.onnx", "--json",
    )  # fmt: skip
    assert code == 0, err
    metadata = json.loads(out)["metadata"]
    assert metadata["rnnedge.hidden_size"] == "16"
    assert metadata["rnnedge.num_layers"] == "2"
    assert metadata["rnnedge.bidirectional"] == "true"
    assert metadata["rnnedge.proj_size"] == "4"
    from rnnedge.profiling.profile import model_architecture
    from rnnedge.runtime import Session

    architecture = model_architecture(Session(tmp_path / "p.onnx", provider="cpu", threads=1))
    assert architecture == {
        "cell": "lstm", "features": 6, "hidden_size": 16, "num_layers": 2, "bidirectional": True,
    }  # fmt: skip


def test_factory_metadata_single_module_only(capsys, tmp_path):
    (tmp_path / "tagger.py").write_text(FACTORY)
    code, out, err = run_cli(
        capsys, "export", f"{tmp_path / 'tagger.py'}:build", "--example-shape", "1x10x6",
        "-o", tmp_path / "t.onnx", "--json",
    )  # fmt: skip
    assert code == 0, err
    metadata = json.loads(out)["metadata"]
    assert metadata["rnnedge.hidden_size"] == "12"
    assert metadata["rnnedge.num_layers"] == "2"
    assert metadata["rnnedge.bidirectional"] == "false"
    assert "rnnedge.proj_size" not in metadata
    from tests.test_export_variants import Stacked

    report = export_model(Stacked(), tmp_path / "s.onnx", example_shape="1x10x6")
    assert "hidden_size" not in report.metadata.extra
    assert "num_layers" not in report.metadata.extra


def test_parity_feeds_shifted_inputs(tmp_path):
    """A traced graph with a frozen branch passes standard-normal inputs, not shifted ones."""
    from rnnedge.export.exporters import FlatOutputs
    from rnnedge.export.inputs import InputRole, InputSpec
    from rnnedge.export.parity import check_graph_parity

    (tmp_path / "branchy.py").write_text(BRANCHES_ON_MEAN)
    model = _import_file(tmp_path / "branchy.py", "branchy_traced").build().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 10, 6),), buffer, dynamo=False, input_names=["input"],
            dynamic_axes={"input": {0: "batch", 1: "sequence"}},
        )  # fmt: skip
    spec = InputSpec("input", InputRole.SEQUENCE, ("batch", "sequence", 6))
    parity = check_graph_parity(
        FlatOutputs(model), buffer.getvalue(), [spec], [(3, 37), (5, 123)], [{0: "batch"}]
    )
    centred = [c for c in parity.cases if c.input_mean == 0.0]
    shifted = [c for c in parity.cases if c.input_mean > 0.5]
    assert all(c.max_abs_error <= 1e-5 for c in centred)
    assert shifted
    assert not parity.passed
    assert parity.worst.input_mean > 0.5


@pytest.mark.parametrize(
    ("text", "spec", "fragment"),
    [
        pytest.param("x = 1 / 0\n", "broken.py:build", "importing", id="raises-on-import"),
        pytest.param(
            "import sys\nsys.exit(3)\n", "broken.py:build", "sys.exit(3)", id="exits-on-import"
        ),
        pytest.param(
            "def build():\n    return 1 / 0\n", "broken.py:build", "calling factory",
            id="factory-raises",
        ),
    ],
)  # fmt: skip
def test_model_file_error_is_input_error(capsys, tmp_path, monkeypatch, text, spec, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text(text)
    code, _, err = run_cli(capsys, "export", spec, "--example-shape", "1x10x6")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "broken.py" in lines[0]
    assert "fix the model file" in lines[0]
    assert "internal error" not in err
    assert not (tmp_path / "broken.onnx").exists()


def test_factory_with_arguments_rejected(tmp_path):
    (tmp_path / "m.py").write_text("def build(hidden):\n    raise AssertionError\n")
    with pytest.raises(InputError, match="must be callable without arguments"):
        export_model(f"{tmp_path / 'm.py'}:build", tmp_path / "o.onnx", example_shape="1x10x6")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        pytest.param("m.onnx", b"\x08\x07onnx", "already an ONNX model", id="onnx"),
        pytest.param("x.npy", None, "NumPy data file", id="npy"),
        pytest.param("mymodel.py", b"import torch\n", "did you mean", id="py-without-factory"),
        pytest.param("junk.pt", b"\x08garbage" * 20, "was not written by torch.save", id="junk"),
    ],
)
def test_non_model_source_named(capsys, tmp_path, name, content, fragment):
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros((2, 10, 6), np.float32))
    else:
        path.write_bytes(content)
    code, _, err = run_cli(capsys, "export", path, "-o", tmp_path / "o.onnx")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert fragment in lines[0]
    assert "Re-running" not in err
    assert "TorchScript archive" in lines[0] or "FACTORY" in lines[0]
    if name.endswith(".py"):
        assert f"{path}:FACTORY" in lines[0]


def test_output_must_end_in_onnx(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "export", "tests.test_export_sources:build_tagger", "--example-shape", "1x10x6",
        "-o", tmp_path / "m.txt",
    )  # fmt: skip
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: output {str(tmp_path / 'm.txt')!r} does not end in .onnx; pass -o NAME.onnx"
    ]
    assert not (tmp_path / "m.txt").exists()


PICKLED_CLASS = textwrap.dedent(
    """
    from torch import nn

    class Pickled(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(6, 4, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]
    """
)


def test_trust_pickle_missing_module_hint(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "mymodel.py").write_text(PICKLED_CLASS)
    monkeypatch.syspath_prepend(str(folder))
    import mymodel

    torch.save(mymodel.Pickled(), folder / "whole.pt")
    monkeypatch.delitem(sys.modules, "mymodel")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in (str(folder), "")])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as error:
        export_model(folder / "whole.pt", tmp_path / "o.onnx", example_shape="1x10x6",
                     trust_pickle=True)  # fmt: skip
    message = str(error.value)
    assert "no module named 'mymodel'" in message
    assert "folder that contains mymodel.py" in message
    assert "PYTHONPATH" in message
    # From the folder that contains the module, the same command works.
    monkeypatch.chdir(folder)
    report = export_model(folder / "whole.pt", tmp_path / "o.onnx", example_shape="1x10x6",
                          trust_pickle=True)  # fmt: skip
    assert report.parity.passed
    monkeypatch.delitem(sys.modules, "mymodel", raising=False)


def _hide_onnxscript(monkeypatch) -> None:
    # None in sys.modules makes `import onnxscript` raise ImportError, as in an
    # environment where the package is not installed.
    monkeypatch.setitem(sys.modules, "onnxscript", None)


def test_exported_program_without_onnxscript(capsys, tmp_path, monkeypatch):
    model = build_tagger().eval()
    program = torch.export.export(model, (torch.randn(2, 10, 6),))
    torch.export.save(program, tmp_path / "m.pt2")
    _hide_onnxscript(monkeypatch)
    code, _, err = run_cli(capsys, "export", tmp_path / "m.pt2", "-o", tmp_path / "m.onnx")
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "onnxscript" in errors[0]
    assert "pip install 'rnnedge[export]'" in errors[0]
    assert "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_dynamo_requested_without_onnxscript(tmp_path, monkeypatch):
    _hide_onnxscript(monkeypatch)
    with pytest.raises(MissingDependencyError, match=r"pip install 'rnnedge\[export\]'"):
        export_model(build_tagger(), tmp_path / "o.onnx", example_shape="1x10x6",
                     exporter="dynamo")  # fmt: skip


def test_export_extra_installs_onnxscript():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    export_extra = project["project"]["optional-dependencies"]["export"]
    assert any(requirement.startswith("onnxscript") for requirement in export_extra)
