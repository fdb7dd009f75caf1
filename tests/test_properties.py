"""Property tests: input validation, metadata parsing, profile parsing and merging.

Each property runs a thousand examples in CI (the `ci` profile, chosen when CI is set)
and a hundred locally.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rnnedge.errors import DeviceProfileError, InputError
from rnnedge.profiling.catalog import load_device, read_profile, validate
from rnnedge.profiling.store import add_measurements
from rnnedge.runtime.inputs import check_sequence_input
from rnnedge.runtime.metadata import ModelMetadata

settings.register_profile(
    "ci", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

MODEL_SHAPE = ["batch", "sequence", 6]

dtypes = st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_])
arrays = hnp.arrays(
    dtype=dtypes,
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=7),
    elements={"allow_nan": True, "allow_infinity": True},
)


@given(arrays)
def test_input_check_accepts_or_raises_input_error(array):
    """Any array either passes as a finite float32 (batch, time, 6) feed or raises InputError."""
    try:
        fed = check_sequence_input(array, "input", MODEL_SHAPE, "tensor(float)")
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message
        assert "input" in message
        return
    assert fed.dtype == np.float32
    assert fed.ndim == 3
    assert fed.shape[-1] == 6
    assert min(fed.shape) >= 1
    assert np.isfinite(fed).all()
    assert fed.flags["C_CONTIGUOUS"]


text = st.text(min_size=0, max_size=12)
props_strategy = st.dictionaries(
    st.one_of(
        st.sampled_from([
            "rnnedge.layout", "rnnedge.features", "rnnedge.labels", "rnnedge.normalization",
            "rnnedge.task", "rnnedge.precision", "rnnedge.cell", "rnnedge.state_pairs",
            "rnnedge.format_version",
        ]),
        text,
    ),
    st.one_of(text, st.integers().map(str), st.lists(text).map(json.dumps)),
    max_size=8,
)  # fmt: skip


@given(props_strategy)
def test_metadata_parse_never_crashes(props):
    """Arbitrary metadata either parses, and then round-trips, or raises InputError."""
    try:
        metadata = ModelMetadata.from_props(props)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert ModelMetadata.from_props(metadata.to_props()) == metadata


labels = st.lists(st.text(min_size=1, max_size=8), max_size=5)
stats = st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=4)


@given(
    st.sampled_from(["batch-major", "time-major"]),
    st.integers(min_value=1, max_value=4096),
    labels,
    stats,
    st.lists(
        st.tuples(st.text(min_size=1, max_size=6), st.text(min_size=1, max_size=6)), max_size=3
    ),
)
def test_metadata_roundtrip(layout, features, label_list, mean, pairs):
    props = ModelMetadata.from_props(
        {
            "rnnedge.layout": layout,
            "rnnedge.features": str(features),
            "rnnedge.labels": json.dumps(label_list),
            "rnnedge.normalization": json.dumps({"mean": mean, "std": [1.0] * len(mean)}),
            "rnnedge.state_pairs": json.dumps(pairs),
        }
    ).to_props()
    again = ModelMetadata.from_props(props)
    assert again.features == features
    assert list(again.labels) == label_list
    assert [list(p) for p in again.state_pairs] == [list(p) for p in pairs]


BASE = yaml.safe_load((Path(__file__).parents[1] / "devices" / "raspberry-pi-4.yaml").read_text())
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


@given(st.sampled_from(sorted(BASE)), yaml_values)
def test_profile_validation_rejects_cleanly(field, value):
    """Replacing any top-level field with any YAML value validates or names the problem."""
    data = dict(BASE)
    data[field] = value
    try:
        profile = validate(data, "raspberry-pi-4.yaml")
    except DeviceProfileError as exc:
        assert str(exc).startswith("raspberry-pi-4.yaml: ")
        assert "\n" not in str(exc)
        return
    assert profile.name == data["name"]


measurement = st.fixed_dictionaries(
    {
        "model": st.text(min_size=1, max_size=10),
        "batch": st.integers(1, 64),
        "seq_len": st.integers(1, 4096),
        "latency_ms": st.fixed_dictionaries(
            {
                "p50_ms": st.floats(0, 1e4, allow_nan=False),
                "p99_ms": st.floats(0, 1e4, allow_nan=False),
            }
        ),
    }
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(measurement, min_size=1, max_size=3), min_size=1, max_size=4))
def test_profile_merge_keeps_everything(tmp_path, batches):
    """Successive merges store every measurement, in order, and re-read identically."""
    folder = tmp_path / f"run-{os.urandom(4).hex()}"
    base = load_device("raspberry-pi-4", folder)
    for batch in batches:
        add_measurements(base, batch, folder)
    stored = read_profile(folder / "raspberry-pi-4.yaml").measurements
    expected = [m for batch in batches for m in batch]
    assert len(stored) == len(expected)
    for got, want in zip(stored, expected, strict=True):
        assert got["model"] == want["model"]
        assert got["seq_len"] == want["seq_len"]
        assert got["latency_ms"]["p50_ms"] == pytest.approx(want["latency_ms"]["p50_ms"])
