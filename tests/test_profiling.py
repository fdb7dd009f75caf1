from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml

from rnnedge.errors import DeviceProfileError, InputError
from rnnedge.profiling import profile_model
from rnnedge.profiling.catalog import (
    catalog_dir,
    catalog_names,
    host_device_name,
    host_matches,
    known_names,
    load_device,
    read_profile,
    recognize_host,
    user_profile_path,
    validate,
)
from rnnedge.profiling.store import add_measurements
from rnnedge.profiling.sweeps import parse_sweep, sweep_points
from rnnedge.profiling.timing import measure, median_ci_ranks, summarize

CATALOG = ["jetson-nano", "jetson-orin-nano", "raspberry-pi-4", "raspberry-pi-5", "x86-64"]


def test_summarize_percentiles():
    samples = list(range(1, 101))
    stats = summarize(samples)
    assert stats.count == 100
    assert stats.p50_ms == pytest.approx(np.percentile(samples, 50))
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.min_ms == 1
    assert stats.max_ms == 100
    assert stats.mean_ms == pytest.approx(50.5)


def test_measure_keeps_warmup_apart():
    calls = []
    ticks = iter(range(0, 10**9, 1_000_000))  # each clock read advances 1 ms
    stats, samples = measure(lambda: calls.append(1), warmup=5, runs=10, clock=lambda: next(ticks))
    assert len(calls) == 15
    assert len(samples) == 10
    assert stats.p50_ms == pytest.approx(1.0)


def test_measure_budget_stops_early():
    ticks = iter(range(0, 10**12, 10_000_000))  # 10 ms per call
    stats, _ = measure(lambda: None, warmup=0, runs=1000, budget_s=0.05, clock=lambda: next(ticks))
    assert stats.count == 5


@pytest.mark.parametrize(("warmup", "runs"), [(-1, 10), (0, 0)])
def test_measure_rejects_bad_counts(warmup, runs):
    with pytest.raises(InputError):
        measure(lambda: None, warmup=warmup, runs=runs)


def test_catalog_ships_five_devices():
    assert catalog_names() == CATALOG
    for name in CATALOG:
        profile = load_device(name, Path("/nonexistent"))
        assert profile.measurements == []
        assert profile.provider_preference


def test_catalog_recognizes_this_x86_host(tmp_path):
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("recognition of the generic entry is checked on x86-64 hosts")
    assert recognize_host(tmp_path).name == "x86-64"


def _valid() -> dict:
    return yaml.safe_load((Path(__file__).parents[1] / "devices" / "x86-64.yaml").read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda d: d.pop("hardware"), "missing required field 'hardware'", id="missing"
        ),
        pytest.param(lambda d: d.update(colour="red"), "unknown field 'colour'", id="unknown"),
        pytest.param(lambda d: d.update(schema_version=7), "schema_version 7", id="version"),
        pytest.param(
            lambda d: d.update(measurements={}), "'measurements' must be a list", id="type"
        ),
        pytest.param(
            lambda d: d["providers"].update(preference=["tpu"]), "unknown provider", id="provider"
        ),
        pytest.param(lambda d: d["recognize"].update(serial=1), "'recognize.serial'", id="nested"),
        pytest.param(lambda d: d.update(name="Bad Name"), "field 'name'", id="name"),
    ],
)
def test_profile_validation_names_field(change, message):
    data = _valid()
    change(data)
    with pytest.raises(DeviceProfileError, match=message):
        validate(data, "x86-64.yaml")


