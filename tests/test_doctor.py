"""`rnnedge doctor` on this host and on a set of real and deliberately broken models.

The broken models are built with the onnx package (a test dependency); doctor itself reads
them without it. The sysfs tree tests feed the condition readers a copied directory
layout, because this host (a VM) exposes no cpufreq or thermal zones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_native
from onnxruntime.quantization import QuantType, quantize_dynamic

from rnnedge.cli import main
from rnnedge.doctor import ERROR_EXIT_CODE, Status, run_doctor
from rnnedge.doctor.conditions import check_conditions, spoilers
from rnnedge.doctor.onnx_proto import identity_model, parse_model
from rnnedge.doctor.providers import check_provider_loads
from rnnedge.host import (
    measurement_conditions,
    parse_nvpmodel_conf,
    parse_pi_throttled,
)
from rnnedge.profiling.catalog import (
    catalog_names,
    host_device_name,
    host_matches,
    load_device,
    recognize_host,
)

REPO = Path(__file__).resolve().parents[1]


def _max_onnx_opset() -> int:
    return max(s.since_version for s in ort_native.get_all_operator_schema() if s.domain == "")


def _one_node_model(path: Path, op: str, domain: str = "", opset: int = 17) -> Path:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], domain=domain, name="only")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=imports, ir_version=9)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def models(exported, tmp_path_factory) -> dict[str, Path]:
    """Real exports, an int8 model and three models that this onnxruntime cannot run."""
    root = tmp_path_factory.mktemp("doctor-models")
    # onnxruntime's own dynamic quantizer, which turns the LSTM into DynamicQuantizeLSTM.
    int8 = root / "lstm.int8.onnx"
    quantize_dynamic(exported["lstm"], int8, weight_type=QuantType.QInt8)
    found = {
        "lstm": exported["lstm"],
        "gru": exported["gru"],
        "lstm-int8": int8,
        "opset-too-new": _one_node_model(root / "new.onnx", "Relu", opset=_max_onnx_opset() + 1),
        "unknown-op": _one_node_model(root / "unknown.onnx", "FancyRecurrence"),
        "custom-domain": _one_node_model(root / "custom.onnx", "Fancy", domain="com.example"),
    }
    garbage = root / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe this is not a protobuf message" * 4)
    found["not-onnx"] = garbage
    # The checker accepts custom domains; it rejects the other two for the very reason
    # that onnxruntime does, so for them it has nothing to add.
    onnx.checker.check_model(onnx.load(found["custom-domain"]))
    return found


def _findings(report, area: str) -> dict[str, dict]:
    return {f["check"]: f for f in report["findings"] if f["area"] == area}


def _doctor_json(args: list[str], capsys) -> tuple[int, dict]:
    code = main(["doctor", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


# --- the model set -----------------------------------------------------------------------

# (model, check, status): one finding that must appear, and how bad it must be.
MODEL_CASES = [
    ("lstm", "load", "ok"),
    ("lstm", "placement", "ok"),
    ("lstm", "quantized", "ok"),
    ("gru", "opset.ai.onnx", "ok"),
    ("lstm-int8", "quantized", "ok"),
    ("lstm-int8", "opset.com.microsoft", "ok"),
    ("opset-too-new", "opset.ai.onnx", "error"),
    ("opset-too-new", "load", "error"),
    ("unknown-op", "operators", "error"),
    ("unknown-op", "load", "error"),
    ("custom-domain", "opset.com.example", "error"),
    ("not-onnx", "file", "error"),
]


@pytest.mark.parametrize(
    ("model", "check", "status"), MODEL_CASES, ids=[f"{m}-{c}" for m, c, _ in MODEL_CASES]
)
def test_model_finding(models, capsys, model, check, status):
    code, report = _doctor_json([str(models[model])], capsys)
    found = _findings(report, "model")
    assert check in found, f"no {check!r} finding; got {sorted(found)}"
    assert found[check]["status"] == status, found[check]
    expected_code = ERROR_EXIT_CODE if report["counts"]["error"] else 0
    assert code == expected_code
    assert report["exit_code"] == expected_code


@pytest.mark.parametrize("model", ["opset-too-new", "unknown-op", "not-onnx"])
def test_broken_model_still_reports_host(models, capsys, model):
    code, report = _doctor_json([str(models[model])], capsys)
    assert code == ERROR_EXIT_CODE
    areas = {f["area"] for f in report["findings"]}
    assert {"machine", "onnxruntime", "conditions"} <= areas


def test_opset_error_names_supported_version(models, capsys):
    _, report = _doctor_json([str(models["opset-too-new"])], capsys)
    finding = _findings(report, "model")["opset.ai.onnx"]
    supported = _max_onnx_opset()
    assert finding["details"]["max_supported"] == supported
    assert f"--opset {supported}" in finding["fix"]


def test_unknown_operator_is_named(models, capsys):
    _, report = _doctor_json([str(models["unknown-op"])], capsys)
    finding = _findings(report, "model")["operators"]
    assert finding["details"]["unknown"] == ["FancyRecurrence"]


def test_int8_kernels_listed(models, capsys):
    _, report = _doctor_json([str(models["lstm-int8"])], capsys)
    kernels = _findings(report, "model")["quantized"]["details"]["kernels"]
    assert "com.microsoft.DynamicQuantizeLSTM" in kernels
    assert "MatMulInteger" in kernels
    assert kernels["com.microsoft.DynamicQuantizeLSTM"]["providers"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize("cell", ["lstm", "gru", "lstm-int8"])
def test_recurrent_node_placement(models, capsys, cell):
    _, report = _doctor_json([str(models[cell])], capsys)
    nodes = _findings(report, "model")["placement"]["details"]["recurrent_nodes"]
    expected = {"lstm": "LSTM", "gru": "GRU", "lstm-int8": "DynamicQuantizeLSTM"}[cell]
    # The fixture models have two layers, which the exporter writes as two nodes.
    assert [row["op_type"] for row in nodes.values()] == [expected, expected]
    assert {row["provider"] for row in nodes.values()} == {"CPUExecutionProvider"}


@pytest.mark.parametrize("name", ["absent.onnx", "folder"])
def test_missing_model_is_usage_error(tmp_path, capsys, name):
    (tmp_path / "folder").mkdir()
    code = main(["doctor", str(tmp_path / name)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: model ")
    assert f"{name}'" in lines[0]
    assert "pass the path to an .onnx file" in lines[0]


def test_every_problem_names_a_fix(models):
    for path in models.values():
        for finding in run_doctor(path).findings:
            if finding.status is not Status.OK:
                assert finding.fix, finding


# --- the host --------------------------------------------------------------------------


def test_host_without_model(capsys):
    code, report = _doctor_json([], capsys)
    machine = _findings(report, "machine")
    assert {"architecture", "cpu.features", "cores_memory", "python", "board"} <= set(machine)
    assert "version" in _findings(report, "onnxruntime")
    assert not _findings(report, "model")
    assert code == (ERROR_EXIT_CODE if report["counts"]["error"] else 0)


def test_unknown_device_is_usage_error(capsys):
    code = main(["doctor", "--device", "no-such-board"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "unknown device 'no-such-board'" in lines[0]
    assert "omit --device to check against this host's own profile" in lines[0]


def test_other_device_is_a_warning(capsys):
    other = next(n for n in catalog_names() if not host_matches(load_device(n)))
    code, report = _doctor_json(["--device", other], capsys)
    finding = _findings(report, "machine")["device"]
    assert finding["status"] == "warning"
    assert f"does not look like device {other!r}" in finding["message"]
    assert "omit --device" in finding["fix"]
    assert report["device"] == other
    assert code == (ERROR_EXIT_CODE if report["counts"]["error"] else 0)


def test_corrupt_host_profile_is_an_error(tmp_path, monkeypatch, capsys):
    name = _this_host_device()
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / f"{name}.yaml").write_text("name: [unclosed\n")
    monkeypatch.chdir(tmp_path)
    code, report = _doctor_json([], capsys)
    finding = _findings(report, "machine")["device"]
    assert code == ERROR_EXIT_CODE
    assert finding["status"] == "error"
    assert f"{name}.yaml: invalid YAML" in finding["message"]


def _this_host_device() -> str:
    found = recognize_host("/nonexistent")
    return found.name if found is not None else host_device_name()


def test_text_output_and_exit_code(models, capsys):
    code = main(["doctor", str(models["unknown-op"])])
    captured = capsys.readouterr()
    assert code == ERROR_EXIT_CODE
    assert "ERROR  operators" in captured.out
    assert "fix: " in captured.out
    assert captured.err.startswith("error: doctor found ")


def test_error_exit_names_first_finding(models, capsys):
    code = main(["doctor", str(models["unknown-op"]), "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    first = next(f for f in report["findings"] if f["status"] == "error")
    lines = captured.err.strip().splitlines()
    assert code == ERROR_EXIT_CODE
    assert len(lines) == 1, captured.err
    assert f"the first in {first['area']} {first['check']}: {first['message']}" in lines[0]
    assert f"fix: {first['fix']}" in lines[0]


def test_cpu_provider_loads():
    assert check_provider_loads("CPUExecutionProvider").status is Status.OK


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")
def test_missing_provider_is_an_error():
    # onnxruntime drops a provider it cannot use and runs on the CPU; doctor must report it.
    finding = check_provider_loads("CUDAExecutionProvider")
    assert finding.status is Status.ERROR
    assert "CUDA" in finding.fix


def test_doctor_imports_neither_torch_nor_onnx(models):
    # The doctor command itself, not `rnnedge.cli`, whose other commands are not checked here.
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "onnx"):
                    raise ImportError(f"{{name}} is blocked in this test")
                return None

        sys.meta_path.insert(0, Block())
        from rnnedge.commands.doctor import doctor_command
        from rnnedge.errors import RnnedgeError

        try:
            doctor_command.main([{str(models["lstm-int8"])!r}, "--json"], standalone_mode=False)
        except RnnedgeError as exc:
            sys.exit(exc.exit_code)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode in (0, ERROR_EXIT_CODE), done.stderr
    report = json.loads(done.stdout)
    assert _findings(report, "model")["quantized"]["status"] == "ok"


# --- the protobuf reader ----------------------------------------------------------------


@pytest.mark.parametrize("model", ["lstm", "gru", "lstm-int8", "custom-domain"])
def test_reader_matches_onnx_package(models, model):
    path = models[model]
    reference = onnx.load(path)
    info = parse_model(path.read_bytes())
    assert info.ir_version == reference.ir_version
    used = {n.domain for n in reference.graph.node} | {""}
    expected_opsets = {o.domain: o.version for o in reference.opset_import if o.domain in used}
    assert {d: v for d, v in info.opsets.items() if d in used} == expected_opsets
    assert [n.op_type for n in info.nodes] == [n.op_type for n in reference.graph.node]
    assert info.metadata == {p.key: p.value for p in reference.metadata_props}


def test_reader_descends_into_subgraphs(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["b"], name="inner")],
        "body",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=body, else_branch=body)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    info = parse_model(model.SerializeToString())
    assert [(n.op_type, n.subgraph_of) for n in info.nodes] == [
        ("If", None),
        ("Neg", "branch"),
        ("Neg", "branch"),
    ]


def test_identity_model_is_valid():
    model = onnx.load_from_string(identity_model())
    onnx.checker.check_model(model, full_check=True)


# --- measurement conditions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "now", "since"),
    [
        ("throttled=0x0\n", [], []),
        ("throttled=0x50005\n", ["under-voltage", "throttled"], ["under-voltage", "throttled"]),
        ("throttled=0x80000\n", [], ["soft temperature limit"]),
    ],
    ids=["clean", "under-voltage-now", "hot-since-boot"],
)
def test_pi_throttled_bits(text, now, since):
    flags = parse_pi_throttled(text)
    assert flags["now"] == now
    assert flags["since_boot"] == since


def test_nvpmodel_conf_modes():
    conf = textwrap.dedent("""
        < POWER_MODEL ID=0 NAME=15W >
        CPU_ONLINE CORE_0 1
        < POWER_MODEL ID=1 NAME=7W >
        CPU_ONLINE CORE_0 1
        < POWER_MODEL ID=2 NAME=MAXN_SUPER >
        < PM_CONFIG DEFAULT=0 >
    """)
    modes = parse_nvpmodel_conf(conf)
    assert modes == [
        {"id": 0, "name": "15W"},
        {"id": 1, "name": "7W"},
        {"id": 2, "name": "MAXN_SUPER"},
    ]


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _sysfs(root: Path, governor: str, current_khz: int, temp_mc: int, swap_free_kb: int) -> Path:
    for cpu in range(2):
        base = f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        _write(root, f"{base}/scaling_governor", governor)
        _write(root, f"{base}/scaling_cur_freq", str(current_khz))
        _write(root, f"{base}/cpuinfo_max_freq", "1800000")
        _write(root, f"{base}/scaling_max_freq", "1800000")
    zone = "sys/class/thermal/thermal_zone0"
    _write(root, f"{zone}/type", "cpu-thermal")
    _write(root, f"{zone}/temp", str(temp_mc))
    _write(root, f"{zone}/trip_point_0_type", "passive")
    _write(root, f"{zone}/trip_point_0_temp", "80000")
    _write(root, "proc/meminfo", f"MemTotal: 4000000 kB\nSwapTotal: 102400 kB\n"
                                 f"SwapFree: {swap_free_kb} kB")  # fmt: skip
    return root


def test_conditions_clean_board(tmp_path):
    root = _sysfs(tmp_path, "performance", 1800000, 45000, 102400)
    conditions = measurement_conditions(root)
    assert conditions["governors"] == ["performance"]
    assert conditions["clock_mhz"] == {"current_min": 1800, "current_max": 1800, "max": 1800}
    assert conditions["thermal"]["max_temp_c"] == 45.0
    assert conditions["swap_used_mb"] == 0
    assert spoilers(conditions) == []


def test_conditions_spoiled_board(tmp_path):
    root = _sysfs(tmp_path, "ondemand", 600000, 82500, 2048)
    conditions = measurement_conditions(root)
    found = {f.check: f for f in spoilers(conditions)}
    assert set(found) == {"governor", "clock", "thermal", "swap"}
    assert "performance" in found["governor"].fix
    assert found["swap"].details["swap_used_mb"] == 98


def test_conditions_of_this_host():
    conditions = measurement_conditions()
    findings = check_conditions(conditions, logical_cores=2)
    assert [f.check for f in findings] == [
        "governor", "clock", "thermal", "pi_throttled", "power_mode", "swap", "load",
    ]  # fmt: skip


def _graph_model(path: Path, nodes: list, inputs: list, outputs: list) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_constant_needs_no_kernel(tmp_path, capsys):
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [2.0])
    model = _graph_model(
        tmp_path / "constant.onnx",
        [helper.make_node("Constant", [], ["k"], value=value),
         helper.make_node("Mul", ["x", "k"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    _, report = _doctor_json([str(model)], capsys)
    operators = _findings(report, "model")["operators"]
    assert operators["status"] == "ok"
    assert operators["message"] == "1 operator types known"
    assert operators["details"]["no_kernel"] == []


def test_function_operator_without_kernel_explained(tmp_path, capsys):
    model = _graph_model(
        tmp_path / "loss.onnx",
        [helper.make_node("SoftmaxCrossEntropyLoss", ["s", "labels"], ["loss"])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("loss", TensorProto.FLOAT, [])],
    )  # fmt: skip
    _, report = _doctor_json([str(model)], capsys)
    found = _findings(report, "model")
    if "SoftmaxCrossEntropyLoss" not in found["operators"]["details"]["no_kernel"]:
        pytest.skip("this onnxruntime has a SoftmaxCrossEntropyLoss kernel at opset 17")
    message = found["operators"]["message"]
    assert "no kernel in this build for SoftmaxCrossEntropyLoss" in message
    assert "expands it as an ONNX function" in message
    assert found["load"]["status"] == "ok"


@pytest.mark.parametrize(
    ("content", "problem", "fix"),
    [
        pytest.param(b"\xff\xfe not a protobuf" * 4, "is not a valid ONNX model",
                     "export it with rnnedge export", id="garbage"),
        pytest.param(b"", "is empty", "export the model again", id="empty"),
    ],
)  # fmt: skip
def test_broken_file_gives_one_fix(tmp_path, capsys, content, problem, fix):
    model = tmp_path / "broken.onnx"
    model.write_bytes(content)
    code = main(["doctor", str(model), "--json"])
    captured = capsys.readouterr()
    finding = _findings(json.loads(captured.out), "model")["file"]
    assert code == ERROR_EXIT_CODE
    assert problem in finding["message"]
    assert finding["fix"] == fix
    assert "; " not in finding["message"]
    assert captured.err.count("fix: ") == 1
    assert fix in captured.err
    assert "export" not in captured.err.replace(fix, "")
