"""The HTML report, built from a real demo run and real profile runs, rendered in Chromium.

The Chromium tests need Debian's `chromium` (installed by .ci/setup-chromium.sh) and skip
with that reason where it is missing. The screenshot of the rendered page is kept in
`report-artifacts/` under pytest's base temporary folder. The test prints its path and
records it as the `screenshot` property.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rnnedge.cli import main
from rnnedge.report import build_report

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """A demo run (real training, export, quantization and profiling), two more profile
    runs at other sequence lengths, and a saved quantize report."""
    root = tmp_path_factory.mktemp("report")
    demo, devices = root / "demo", root / "devices"
    code, _ = _cli(["-q", "demo", "--epochs", "3", "--runs", "10", "--output-dir", str(demo),
                    "--devices-dir", str(devices), "--device", "x86-64"])  # fmt: skip
    assert code == 0
    for seq_len in ("10", "40"):
        code, _ = _cli(["-q", "profile", str(demo / "lstm.onnx"), "--device", "x86-64",
                        "--seq-len", seq_len, "--warmup", "2", "--runs", "10",
                        "--devices-dir", str(devices)])  # fmt: skip
        assert code == 0
    code, text = _cli(["-q", "quantize", str(demo / "lstm.onnx"), "-o",
                       str(root / "lstm.q.onnx"), "--json"])  # fmt: skip
    assert code == 0
    (demo / "lstm.q.report.json").write_text(text)
    # The export report, saved as the report's own notice describes.
    code, text = _cli(["-q", "export", str(demo / "gru.pt"), "-o", str(root / "gru.onnx"),
                       "--json"])  # fmt: skip
    assert code == 0
    (demo / "gru.report.json").write_text(text)
    return {"root": root, "demo": demo, "devices": devices}


@pytest.fixture(scope="module")
def report_file(workspace) -> Path:
    output = workspace["root"] / "report.html"
    summary = build_report([workspace["demo"], workspace["devices"]], output)
    assert summary.plots == ("latency", "accuracy", "operators")
    return output


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_demo_writes_report_and_results(workspace):
    demo = workspace["demo"]
    results = json.loads((demo / "results.json").read_text())
    assert {row["precision"] for row in results["rows"]} >= {"fp32", "int8"}
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in results["rows"])
    html = (demo / "report.html").read_text()
    # The demo measures one sequence length, so its report has the accuracy and operator
    # plots and explains why the latency plot is missing.
    assert len(DATA_URI.findall(html)) == 2
    assert "no latency plot: every measurement is at sequence length 100" in html


def test_report_is_self_contained(report_file):
    html = report_file.read_text()
    assert "http://" not in html
    assert "https://" not in html
    images = DATA_URI.findall(html)
    assert len(images) == 3
    for payload in images:
        width, height = _png_size(base64.b64decode(payload))
        assert width > 300
        assert height > 100


def test_report_tables(report_file, workspace):
    html = report_file.read_text()
    assert "lstm.q.onnx" in html  # the quantize report's row
    assert "DynamicQuantizeLSTM" in html
    profile = yaml.safe_load((workspace["devices"] / "x86-64.yaml").read_text())
    assert all("conditions" in m for m in profile["measurements"])
    assert "not recorded" not in html  # every measurement row shows its conditions
    export = json.loads((workspace["demo"] / "gru.report.json").read_text())
    row = re.search(r"<tr><td>gru\.onnx</td>.*?</tr>", html)
    assert row is not None, "no row for the saved export report"
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(0))
    assert cells[3] == f"{export['max_abs_error']:.4g}"
    assert cells[4] == f"{export['atol']:.4g}"
    assert cells[5] == str(len(export["parity"]))


def test_report_command(workspace, tmp_path):
    output = tmp_path / "out.html"
    code, text = _cli(["report", str(workspace["demo"]), str(workspace["devices"]),
                       "-o", str(output)])  # fmt: skip
    assert code == 0
    assert "plots: latency, accuracy, operators" in text
    assert output.is_file()


# --- device folders and measurement marks -----------------------------------------------

QUICK_PROFILE = ["--seq-len", "5", "--runs", "3", "--warmup", "0", "--operators", "0",
                 "--provider", "cpu", "--threads", "1"]  # fmt: skip


def test_report_reads_checkout_devices_folder(exported, tmp_path, monkeypatch, capsys):
    """Where ./devices is the shipped catalog, `report .` reads ./.rnnedge/devices."""
    from rnnedge.profiling.catalog import catalog_dir

    (tmp_path / "devices").symlink_to(catalog_dir(), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    assert main(["profile", str(exported["lstm"]), *QUICK_PROFILE]) == 0
    stored = list((tmp_path / ".rnnedge" / "devices").glob("*.yaml"))
    assert len(stored) == 1
    capsys.readouterr()
    code = main(["report", ".", "-o", "r.html"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote r.html: 1 measurement from 1 device profile," in captured.out
    html = (tmp_path / "r.html").read_text()
    assert str(Path(".rnnedge", "devices")) in html  # listed among the sources


def test_report_devices_dir_option(exported, tmp_path, capsys):
    devices = tmp_path / "elsewhere"
    assert main(["profile", str(exported["lstm"]), "--device", "x86-64",
                 "--devices-dir", str(devices), *QUICK_PROFILE]) == 0  # fmt: skip
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    output = tmp_path / "r.htm"
    code = main(["report", str(tmp_path / "empty"), "--devices-dir", str(devices),
                 "-o", str(output)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "1 measurement from 1 device profile," in captured.out
    assert output.is_file()


def test_report_skips_shipped_catalog():
    from rnnedge.profiling.catalog import catalog_dir
    from rnnedge.report import collect

    catalog = catalog_dir().resolve()
    if catalog.name != "devices":
        pytest.skip("rnnedge is installed from a wheel, so there is no source checkout to walk")
    inputs = collect([catalog.parent])
    assert all(p.path.resolve().parent != catalog for p in inputs.profiles)


def test_report_marks_host_mismatch(exported, tmp_path, capsys):
    from rnnedge.profiling.catalog import host_matches, load_device
    from rnnedge.report import HOST_MISMATCH_TEXT

    other = next(
        name for name in ("raspberry-pi-4", "x86-64")
        if not host_matches(load_device(name, tmp_path))
    )  # fmt: skip
    devices = tmp_path / "devices"
    assert main(["profile", str(exported["lstm"]), "--device", other, "--force-device",
                 "--devices-dir", str(devices), *QUICK_PROFILE]) == 0  # fmt: skip
    capsys.readouterr()
    output = tmp_path / "r.html"
    code = main(["report", str(devices), "-o", str(output)])
    err = capsys.readouterr().err
    html = output.read_text()
    assert code == 0
    assert "measurements marked host_mismatch, recorded with --force-device" in err
    assert f"{other} (1)" in err
    assert re.search(rf'<tr class="spoiled"><td>{other}</td>.*{HOST_MISMATCH_TEXT}', html)


# --- bad input --------------------------------------------------------------------------


def test_empty_folder_is_rejected(tmp_path, capsys):
    output = tmp_path / "r.html"
    (tmp_path / "empty").mkdir()
    code = main(["report", str(tmp_path / "empty"), "-o", str(output)])
    assert code == 2
    assert "run 'rnnedge profile MODEL'" in capsys.readouterr().err
    assert not output.exists()


def test_only_invalid_files_listed(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "devices"
    folder.mkdir()
    (folder / "pi.yaml").write_text("name: pi\nmeasurements: []\n")
    (folder / "lstm.report.json").write_text("[1, 2]")
    monkeypatch.chdir(tmp_path)
    code = main(["report", "devices", "-o", "r.html"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "error: no valid device profile or report under devices, because 2 files found are "
        "invalid: "
    )
    assert "(1) devices/lstm.report.json: not a JSON object" in lines[0]
    assert "(2) devices/pi.yaml: missing required field 'schema_version'" in lines[0]
    assert "devices/pi.yaml: devices/pi.yaml" not in lines[0]
    assert "fix or delete the invalid files" in lines[0]
    assert "no device profiles (*.yaml)" not in lines[0]
    assert not (tmp_path / "r.html").exists()


def test_invalid_files_list_capped(tmp_path, capsys):
    for index in range(12):
        (tmp_path / f"m{index:02}.report.json").write_text("{broken")
    code = main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 2
    assert "because 12 files found are invalid" in err
    assert "(10) " in err
    assert "(11) " not in err
    assert "and 2 more; fix or delete the invalid files" in err


def test_missing_folder_is_rejected(tmp_path, capsys):
    code = main(["report", str(tmp_path / "absent"), "-o", str(tmp_path / "r.html")])
    assert code == 2
    assert "not found" in capsys.readouterr().err


def test_profile_without_measurements(tmp_path, capsys):
    folder = tmp_path / "devices"
    folder.mkdir()
    catalog = Path(__file__).resolve().parents[1] / "devices" / "raspberry-pi-4.yaml"
    shutil.copy(catalog, folder / "raspberry-pi-4.yaml")
    (folder / "broken.yaml").write_text("schema_version: [unclosed\n")
    output = tmp_path / "r.html"
    code = main(["report", str(folder), "-o", str(output)])
    err = capsys.readouterr().err
    assert code == 0
    assert "no measurements in these device profiles" in err
    assert "skipped" in err
    assert f"{folder / 'broken.yaml'}: {folder / 'broken.yaml'}" not in err
    html = output.read_text()
    assert "no latency measurements to plot" in html
    assert "broken.yaml" in html


def test_missing_matplotlib_names_extra(workspace, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    output = tmp_path / "r.html"
    code = main(["report", str(workspace["devices"]), "-o", str(output)])
    assert code == 2
    assert "rnnedge[plot]" in capsys.readouterr().err
    assert not output.exists()


# --- rendering in Chromium --------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed; run .ci/setup-chromium.sh")
    return found


def _render(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _body_state(dom: str) -> dict[str, int]:
    body = re.search(r"<body([^>]*)>", dom)
    assert body, "no <body> in the dumped DOM"
    return {k: int(v) for k, v in re.findall(r'data-([a-z-]+)="(\d+)"', body.group(1))}


def test_chromium_loads_report(report_file, tmp_path):
    done = _render(report_file, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    state = _body_state(done.stdout)
    assert state.get("plots") == 3
    assert state.get("plots-loaded") == 3
    assert state.get("errors") == 0


def test_chromium_detects_broken_plot(report_file, tmp_path):
    html = report_file.read_text()
    broken = DATA_URI.sub('src="data:image/png;base64,bm90IGEgcG5n"', html, count=1)
    page = tmp_path / "broken.html"
    page.write_text(broken)
    done = _render(page, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom")
    state = _body_state(done.stdout)
    assert state.get("plots-loaded") == 2
    assert state.get("errors", 0) >= 1


def test_chromium_screenshot(report_file, tmp_path_factory, record_property):
    folder = tmp_path_factory.getbasetemp() / "report-artifacts"
    folder.mkdir(exist_ok=True)
    shot = folder / "report.png"
    done = _render(
        report_file, folder / "profile", "--hide-scrollbars", "--window-size=1200,2600",
        f"--screenshot={shot}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    print(f"report screenshot: {shot}")
    record_property("screenshot", str(shot))
    from matplotlib import image

    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2600, 1200)
    non_white = np.mean(pixels.min(axis=-1) < 0.95)
    assert non_white > 0.05, f"only {non_white:.1%} of the screenshot is not white"
    colours = np.unique((pixels[::4, ::4] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the screenshot has too few colours to contain the plots"


def test_folder_given_twice_named_once(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    folder = str(tmp_path / "empty")
    code = main(["report", folder, "--devices-dir", folder, "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"(*.report.json, results.json) under {folder}; run 'rnnedge profile" in err


def test_page_names_absolute_folder(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["profile", str(exported["lstm"]), "--device", "x86-64",
                 "--devices-dir", "devices", *QUICK_PROFILE]) == 0  # fmt: skip
    code = main(["report", ".", "-o", "r.html"])
    assert code == 0, capsys.readouterr().err
    html = (tmp_path / "r.html").read_text()
    assert f" from {tmp_path}.</p>" in html
    assert " from ..</p>" not in html


def test_same_name_models_apart(exported, tmp_path, capsys):
    from rnnedge.profiling.catalog import read_profile
    from rnnedge.profiling.profile import file_sha256
    from rnnedge.report.figures import latency_series

    other = tmp_path / "other" / "lstm.onnx"
    other.parent.mkdir()
    other.write_bytes(exported["gru"].read_bytes())  # another model under the same name
    devices = tmp_path / "devices"
    for model in (exported["lstm"], other):
        assert main(["profile", str(model), "--device", "x86-64", "--devices-dir",
                     str(devices), *QUICK_PROFILE]) == 0  # fmt: skip
    labels = [f"lstm.onnx@{file_sha256(path)[:8]}" for path in (exported["lstm"], other)]
    _, series = latency_series([read_profile(devices / "x86-64.yaml")])
    assert sorted(series) == sorted(f"x86-64 · {label} · fp32 · CPU" for label in labels)
    output = tmp_path / "r.html"
    assert main(["report", str(devices), "-o", str(output)]) == 0
    html = output.read_text()
    for label in labels:
        assert f"<td>x86-64</td><td>{label}</td>" in html


def test_report_names_operators_zero(exported, tmp_path, capsys):
    devices = tmp_path / "devices"
    assert "--operators" in QUICK_PROFILE  # with 0, so no operator ranking is stored
    assert main(["profile", str(exported["lstm"]), "--device", "x86-64",
                 "--devices-dir", str(devices), *QUICK_PROFILE]) == 0  # fmt: skip
    output = tmp_path / "r.html"
    code = main(["report", str(devices), "-o", str(output)])
    captured = capsys.readouterr()
    html = output.read_text()
    assert code == 0, captured.err
    assert "no operator times recorded in this measurement: it was taken with --operators 0" in html
    assert "rnnedge version" not in html


def test_report_names_older_rnnedge(exported, tmp_path, capsys):
    devices = tmp_path / "devices"
    assert main(["profile", str(exported["lstm"]), "--device", "x86-64",
                 "--devices-dir", str(devices), *QUICK_PROFILE]) == 0  # fmt: skip
    path = devices / "x86-64.yaml"
    data = yaml.safe_load(path.read_text())
    del data["measurements"][0]["top_operators"]  # as an rnnedge before the ranking stored
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    output = tmp_path / "r.html"
    code = main(["report", str(devices), "-o", str(output)])
    captured = capsys.readouterr()
    html = output.read_text()
    assert code == 0, captured.err
    assert "it was taken by an rnnedge version whose " in html
    assert " records no top_operators; profile again with this version" in html
    assert "--operators 0" not in html


def test_report_path_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "g.report.json"
    path.write_text("{}")
    code = main(["report", str(path), "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"report folder {str(path)!r} is a file; pass the folder that contains it" in err


def test_reports_without_profiles(workspace, tmp_path, capsys):
    folder = tmp_path / "reports"
    folder.mkdir()
    shutil.copy(workspace["demo"] / "lstm.q.report.json", folder)
    code = main(["report", str(folder), "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 0
    assert "no device profiles in these folders" in err
    assert "no measurements in these device profiles" not in err


def test_quantize_table_shows_metric_and_latency(tmp_path):
    from rnnedge.report import _quantization
    from rnnedge.report.collect import ReportInputs

    doc = {"output": "m.int8.onnx", "mode": "dynamic-int8", "metric": "accuracy",
           "metric_before": 0.9167, "metric_after": 0.9, "p50_ms_before": 1.25,
           "p50_ms_after": 0.5}  # fmt: skip
    html = _quantization(ReportInputs(quantize_reports=[(tmp_path / "m.json", doc)]))
    assert "<td>accuracy 0.9167 -&gt; 0.9</td>" in html
    assert "<td>p50 ms 1.25 -&gt; 0.5</td>" in html