def _measurement() -> dict:
    """A measurement with every field the schema checks, as `rnnedge profile` stores it."""
    return {
        "model": "lstm.onnx",
        "model_sha256": "a" * 64,
        "precision": "fp32",
        "architecture": {"cell": "lstm", "features": 6, "hidden_size": 16, "num_layers": 1,
                         "bidirectional": False},
        "provider": "CPUExecutionProvider",
        "providers": ["CPUExecutionProvider"],
        "batch": 1,
        "seq_len": 10,
        "threads": 1,
        "warmup": 0,
        "budget_s": None,
        "latency_ms": {"count": 30, "p50_ms": 0.5, "p90_ms": 0.6, "p99_ms": 0.7,
                       "mean_ms": 0.52, "std_ms": 0.05, "min_ms": 0.4, "max_ms": 0.9,
                       "p50_ci_low_ms": 0.48, "p50_ci_high_ms": 0.53},
        "throughput_seq_per_s": 1923.1,
        "cold_start_ms": 12.5,
        "peak_rss_mb": 80.0,
        "top_operators": [],
        "host": {},
        "conditions": {},
        "host_mismatch": True,
        "remote": "pi@board",
    }  # fmt: skip


def _set(field: str, value):
    """Return a change that sets the dotted `field` of a measurement to `value`."""

    def change(entry: dict) -> None:
        *parents, key = field.split(".")
        for parent in parents:
            entry = entry[parent]
        entry[key] = value

    return change


BAD_MEASUREMENTS = [
    ("latency_ms.p50_ms", "fast", "field 'latency_ms.p50_ms' must be a finite number of at "
     "least 0, got 'fast'"),
    ("batch", -5, "field 'batch' must be an integer of at least 1, got -5"),
    ("seq_len", 0, "field 'seq_len' must be an integer of at least 1, got 0"),
    ("seq_len", 2.5, "field 'seq_len' must be an integer of at least 1, got 2.5"),
    ("threads", True, "field 'threads' must be an integer of at least 1, got True"),
    ("warmup", -1, "field 'warmup' must be an integer of at least 0, got -1"),
    ("budget_s", 0, "field 'budget_s' must be a positive number of seconds, got 0"),
    ("latency_ms", [1, 2], "field 'latency_ms' must be a mapping, got [1, 2]"),
    ("latency_ms.p50_ms", None, "missing field 'latency_ms.p50_ms'"),
    ("latency_ms.p99_ms", float("nan"), "field 'latency_ms.p99_ms' must be a finite number"),
    ("latency_ms.min_ms", -0.1, "field 'latency_ms.min_ms' must be a finite number of at least 0"),
    ("latency_ms.count", 0, "field 'latency_ms.count' must be an integer of at least 1, got 0"),
    ("throughput_seq_per_s", "many", "field 'throughput_seq_per_s' must be a finite number"),
    ("precision", 8, "field 'precision' must be a string, got 8"),
    ("host", "pi", "field 'host' must be a mapping, got 'pi'"),
    ("architecture.hidden_size", 0, "field 'architecture.hidden_size' must be an integer of at "
     "least 1, got 0"),
    ("architecture.bidirectional", "yes", "field 'architecture.bidirectional' must be true or "
     "false, got 'yes'"),
    ("host_mismatch", "yes", "field 'host_mismatch' must be true or false, got 'yes'"),
]  # fmt: skip


def test_valid_measurement_passes():
    data = _valid()
    data["measurements"] = [_measurement()]
    assert validate(data, "x86-64.yaml").measurements == [_measurement()]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    BAD_MEASUREMENTS,
    ids=[f"{f}={v!r}" for f, v, _ in BAD_MEASUREMENTS],
)
def test_measurement_validation_names_field(field, value, message):
    data = _valid()
    data["measurements"] = [_measurement(), _measurement()]
    _set(field, value)(data["measurements"][1])
    with pytest.raises(DeviceProfileError) as raised:
        validate(data, "devices/x86-64.yaml")
    text = str(raised.value)
    assert text.startswith("devices/x86-64.yaml: measurements[1]: ")
    assert message in text
    assert "fix the value or delete that measurement" in text or "missing field" in text


def test_measurement_must_be_mapping():
    data = _valid()
    data["measurements"] = ["fast"]
    with pytest.raises(DeviceProfileError, match=r"measurements\[0\] must be a mapping, got str"):
        validate(data, "x86-64.yaml")


