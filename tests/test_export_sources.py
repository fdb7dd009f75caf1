"""Sources other than rnnedge checkpoints, through the CLI, and bad input."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

from rnnedge.cli import main
from rnnedge.errors import CheckFailedError, ExportError, InputError
from rnnedge.export import export_model

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
