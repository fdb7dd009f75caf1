"""Files that torch.load(weights_only=True) rejects, each reported in rnnedge's words.

Every file is made here with torch.save, torch.jit.save, zipfile or plain bytes, then cut
or left whole. The reason must name what is wrong without torch's own message.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnedge.export.torchfile import LoadProblem, TorchFileError, load_weights_only

TORCH_PROSE = ("PyTorch 2.6", "weights_only", "miniz", "Errno", "WeightsUnpickler", "\x1b[")


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 2, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


def _saved(**options) -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": torch.ones(64, 64)}, buffer, **options)
    return buffer.getvalue()


def _module_saved(**options) -> bytes:
    buffer = io.BytesIO()
    torch.save(Tiny(), buffer, **options)
    return buffer.getvalue()


def _scripted() -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(Tiny()), buffer)
    return buffer.getvalue()


def _foreign_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    return buffer.getvalue()


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


CASES = [
    pytest.param(lambda: b"", LoadProblem.EMPTY, "is empty", id="empty"),
    pytest.param(lambda: _cut(_saved(), 0.1), LoadProblem.TRUNCATED, "is truncated", id="zip-10%"),
    pytest.param(lambda: _cut(_saved(), 0.5), LoadProblem.TRUNCATED, "is truncated", id="zip-50%"),
    pytest.param(lambda: _cut(_saved(), 0.99), LoadProblem.TRUNCATED, "is truncated",
                 id="zip-99%"),
    pytest.param(lambda: _cut(_saved(_use_new_zipfile_serialization=False), 0.5),
                 LoadProblem.TRUNCATED, "is truncated", id="legacy-50%"),
    pytest.param(lambda: _saved(_use_new_zipfile_serialization=False)[:40],
                 LoadProblem.TRUNCATED, "is truncated", id="legacy-in-pickle"),
    pytest.param(_module_saved, LoadProblem.NEEDS_UNPICKLING, "needs full unpickling (it imports",
                 id="pickled-module"),
    pytest.param(lambda: _module_saved(_use_new_zipfile_serialization=False),
                 LoadProblem.NEEDS_UNPICKLING, "needs full unpickling (it imports",
                 id="legacy-pickled-module"),
    pytest.param(_scripted, LoadProblem.NOT_TORCH, "is a TorchScript archive", id="torchscript"),
    pytest.param(_foreign_zip, LoadProblem.DAMAGED, "is a zip archive that torch.load cannot read",
                 id="foreign-zip"),
    pytest.param(lambda: b"\x08\x08\x12\x07rnnedge" * 8, LoadProblem.NOT_TORCH,
                 "was not written by torch.save", id="onnx-bytes"),
    pytest.param(lambda: pickle.dumps({"a": 1}, protocol=4), LoadProblem.NOT_TORCH,
                 "was not written by torch.save", id="plain-pickle"),
    pytest.param(lambda: b"hello world\n" * 10, LoadProblem.NOT_TORCH,
                 "was not written by torch.save", id="text"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "problem", "reason"), CASES)
def test_load_failure_reason(tmp_path, make, problem, reason):
    path = tmp_path / "file.pt"
    path.write_bytes(make())
    with pytest.raises(TorchFileError) as error:
        load_weights_only(path)
    assert error.value.problem is problem
    assert error.value.reason.startswith(reason)
    message = str(error.value)
    assert message.startswith(f"cannot load {str(path)!r}: the file {reason}")
    assert "\n" not in message
    for prose in TORCH_PROSE:
        assert prose not in message


def test_pickled_module_names_its_class(tmp_path):
    path = Path(tmp_path / "whole.pt")
    path.write_bytes(_module_saved())
    with pytest.raises(TorchFileError) as error:
        load_weights_only(path)
    assert error.value.imports is not None
    assert error.value.imports.endswith(".Tiny")


def test_complete_file_loads(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(_saved())
    state = load_weights_only(path)
    assert torch.equal(state["weight"], torch.ones(64, 64))