def test_invalid_measurements_never_rewritten(tmp_path):
    path = tmp_path / "x86-64.yaml"
    data = _valid()
    data["measurements"] = [_measurement(), _measurement()]
    data["measurements"][0]["latency_ms"]["p50_ms"] = "fast"
    data["measurements"][1]["batch"] = -5
    path.write_text(yaml.safe_dump(data))
    before = path.read_bytes()
    with pytest.raises(DeviceProfileError, match=r"measurements\[0\]: field 'latency_ms.p50_ms'"):
        add_measurements(load_device("x86-64", Path("/nonexistent")), [_measurement()], tmp_path)
    assert path.read_bytes() == before
    # The empty lock file is made before the read, which must happen under the lock.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x86-64.yaml.lock", "x86-64.yaml"]


def test_invalid_new_measurement_not_stored(tmp_path):
    bad = _measurement()
    bad["seq_len"] = -1
    with pytest.raises(DeviceProfileError, match=r"new measurement 1 for .*field 'seq_len'"):
        add_measurements(load_device("x86-64", tmp_path), [_measurement(), bad], tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_corrupt_profile_file(tmp_path):
    (tmp_path / "x86-64.yaml").write_text("name: [unclosed\n")
    with pytest.raises(DeviceProfileError, match="invalid YAML at line"):
        read_profile(tmp_path / "x86-64.yaml")


def test_unknown_device_lists_known(tmp_path):
    with pytest.raises(
        DeviceProfileError, match="unknown device 'pi9'; known devices: jetson-nano"
    ):
        load_device("pi9", tmp_path)


def test_add_measurements_keeps_earlier(tmp_path):
    base = load_device("raspberry-pi-4", tmp_path)
    add_measurements(base, [{"model": "a", "n": 1}], tmp_path)
    add_measurements(base, [{"model": "b", "n": 2}, {"model": "c", "n": 3}], tmp_path)
    stored = read_profile(tmp_path / "raspberry-pi-4.yaml")
    assert [m["model"] for m in stored.measurements] == ["a", "b", "c"]
    assert stored.data["hardware"] == base.data["hardware"]
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def _append_many(directory: str, worker: int, count: int) -> None:
    base = load_device("x86-64", Path(directory))
    for index in range(count):
        add_measurements(base, [{"worker": worker, "index": index}], Path(directory))


def test_concurrent_writers_lose_nothing(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w, 20)) for w in (1, 2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    stored = read_profile(tmp_path / "x86-64.yaml").measurements
    assert len(stored) == 40
    assert {(m["worker"], m["index"]) for m in stored} == {
        (w, i) for w in (1, 2) for i in range(20)
    }


def test_profile_model_records_measurement(exported, tmp_path):
    result = profile_model(exported["gru"], device="raspberry-pi-5", provider="cpu", batch=2,
                           seq_len=30, warmup=2, runs=15, user_dir=tmp_path,
                           force_device=True)  # fmt: skip
    stored = read_profile(tmp_path / "raspberry-pi-5.yaml").measurements
    assert len(stored) == 1
    entry = stored[0]
    on_a_pi_5 = host_matches(load_device("raspberry-pi-5"))
    assert entry.get("host_mismatch", False) is not on_a_pi_5
    assert entry["batch"] == 2
    assert entry["seq_len"] == 30
    assert entry["precision"] == "fp32"
    assert entry["provider"] == "CPUExecutionProvider"
    assert entry["latency_ms"]["count"] == 15
    assert entry["latency_ms"]["p50_ms"] <= entry["latency_ms"]["p99_ms"]
    assert entry["host"]["onnxruntime"]
    assert len(entry["model_sha256"]) == 64
    assert result.latency.count == 15


def test_profile_model_no_store(exported, tmp_path):
    profile_model(exported["lstm"], runs=3, warmup=0, store=False, user_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_version_1_file_migrates_on_write(tmp_path):
    data = _valid()
    data["schema_version"] = 1
    data["measurements"] = [{"model": "old.onnx", "seq_len": 5}]
    path = tmp_path / "x86-64.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    profile = read_profile(path)
    assert profile.data["schema_version"] == 2
    add_measurements(profile, [{"model": "new.onnx", "seq_len": 7}], tmp_path)
    stored = yaml.safe_load(path.read_text())
    assert stored["schema_version"] == 2
    assert [m["model"] for m in stored["measurements"]] == ["old.onnx", "new.onnx"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda d: d.update(schema_version=3), "newer than 2", id="newer"),
        pytest.param(
            lambda d: d.update(schema_version=1, remote={"ssh": "pi@board"}),
            "'remote' needs schema_version 2",
            id="remote-in-v1",
        ),
        pytest.param(lambda d: d.update(remote={"port": 22}), "'remote.ssh'", id="remote-ssh"),
        pytest.param(
            lambda d: d.update(remote={"ssh": "-oProxyCommand=x"}), "must not start", id="dash"
        ),
        pytest.param(
            lambda d: d.update(measurements=[{"seq_len": "long"}]),
            r"measurements\[0\]: field 'seq_len' must be an integer of at least 1, got 'long'",
            id="measurement-type",
        ),
    ],
)
def test_schema_2_validation(change, message):
    data = _valid()
    change(data)
    with pytest.raises(DeviceProfileError, match=message):
        validate(data, "x86-64.yaml")


