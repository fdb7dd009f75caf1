"""Input files and messages: CSV files, sweeps, the load warning, --check --json, read-only
folders, damaged .ort files and device profiles without schema_version."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import rnnedge
import rnnedge.host
from rnnedge.cli import main
from rnnedge.errors import DeviceProfileError, InputError
from rnnedge.profiling.catalog import read_profile, validate
from rnnedge.profiling.sweeps import parse_sweep
from rnnedge.runtime.inputs import load_array_file
from rnnedge.runtime.ort_format import convert_to_ort

QUICK = ["--seq-len", "10", "--runs", "30", "--warmup", "2", "--provider", "cpu",
         "--threads", "1", "--operators", "0"]  # fmt: skip
LOAD_WARNING = "inflate the tail latency (p99, max); rerun on an idle host"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- CSV input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("\ufeff1,2,3\n4,5,6\n", [[1, 2, 3], [4, 5, 6]], id="bom"),
        pytest.param("\ufeffax,ay,az\n1,2,3\n", [[1, 2, 3]], id="bom-header"),
        pytest.param("1,2,3,\n4,5,6,\n", [[1, 2, 3], [4, 5, 6]], id="trailing-comma"),
        pytest.param("1,2,3,\n", [[1, 2, 3]], id="trailing-comma-one-row"),
        pytest.param("ax,ay,az,\n1,2,3,\n", [[1, 2, 3]], id="trailing-comma-header"),
        pytest.param("1;2;3;\n4;5;6;\n", [[1, 2, 3], [4, 5, 6]], id="trailing-semicolon"),
        pytest.param("1\t2\t3\t\n4\t5\t6\t\n", [[1, 2, 3], [4, 5, 6]], id="trailing-tab"),
        pytest.param("1,2,3,\r\n\r\n4,5,6,\r\n", [[1, 2, 3], [4, 5, 6]], id="trailing-crlf"),
        pytest.param("1,\n2,\n", [[1], [2]], id="trailing-one-column"),
    ],
)
def test_csv_spreadsheet_exports_read(tmp_path, text, expected):
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8", newline="")
    array = load_array_file(path)
    np.testing.assert_array_equal(array, np.array(expected, np.float32))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "1 2 3 4 5 6\n",
            "line 1: '1 2 3 4 5 6' is not numbers separated by commas, semicolons or tabs; "
            "separate the numbers with commas",
            id="lone-row-spaces",
        ),
        pytest.param(
            "# six features\n1 2 3 4 5 6\n\n",
            "line 2: '1 2 3 4 5 6' is not numbers separated by commas, semicolons or tabs",
            id="lone-row-spaces-comment",
        ),
        pytest.param(
            '"1","2","3","4","5","6"\n',
            'line 1: \'"1","2","3","4","5","6"\' contains numbers in quotes, which are '
            "not read as numbers; write the numbers without quotes",
            id="lone-row-quoted",
        ),
        pytest.param(
            "1,2,3,\n4,5,6\n",
            "line 1: field 4 of 4 is empty; write a number in every field (a separator at the "
            "end of a row is ignored only when every row ends with one)",
            id="trailing-comma-some-rows",
        ),
        pytest.param(
            "1,2,3\n4,5,6,\n",
            "line 2: field 4 of 4 is empty",
            id="trailing-comma-last-row",
        ),
        pytest.param(
            "1,,3\n",
            "line 1: field 2 of 3 is empty; write a number in every field",
            id="empty-middle-field",
        ),
        pytest.param(
            "1\t2\n3\t4\t\n", "line 2: field 3 of 3 is empty", id="trailing-tab-some-rows"
        ),
    ],
)
def test_csv_error_names_line_and_fix(tmp_path, text, message):
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_array_file(path)
    assert message in str(info.value)
    assert "contains no numbers" not in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["ax,ay,az\n", '"ax","ay"\n', "time step\n"])
def test_csv_header_only_has_no_numbers(tmp_path, text):
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match="contains no numbers"):
        load_array_file(path)


def test_run_csv_lone_space_row(capsys, exported, tmp_path):
    path = tmp_path / "space.csv"
    path.write_text("1 2 3 4 5 6\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "run", exported["lstm"], "-i", path)
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: CSV file {str(path)!r} line 1: '1 2 3 4 5 6' is not numbers")
    assert err.count("\n") == 1


def test_run_csv_bom_and_trailing_comma(capsys, exported, tmp_path, rng):
    values = rng.standard_normal((7, 6)).round(3)
    rows = ["ax,ay,az,gx,gy,gz,"] + [",".join(f"{v:g}" for v in row) + "," for row in values]
    path = tmp_path / "excel.csv"
    path.write_text("\ufeff" + "\r\n".join(rows) + "\r\n", encoding="utf-8", newline="")
    code, out, err = run_cli(capsys, "run", exported["lstm"], "-i", path, "--json")
    assert code == 0, err
    assert json.loads(out)


# --- profile --sweep ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fixed"),
    [
        ("batch=1,,2", "batch=1,2"),
        ("batch=1,2,", "batch=1,2"),
        ("seq-len=,10", "seq-len=10"),
        ("precision=fp32,,int8", "precision=fp32,int8"),
    ],
)
def test_sweep_empty_value_rejected(spec, fixed):
    with pytest.raises(InputError) as info:
        parse_sweep([spec])
    assert str(info.value) == (
        f"sweep {spec!r} contains an empty value; remove the extra comma: {fixed}"
    )


def test_profile_sweep_empty_value_exits_2(capsys, exported, tmp_path):
    devices = tmp_path / "devices"
    code, out, err = run_cli(capsys, "profile", exported["lstm"], "--sweep", "batch=1,,2",
                             "--devices-dir", devices)  # fmt: skip
    assert code == 2
    assert out == ""
    assert err == (
        "error: sweep 'batch=1,,2' contains an empty value; remove the extra comma: batch=1,2\n"
    )
    assert not devices.exists()


# --- profile on a busy host ---------------------------------------------------------------


def _set_load(monkeypatch, load: float) -> None:
    monkeypatch.setattr(rnnedge.host, "load_average_1min", lambda: load)


def test_profile_warns_when_load_exceeds_cores(capsys, exported, monkeypatch):
    cores = os.cpu_count() or 1
    _set_load(monkeypatch, cores + 1.5)
    code, out, err = run_cli(capsys, "profile", exported["lstm"], "--no-store", "--json",
                             *QUICK)  # fmt: skip
    warnings = [line for line in err.splitlines() if LOAD_WARNING in line]
    assert code == 0, err
    assert json.loads(out)["model"] == "lstm.onnx"  # stdout is only the JSON document
    assert LOAD_WARNING not in out
    assert warnings == [
        f"WARNING: load average {cores + 1.5:.2f} over the last minute exceeds the {cores} "
        "logical cores of this host, so other processes compete for the CPU and inflate the "
        "tail latency (p99, max); rerun on an idle host (rnnedge doctor checks the load)"
    ]


def test_profile_sweep_warns_about_load_once(capsys, exported, monkeypatch):
    _set_load(monkeypatch, (os.cpu_count() or 1) * 3.0)
    code, _, err = run_cli(capsys, "profile", exported["lstm"], "--no-store", *QUICK[2:],
                           "--sweep", "seq-len=5,6")  # fmt: skip
    assert code == 0, err
    assert err.count(LOAD_WARNING) == 1


@pytest.mark.parametrize("load", [0.0, None])
def test_profile_idle_host_no_load_warning(capsys, exported, monkeypatch, load):
    _set_load(monkeypatch, load)
    code, _, err = run_cli(capsys, "profile", exported["lstm"], "--no-store", *QUICK)
    assert code == 0, err
    assert LOAD_WARNING not in err


def test_profile_load_at_cores_no_warning(capsys, exported, monkeypatch):
    _set_load(monkeypatch, float(os.cpu_count() or 1))
    code, _, err = run_cli(capsys, "profile", exported["lstm"], "--no-store", *QUICK)
    assert code == 0, err
    assert LOAD_WARNING not in err


def test_profile_input_error_no_load_warning(capsys, exported, monkeypatch):
    _set_load(monkeypatch, (os.cpu_count() or 1) * 3.0)
    code, _, err = run_cli(capsys, "profile", exported["lstm"], "--no-store", *QUICK,
                           "--feed", "nosuch=1")  # fmt: skip
    assert code == 2
    assert LOAD_WARNING not in err


# --- profile --check ----------------------------------------------------------------------


@pytest.fixture
def regressed_baseline(exported, tmp_path):
    """A devices folder whose stored LSTM measurement is 20 times faster than this host."""
    devices = tmp_path / "devices"
    assert main(["profile", str(exported["lstm"]), "--devices-dir", str(devices), *QUICK]) == 0
    (path,) = devices.glob("*.yaml")
    profile = yaml.safe_load(path.read_text())
    for entry in profile["measurements"]:
        for key in ("p50_ms", "p50_ci_low_ms", "p50_ci_high_ms"):
            entry["latency_ms"][key] /= 20
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return devices


def _error_line(err: str) -> str:
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


def test_check_json_regression_points_to_json(capsys, exported, regressed_baseline):
    code, out, err = run_cli(capsys, "profile", exported["lstm"], "--check", "--json",
                             "--devices-dir", regressed_baseline, *QUICK)  # fmt: skip
    (document,) = json.loads(out)
    error = _error_line(err)
    assert code == 3
    assert document["check"]["regressed"] is True
    assert "lines above" not in error
    assert error.endswith(
        'see the configurations with "regressed": true under "check" in the JSON output'
    )


def test_check_text_regression_points_above(capsys, exported, regressed_baseline):
    code, out, err = run_cli(capsys, "profile", exported["lstm"], "--check",
                             "--devices-dir", regressed_baseline, *QUICK)  # fmt: skip
    assert code == 3
    assert out.startswith("REGRESSED: ")
    assert _error_line(err).endswith("beyond the recorded noise; see the REGRESSED lines above")


# --- convert into a read-only folder ------------------------------------------------------


def test_convert_unwritable_folder_names_output_option(capsys, exported, tmp_path, monkeypatch):
    model = tmp_path / "lstm.onnx"
    shutil.copy(exported["lstm"], model)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    code, out, err = run_cli(capsys, "convert", model, "--ort")
    assert code == 2
    assert out == ""
    assert err == (
        f"error: cannot write to {str(tmp_path)!r}: {os.strerror(errno.EROFS)}; pass -o with "
        "an .ort path in a writable folder\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lstm.onnx"]


def test_convert_read_only_mount_then_output_option(exported, tmp_path):
    """A real read-only folder: a bind mount in a user and mount namespace (`unshare`)."""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        pytest.skip("needs util-linux unshare on Linux for a read-only bind mount")
    probe = subprocess.run([unshare, "-rm", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"unshare -rm is not permitted here: {probe.stderr.decode().strip()}")

    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(exported["lstm"], folder / "lstm.onnx")
    writable = tmp_path / "out" / "lstm.ort"
    writable.parent.mkdir()

    script = (
        f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && '
        f'cd "{folder}" && "{sys.executable}" -m rnnedge convert lstm.onnx --ort; '
        f'echo "exit $?"; "{sys.executable}" -m rnnedge convert lstm.onnx --ort -o "{writable}"'
    )
    # The child imports the rnnedge under test, wherever the folder it runs in is.
    source_root = str(Path(rnnedge.__file__).parents[1])
    environment = {**os.environ, "PYTHONPATH": source_root}
    result = subprocess.run([unshare, "-rm", "sh", "-c", script], capture_output=True,
                            text=True, check=False, env=environment)  # fmt: skip

    assert result.stderr.splitlines()[0] == (
        "error: cannot write to '.': Read-only file system; pass -o with an .ort path in a "
        "writable folder"
    )
    assert result.stdout.splitlines()[0] == "exit 2"
    assert result.returncode == 0, result.stderr
    assert writable.stat().st_size > 0
    assert sorted(p.name for p in folder.iterdir()) == ["lstm.onnx"]


def test_convert_to_ort_output_elsewhere_still_works(exported, tmp_path):
    result = convert_to_ort(exported["lstm"], tmp_path / "lstm.ort")
    assert result.model.stat().st_size > 0


# --- damaged .ort files -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"this is not a model\n" * 50, id="text"),
        pytest.param(bytes(range(256)) * 8, id="binary"),
    ],
)
def test_profile_garbage_ort_says_convert(capsys, tmp_path, content):
    path = tmp_path / "g.ort"
    path.write_bytes(content)
    code, out, err = run_cli(capsys, "profile", path, "--no-store")
    assert code == 2
    assert out == ""
    assert err == (
        f"error: {str(path)!r} is not an ONNX Runtime (.ort) model (the file identifier 'ORTM' "
        "at bytes 4 to 8 is missing); convert the .onnx model again with rnnedge convert "
        "MODEL --ort\n"
    )


def test_onnx_model_named_ort_runs_with_warning(capsys, exported, tmp_path):
    path = tmp_path / "renamed.ort"
    shutil.copy(exported["lstm"], path)
    code, out, err = run_cli(capsys, "profile", path, "--no-store", "--json", *QUICK)
    assert code == 0, err
    assert json.loads(out)["model"] == "renamed.ort"
    assert "renamed.ort is an ONNX model, not in the ONNX Runtime format of its .ort name" in err


def test_ort_model_named_onnx_runs(capsys, exported, tmp_path):
    converted = convert_to_ort(exported["lstm"], tmp_path / "lstm.ort").model
    path = tmp_path / "ort_as.onnx"
    shutil.copy(converted, path)
    code, out, err = run_cli(capsys, "profile", path, "--no-store", "--json", *QUICK)
    assert code == 0, err
    assert json.loads(out)["model"] == "ort_as.onnx"


def test_profile_empty_ort_says_convert(capsys, tmp_path):
    path = tmp_path / "empty.ort"
    path.write_bytes(b"")
    code, _, err = run_cli(capsys, "profile", path, "--no-store")
    assert code == 2
    assert err == (
        f"error: model file {str(path)!r} is empty; convert the .onnx model again with "
        "rnnedge convert MODEL --ort\n"
    )


def test_profile_converted_ort_still_measured(capsys, exported, tmp_path):
    converted = convert_to_ort(exported["lstm"], tmp_path / "lstm.ort").model
    code, out, err = run_cli(capsys, "profile", converted, "--no-store", "--json", *QUICK)
    assert code == 0, err
    assert json.loads(out)["model"] == "lstm.ort"


def test_run_garbage_ort_says_convert(capsys, tmp_path):
    path = tmp_path / "g.ort"
    path.write_bytes(b"this is not a model\n" * 50)
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 6), np.float32))
    code, _, err = run_cli(capsys, "run", path, "-i", tmp_path / "x.npy")
    assert code == 2
    assert "rnnedge convert MODEL --ort" in err


# --- device profiles ----------------------------------------------------------------------


def _profile_without(tmp_path: Path, field: str) -> Path:
    catalog = Path(__file__).parents[1] / "devices" / "x86-64.yaml"
    data = yaml.safe_load(catalog.read_text())
    del data[field]
    path = tmp_path / "x86-64.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_profile_file_without_schema_version_names_fix(tmp_path):
    path = _profile_without(tmp_path, "schema_version")
    with pytest.raises(DeviceProfileError) as info:
        read_profile(path)
    assert str(info.value) == (
        f"{path}: missing required field 'schema_version'; fix the file (add the line "
        "'schema_version: 2') or delete it to start a new profile"
    )


def test_profile_file_without_hardware_names_fix(tmp_path):
    path = _profile_without(tmp_path, "hardware")
    with pytest.raises(DeviceProfileError) as info:
        read_profile(path)
    assert str(info.value) == (
        f"{path}: missing required field 'hardware'; fix the file (add field 'hardware') or "
        "delete it to start a new profile"
    )


def test_profile_data_not_from_file_no_delete_fix(tmp_path):
    data = yaml.safe_load(_profile_without(tmp_path, "schema_version").read_text())
    with pytest.raises(DeviceProfileError) as info:
        validate(data, "new profile 'x' from pi@board")
    assert str(info.value) == (
        "new profile 'x' from pi@board: missing required field 'schema_version'"
    )


def test_profile_command_without_schema_version(capsys, exported, tmp_path):
    devices = tmp_path / "devices"
    devices.mkdir()
    path = _profile_without(devices, "schema_version")
    code, out, err = run_cli(capsys, "profile", exported["lstm"], "--device", "x86-64",
                             "--devices-dir", devices, *QUICK)  # fmt: skip
    assert code == 2
    assert out == ""
    assert err == (
        f"error: {path}: missing required field 'schema_version'; fix the file (add the line "
        "'schema_version: 2') or delete it to start a new profile\n"
    )


# --- output folders, --feed files, text arrays ----------------------------------------------


def test_output_folder_that_is_a_file(capsys, exported, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 6), np.float32))
    code, out, err = run_cli(capsys, "run", exported["lstm"], "-i", tmp_path / "x.npy", "-o",
                             tmp_path / "x.npy" / "out.npz")  # fmt: skip
    assert code == 2
    assert out == ""
    assert f"output directory {str(tmp_path / 'x.npy')!r} is a file, not a folder" in err


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_feed_from_other_array_files(tmp_path, suffix):
    from tests.test_streaming import _scaled_model

    path = _scaled_model(tmp_path / "scaled.onnx", 1)
    with pytest.raises(InputError, match=rf"reads one array from a \.npy file, not a \{suffix}"):
        rnnedge.runtime.Session(path, provider="cpu", feeds={"scale": f"g{suffix}"})


def test_text_array_input_named(capsys, exported, tmp_path):
    np.save(tmp_path / "x.npy", np.full((1, 5, 6), "a"))
    code, _, err = run_cli(capsys, "run", exported["lstm"], "-i", tmp_path / "x.npy")
    assert code == 2
    assert "has dtype <U1, not numbers, but model input 'input' expects float32" in err
    assert "astype" not in err


@pytest.mark.parametrize("name", ["lstm_ort_as.onnx", "lstm_ort.bin"])
def test_ort_model_under_other_names(capsys, exported, tmp_path, name):
    converted = convert_to_ort(exported["lstm"], tmp_path / "lstm.ort").model
    path = tmp_path / name
    shutil.copy(converted, path)
    # The operator ranking runs a session of its own, which must load the .ort format too.
    code, out, err = run_cli(capsys, "profile", path, "--no-store", "--json", *QUICK[:-2],
                             "--operators", "3")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["top_operators"]
    code, out, err = run_cli(capsys, "doctor", path)
    assert "cannot load" not in out + err
    assert code in (0, 1), out + err
    code, _, err = run_cli(capsys, "convert", path, "--ort", "-o", tmp_path / "again.ort")
    assert code == 2
    assert "is already in the ORT format; pass the .onnx model" in err
