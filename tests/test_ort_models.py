"""Models in the ONNX Runtime format (.ort) through profile and doctor, which read .onnx too."""

from __future__ import annotations

import json

import pytest

from rnnedge.cli import main
from rnnedge.doctor.findings import Status
from rnnedge.doctor.model import check_model
from rnnedge.runtime.ort_format import convert_to_ort


@pytest.fixture(scope="module")
def ort_model(exported, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ort")
    return convert_to_ort(exported["gru"], folder / "gru.ort").model


def test_profile_measures_ort_model(capsys, ort_model, tmp_path):
    code = main(["profile", str(ort_model), "--device", "x86-64", "--runs", "5",
                 "--warmup", "1", "--seq-len", "8", "--provider", "cpu", "--json",
                 "--devices-dir", str(tmp_path / "devices")])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["model"] == "gru.ort"
    assert document["seq_len"] == 8
    assert document["latency_ms"]["p50_ms"] > 0


def test_doctor_loads_ort_model(ort_model):
    findings = {finding.check: finding for finding in check_model(ort_model)}
    assert findings["file"].status is Status.OK
    assert "ONNX Runtime format" in findings["file"].message
    assert findings["load"].status is Status.OK
    assert "opset.ai.onnx" not in findings