def test_corrupt_user_file_is_kept(tmp_path):
    path = tmp_path / "x86-64.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(DeviceProfileError, match="invalid YAML"):
        add_measurements(load_device("x86-64", Path("/nonexistent")), [{"model": "a"}], tmp_path)
    assert path.read_text() == "name: [unclosed\n"


@pytest.mark.parametrize(("n", "ranks"), [(6, (1, 6)), (10, (2, 9)), (20, (6, 15)),
                                          (100, (40, 61))])  # fmt: skip
def test_median_ci_ranks_match_binomial_table(n, ranks):
    assert median_ci_ranks(n) == ranks


def test_median_ci_covers_95_percent():
    rng = np.random.default_rng(7)
    trials = 2000
    # The median of an exponential distribution with scale 1 is ln 2.
    covered = 0
    for _ in range(trials):
        stats = summarize(rng.exponential(1.0, size=40))
        covered += stats.p50_ci_low_ms <= np.log(2) <= stats.p50_ci_high_ms
    # Ranks (14, 27) for n = 40 cover 96.2%; 2000 trials put the estimate within +-1.3%.
    assert covered / trials > 0.93


def test_profile_records_operators_and_memory(exported, tmp_path):
    result = profile_model(exported["lstm"], device="x86-64", provider="cpu", seq_len=20,
                           warmup=1, runs=10, operators=3, store=False)  # fmt: skip
    m = result.measurement
    # The ranking by time shifts under load (a Slice can outrank an LSTM at length 20 on
    # a busy machine), so only membership and the count are checked.
    assert "LSTM" in [o["op"] for o in m["top_operators"]]
    assert len(m["top_operators"]) == 3
    assert m["peak_rss_mb"] >= m["rss_before_mb"] > 0
    assert m["architecture"] == {"cell": "lstm", "features": 6, "hidden_size": 32,
                                 "num_layers": 2, "bidirectional": False}  # fmt: skip
    latency = m["latency_ms"]
    assert latency["p50_ci_low_ms"] <= latency["p50_ms"] <= latency["p50_ci_high_ms"]
    assert m["throughput_seq_per_s"] > 0


