"""Latency measurement, host fingerprints and the device profiles in `devices/`."""

from __future__ import annotations

from rnnedge.profiling.catalog import DeviceProfile, default_device, load_device
from rnnedge.profiling.profile import ProfileResult, profile_model
from rnnedge.profiling.timing import LatencyStats, measure

__all__ = [
    "DeviceProfile",
    "LatencyStats",
    "ProfileResult",
    "default_device",
    "load_device",
    "measure",
    "profile_model",
]
