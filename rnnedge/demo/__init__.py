"""The demo: LSTM against GRU, float against int8, on real sensor data and this host."""

from __future__ import annotations

from rnnedge.demo.pipeline import DemoInterrupted, DemoResult, DemoRow, run_demo

__all__ = ["DemoInterrupted", "DemoResult", "DemoRow", "run_demo"]