def test_budget_limits_runs(exported):
    result = profile_model(exported["gru"], provider="cpu", warmup=0, runs=100000,
                           budget_s=0.05, operators=0, store=False)  # fmt: skip
    assert 1 <= result.latency.count < 100000


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("colour=1,2", "invalid sweep", id="axis"),
        pytest.param("seq-len", "invalid sweep", id="no-values"),
        pytest.param(
            "batch=1,x", "--sweep 'batch=1,x': values must be integers, got 'x'", id="not-int"
        ),
        pytest.param(
            "threads=0,1", "--sweep 'threads=0,1': values must be at least 1, got 0", id="zero"
        ),
        pytest.param("seq-len=1,1", "'seq-len=1,1' lists 1 more than once", id="repeat"),
        pytest.param("batch=1,2,01,2", "lists 1, 2 more than once", id="repeat-spelled"),
        pytest.param("precision=int8,fp32,int8", "lists int8 more than once", id="repeat-text"),
    ],
)
def test_parse_sweep_rejects(spec, message):
    with pytest.raises(InputError, match=message):
        parse_sweep([spec])


def test_precision_sweep_needs_every_file(exported):
    with pytest.raises(InputError, match="no model of precision 'int8'"):
        sweep_points([exported["lstm"]], {"precision": ["fp32", "int8"]})


