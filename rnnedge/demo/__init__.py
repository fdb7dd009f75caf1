"""The demo: LSTM against GRU, float against int8, on real sensor data and this host."""

from __future__ import annotations

from rnnedge.demo.pipeline import DemoResult, DemoRow, run_demo

__all__ = ["DemoResult", "DemoRow", "run_demo"]
