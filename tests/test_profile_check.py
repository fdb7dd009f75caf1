"""`rnnedge profile --check`: a regression counts only when a second measurement confirms it."""

from __future__ import annotations

import json

import pytest
import yaml

from rnnedge.cli import main
from rnnedge.profiling.catalog import catalog_dir
from rnnedge.profiling.check import (
    MAX_REPEAT_DELAY_S,
    MIN_REPEAT_DELAY_S,
    check_points,
    confirm_regression,
    repeat_delay_s,
)
from rnnedge.profiling.compare import CheckResult
from rnnedge.profiling.sweeps import SweepPoint

QUICK = ["--seq-len", "10", "--runs", "30", "--warmup", "2", "--provider", "cpu",
         "--threads", "1", "--operators", "0"]  # fmt: skip


def _outcome(new_p50: float, threshold: float = 0.10) -> CheckResult:
    change = new_p50 / 1.0 - 1
    return CheckResult(change > threshold, 1.0, new_p50, change, threshold, 1, (new_p50,))


def test_confirmed_when_both_regress():
    chosen, outcome = confirm_regression(_outcome(1.8), _outcome(1.5))
    assert outcome.regressed
    assert chosen == 1  # the smaller slowdown is reported
    assert outcome.new_p50_ms == 1.5
    assert outcome.measured_p50s_ms == (1.8, 1.5)


def test_confirmed_reports_smaller_slowdown():
    chosen, outcome = confirm_regression(_outcome(1.4), _outcome(1.9))
    assert outcome.regressed
    assert chosen == 0
    assert outcome.new_p50_ms == 1.4
    assert outcome.measured_p50s_ms == (1.4, 1.9)


def test_unconfirmed_uses_passing_repeat():
    chosen, outcome = confirm_regression(_outcome(1.82), _outcome(1.003))
    assert not outcome.regressed
    assert chosen == 1
    assert outcome.new_p50_ms == 1.003
    assert outcome.measured_p50s_ms == (1.82, 1.003)


def test_margin_decides_better_measurement():
    # The repeat is slower but within its wider threshold, so it is the better one.
    first = _outcome(1.2, threshold=0.10)
    repeat = _outcome(1.25, threshold=0.30)
    chosen, outcome = confirm_regression(first, repeat)
    assert not outcome.regressed
    assert chosen == 1
    assert outcome.threshold == 0.30


@pytest.fixture
def baseline(exported, tmp_path):
    """A devices folder with one stored measurement of the LSTM on this host."""
    devices = tmp_path / "devices"
    code = main(["profile", str(exported["lstm"]), "--devices-dir", str(devices), *QUICK])
    assert code == 0
    (path,) = devices.glob("*.yaml")
    return path


def _scale_stored_p50(path, factor: float) -> dict:
    profile = yaml.safe_load(path.read_text())
    for entry in profile["measurements"]:
        for key in ("p50_ms", "p50_ci_low_ms", "p50_ci_high_ms"):
            entry["latency_ms"][key] *= factor
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile


def _check(capsys, exported, path, *extra) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["profile", str(exported["lstm"]), "--check", "--devices-dir",
                 str(path.parent), *QUICK, *extra])  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_confirms_real_regression(capsys, exported, baseline):
    stored = _scale_stored_p50(baseline, 1 / 20)  # the stored run was 20 times faster
    code, out, err = _check(capsys, exported, baseline)
    lines = out.splitlines()
    assert code == 3
    assert lines[0].startswith("REGRESSED:")
    assert lines[1].startswith("  confirmed by a second measurement: p50 ")
    assert "latency regressed in 1 of 1" in err
    assert yaml.safe_load(baseline.read_text()) == stored  # --check stores nothing


def test_check_json_lists_both_p50s(capsys, exported, baseline):
    _scale_stored_p50(baseline, 1 / 20)
    code, out, _ = _check(capsys, exported, baseline, "--json")
    (document,) = json.loads(out)
    check = document["check"]
    assert code == 3
    assert check["regressed"] is True
    assert len(check["measured_p50s_ms"]) == 2
    assert check["new_p50_ms"] == min(check["measured_p50s_ms"])


def test_check_faster_than_stored_passes(capsys, exported, baseline):
    _scale_stored_p50(baseline, 20)  # the stored run was 20 times slower
    code, out, err = _check(capsys, exported, baseline, "--json")
    (document,) = json.loads(out)
    check = document["check"]
    assert code == 0, err
    assert check["regressed"] is False
    assert len(check["measured_p50s_ms"]) == 1  # no second measurement was needed
    assert check["change"] < 0


def test_check_without_profile_names_user_folder(capsys, exported, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["profile", str(exported["lstm"]), "--check", *QUICK])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: no profile of ")
    assert " in ./devices yet, so no baseline of lstm.onnx with precision fp32" in err
    assert str(catalog_dir()) not in err
    assert not (tmp_path / "devices").exists()


def test_check_missing_baseline_names_user_file(capsys, exported, baseline):
    code, out, err = _check(capsys, exported, baseline, "--seq-len", "11")
    assert code == 2
    assert err.startswith(f"error: {baseline} has no measurement of lstm.onnx with ")
    assert out == ""


def test_check_sweep_checks_baselines_first(capsys, exported, baseline):
    """A sweep whose last point has no baseline fails before measuring any point."""
    capsys.readouterr()
    code = main(["profile", str(exported["lstm"]), "--check", "--devices-dir",
                 str(baseline.parent), *QUICK[2:], "--sweep", "seq-len=10,11"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2
    assert "seq_len 11" in captured.err
    assert "1/2" not in captured.err  # no progress line: nothing was measured
    assert captured.out == ""


def test_check_waits_before_repeat(exported, baseline):
    _scale_stored_p50(baseline, 1 / 20)
    pauses = []
    point = SweepPoint(exported["lstm"], batch=1, seq_len=10, threads=1)
    ((_, outcome),) = check_points(
        [point], "x86-64", user_dir=baseline.parent, sleep=pauses.append, provider="cpu",
        runs=30, warmup=2, operators=0,
    )  # fmt: skip
    assert outcome.regressed
    assert len(outcome.measured_p50s_ms) == 2
    assert len(pauses) == 1
    assert MIN_REPEAT_DELAY_S <= pauses[0] <= MAX_REPEAT_DELAY_S


@pytest.mark.parametrize(("first_s", "delay_s"), [(0.05, 1.0), (3.5, 3.5), (42.0, 10.0)])
def test_repeat_delay_bounds(first_s, delay_s):
    assert repeat_delay_s(first_s) == delay_s