def test_profile_streaming_and_packed_models(tmp_path):
    """State inputs start at zero with the profiled batch; a lengths input holds seq_len."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from rnnedge.export import export_model

    class Packed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(6, 8, batch_first=True)

        def forward(self, x, lengths):
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]

    class Stream(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(6, 8, num_layers=2, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    export_model(Packed(), tmp_path / "packed.onnx", example_shape="1x10x6")
    export_model(Stream(), tmp_path / "stream.onnx", example_shape="1x10x6", streaming=True)
    for name in ("packed.onnx", "stream.onnx"):
        result = profile_model(tmp_path / name, provider="cpu", batch=3, seq_len=40,
                               warmup=1, runs=5, operators=0, store=False)  # fmt: skip
        assert result.latency.count == 5
        assert result.measurement["batch"] == 3


# --- the shipped catalog, the host check and unreadable user profiles ----------------------


def _catalog_state() -> dict[str, tuple[int, bytes]]:
    """Every file of the shipped catalog with its mode and content."""
    return {p.name: (p.stat().st_mode, p.read_bytes()) for p in sorted(catalog_dir().iterdir())}


def _other_device() -> str:
    """A catalog device whose recognize rules this host does not match."""
    return next(name for name in CATALOG if not host_matches(load_device(name, "/nonexistent")))


def _this_host_device() -> str:
    found = recognize_host("/nonexistent")
    return found.name if found is not None else host_device_name()


@pytest.mark.parametrize("form", ["absolute", "relative", "str"])
def test_store_refuses_shipped_catalog(monkeypatch, form):
    before = _catalog_state()
    monkeypatch.chdir(catalog_dir().parent)
    folder = {
        "absolute": catalog_dir(),
        "relative": Path(catalog_dir().name),
        "str": str(catalog_dir()),
    }[form]
    base = load_device("x86-64", "/nonexistent")
    with pytest.raises(DeviceProfileError, match="is rnnedge's shipped device catalog") as info:
        add_measurements(base, [{"model": "a"}], folder)
    assert "--devices-dir" in str(info.value)
    assert "\n" not in str(info.value)
    assert _catalog_state() == before


def test_profile_refuses_catalog_before_measuring(exported, caplog):
    caplog.set_level(logging.INFO, logger="rnnedge")
    before = _catalog_state()
    with pytest.raises(DeviceProfileError, match="shipped device catalog"):
        profile_model(exported["lstm"], runs=5, warmup=0, operators=0, user_dir=catalog_dir())
    assert "cold start" not in caplog.text  # no session was created
    assert _catalog_state() == before


def test_devices_dir_defaults_beside_catalog(capsys, exported, tmp_path, monkeypatch):
    """Where ./devices is the shipped catalog, the CLI stores under ./.rnnedge/devices."""
    from rnnedge.cli import main
    from rnnedge.commands._common import reset_verbosity

    before = _catalog_state()
    (tmp_path / "devices").symlink_to(catalog_dir(), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    code = main(["-v", "profile", str(exported["lstm"]), "--runs", "3", "--warmup", "0",
                 "--operators", "0", "--seq-len", "5"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    stored = list((tmp_path / ".rnnedge" / "devices").glob("*.yaml"))
    assert [p.stem for p in stored] == [_this_host_device()]
    assert "using .rnnedge/devices for device profiles" in captured.err
    assert f"recorded in {Path('.rnnedge', 'devices', stored[0].name)}" in captured.out
    assert _catalog_state() == before

    reset_verbosity()  # the -v above would otherwise print a traceback below
    code = main(["profile", str(exported["lstm"]), "--devices-dir", "devices", "--runs", "3"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: devices is rnnedge's shipped device catalog")
    assert _catalog_state() == before


def test_devices_dir_in_other_checkout(capsys, exported, tmp_path, monkeypatch):
    """A clone's own devices/ is a catalog too, though rnnedge is imported from elsewhere."""
    from rnnedge.cli import main

    clone = tmp_path / "clone"
    (clone / "rnnedge").mkdir(parents=True)
    (clone / "rnnedge" / "__init__.py").write_text("")
    (clone / "pyproject.toml").write_text('[project]\nname = "rnnedge"\nversion = "0"\n')
    (clone / "devices").mkdir()
    shipped = (catalog_dir() / "x86-64.yaml").read_text()
    (clone / "devices" / "x86-64.yaml").write_text(shipped)
    monkeypatch.chdir(clone)

    code = main(["profile", str(exported["lstm"]), "--runs", "3", "--warmup", "0",
                 "--operators", "0", "--seq-len", "5"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (clone / "devices" / "x86-64.yaml").read_text() == shipped
    stored = [p.stem for p in (clone / ".rnnedge" / "devices").glob("*.yaml")]
    assert stored == [_this_host_device()]

    code = main(["devices", "list", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    sources = {row["name"]: row["source"] for row in rows}
    assert sources["x86-64"] == ("user" if _this_host_device() == "x86-64" else "catalog")
    assert sources["raspberry-pi-4"] == "catalog"


def test_checkout_detection_needs_rnnedge_project(tmp_path):
    from rnnedge.profiling.catalog import is_catalog_folder

    (tmp_path / "rnnedge").mkdir()
    (tmp_path / "rnnedge" / "__init__.py").write_text("")
    (tmp_path / "devices").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "rnnedge-fork"\n')
    assert not is_catalog_folder(tmp_path / "devices")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "rnnedge"\n')
    assert is_catalog_folder(tmp_path / "devices")
    assert not is_catalog_folder(tmp_path / "rnnedge")


def test_profile_refuses_other_device(exported, tmp_path):
    other = _other_device()
    with pytest.raises(DeviceProfileError, match=f"does not look like device '{other}'") as info:
        profile_model(exported["lstm"], device=other, runs=3, warmup=0, operators=0,
                      user_dir=tmp_path)  # fmt: skip
    assert "--force-device" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_force_device_marks_mismatch(exported, tmp_path, caplog):
    other = _other_device()
    result = profile_model(exported["lstm"], device=other, runs=3, warmup=0, operators=0,
                           seq_len=5, user_dir=tmp_path, force_device=True)  # fmt: skip
    stored = read_profile(tmp_path / f"{other}.yaml").measurements
    assert [m["host_mismatch"] for m in stored] == [True]
    assert result.measurement["host_mismatch"] is True
    assert f"does not look like device '{other}'" in caplog.text


def test_no_store_only_warns_about_other_device(exported, tmp_path, caplog):
    other = _other_device()
    result = profile_model(exported["lstm"], device=other, runs=3, warmup=0, operators=0,
                           seq_len=5, store=False, user_dir=tmp_path)  # fmt: skip
    assert result.measurement["host_mismatch"] is True
    assert "marked host_mismatch: true" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_own_device_has_no_mismatch_field(exported, tmp_path):
    name = _this_host_device()
    device = name if name in CATALOG else None
    result = profile_model(exported["lstm"], device=device, runs=3, warmup=0, operators=0,
                           seq_len=5, user_dir=tmp_path)  # fmt: skip
    assert "host_mismatch" not in result.measurement


def test_cli_refuses_other_device(capsys, exported, tmp_path):
    from rnnedge.cli import main

    other = _other_device()
    code = main(["profile", str(exported["lstm"]), "--device", other, "--devices-dir",
                 str(tmp_path), "--runs", "3"])  # fmt: skip
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, captured.err
    assert f"does not look like device '{other}'" in lines[0]
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


UNREADABLE_PROFILES = [
    pytest.param(lambda data: "name: [unclosed\n", "invalid YAML at line", id="corrupt"),
    pytest.param(
        lambda data: yaml.safe_dump({**data, "colour": "red"}),
        "unknown field 'colour'",
        id="invalid",
    ),
    pytest.param(
        lambda data: yaml.safe_dump({**data, "schema_version": 3}),
        "schema_version 3 is newer",
        id="newer-schema",
    ),
    pytest.param(
        lambda data: yaml.safe_dump({**data, "measurements": [{**_measurement(), "batch": -5}]}),
        "measurements[0]: field 'batch' must be an integer of at least 1, got -5",
        id="invalid-measurement",
    ),
]


@pytest.mark.parametrize(("text", "message"), UNREADABLE_PROFILES)
def test_unreadable_host_profile_stops_profile(capsys, exported, tmp_path, text, message):
    from rnnedge.cli import main
    from rnnedge.profiling.catalog import new_profile_for_host

    name = _this_host_device()
    data = (load_device(name) if name in CATALOG else new_profile_for_host(name)).to_dict()
    path = tmp_path / f"{name}.yaml"
    path.write_text(text(data))
    before = path.read_bytes()
    code = main(["profile", str(exported["lstm"]), "--devices-dir", str(tmp_path),
                 "--runs", "3", "--warmup", "0", "--operators", "0"])  # fmt: skip
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {path}: ")
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert path.read_bytes() == before


@pytest.mark.parametrize(("text", "message"), UNREADABLE_PROFILES)
def test_doctor_board_names_unreadable_profile(capsys, tmp_path, text, message):
    """Doctor's board line reports what `rnnedge profile` does: stop, not record a new name."""
    import json

    from rnnedge.cli import main
    from rnnedge.profiling.catalog import new_profile_for_host

    name = _this_host_device()
    data = (load_device(name) if name in CATALOG else new_profile_for_host(name)).to_dict()
    path = tmp_path / f"{name}.yaml"
    path.write_text(text(data))
    code = main(["doctor", "--devices-dir", str(tmp_path), "--json"])
    findings = {f["check"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    board = findings["board"]
    assert code == 3  # the "device" finding is the error
    assert findings["device"]["status"] == "error"
    assert board["status"] == "warning"
    assert f"may describe this host is unreadable: {path}: " in board["message"]
    assert message in board["message"]
    assert "will record it as" not in board["fix"]
    assert "stops with exit code 2" in board["fix"]


def test_unreadable_unrelated_profile_is_skipped(exported, tmp_path, caplog):
    (tmp_path / "my-board.yaml").write_text("name: [unclosed\n")
    result = profile_model(exported["lstm"], runs=3, warmup=0, operators=0, seq_len=5,
                           user_dir=tmp_path)  # fmt: skip
    assert result.device == _this_host_device()
    assert "skipping device profile" in caplog.text


def test_user_dir_accepts_str(tmp_path):
    folder = str(tmp_path)
    base = load_device("x86-64", folder)
    written = add_measurements(base, [{"model": "a"}], folder)
    assert written == tmp_path / "x86-64.yaml"
    assert load_device("x86-64", folder).measurements == [{"model": "a"}]
    assert "x86-64" in known_names(folder)
    assert user_profile_path("x86-64", folder) == written


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_profile_file_mode_follows_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        written = add_measurements(load_device("x86-64", tmp_path), [{"model": "a"}], tmp_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask


def test_negative_operator_count_rejected(exported, capsys):
    from rnnedge.cli import main

    with pytest.raises(InputError, match="operator count must be 0 or more, got -1"):
        profile_model(exported["lstm"], operators=-1, store=False)
    code = main(["profile", str(exported["lstm"]), "--operators", "-1", "--no-store"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --operators must be 0 or more, got -1")


@pytest.mark.parametrize(("runs", "interval"), [(1, "95% CI n/a below 6 runs"), (6, "95% CI ")])
def test_interval_label_needs_six_runs(capsys, exported, runs, interval):
    from rnnedge.cli import main

    code = main(["profile", str(exported["lstm"]), "--runs", str(runs), "--warmup", "0",
                 "--operators", "0", "--seq-len", "5", "--no-store"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert interval in out
    if runs >= 6:
        assert "n/a" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--runs", "0"], "--runs must be at least 1, got 0", id="runs"),
        pytest.param(["--batch", "0"], "--batch must be at least 1, got 0", id="batch"),
        pytest.param(["--seq-len", "0"], "--seq-len must be at least 1, got 0", id="seq-len"),
        pytest.param(["--warmup", "-1"], "--warmup must be 0 or more, got -1", id="warmup"),
        pytest.param(
            ["--budget-s", "0"],
            "--budget-s must be a positive number of seconds, got 0.0",
            id="budget-zero",
        ),
        pytest.param(
            ["--budget-s", "nan"],
            "--budget-s must be a positive number of seconds, got nan",
            id="budget-nan",
        ),
        pytest.param(
            ["--operators", "-1"],
            "--operators must be 0 or more, got -1; pass 0 to skip",
            id="operators",
        ),
        pytest.param(
            ["--check", "--tolerance", "-0.5"],
            "--tolerance must be 0 or more, got -0.5",
            id="tolerance",
        ),
        pytest.param(
            ["--sweep", "seq-len=5,0"],
            "--sweep 'seq-len=5,0': values must be at least 1, got 0",
            id="sweep",
        ),
    ],
)
def test_profile_range_errors_name_option(capsys, exported, tmp_path, args, message):
    from rnnedge.cli import main

    code = main(["profile", str(exported["lstm"]), "--devices-dir", str(tmp_path), *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {message}")
    assert list(tmp_path.iterdir()) == []


def test_nan_budget_rejected_by_library(exported):
    with pytest.raises(InputError, match="positive number of seconds, got nan"):
        profile_model(exported["lstm"], budget_s=float("nan"), store=False)


def test_sweep_label_shows_used_threads():
    from rnnedge.profiling.sweeps import SweepPoint

    point = SweepPoint(Path("m.onnx"), batch=1, seq_len=5, threads=None)
    assert point.label().endswith("threads default")
    assert point.label(2).endswith("threads 2")
    fixed = SweepPoint(Path("m.onnx"), batch=1, seq_len=5, threads=4)
    assert fixed.label(2).endswith("threads 4")


def test_profile_output_singular_counts(capsys, exported, tmp_path):
    from rnnedge.cli import main

    code = main(["profile", str(exported["lstm"]), "--runs", "1", "--threads", "1",
                 "--seq-len", "3", "--operators", "0", "--no-store"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "1 thread)" in out
    assert "(1 run after" in out


def test_devices_dir_from_checkout_subfolder(tmp_path, monkeypatch):
    from rnnedge.commands._common import default_devices_dir

    root = tmp_path / "clone"
    (root / "rnnedge").mkdir(parents=True)
    (root / "rnnedge" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text('[project]\nname = "rnnedge"\n')
    (root / "devices").mkdir()
    (root / "docs" / "deep").mkdir(parents=True)
    monkeypatch.chdir(root / "docs" / "deep")
    assert default_devices_dir() == Path("..", "..", ".rnnedge", "devices")
    (root / "docs" / "deep" / "devices").mkdir()
    assert default_devices_dir() == Path("devices")
    monkeypatch.chdir(tmp_path)
    assert default_devices_dir() == Path("devices")
