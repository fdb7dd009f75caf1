"""Time `export_model` on a model of about one million parameters.

Run: .venv/bin/python benchmarks/export_speed.py
Prints the parameter count and the wall time of each export, including the parity check.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from rnnedge.export import export_model


class Classifier(nn.Module):
    def __init__(self, cell: type[nn.Module], hidden: int) -> None:
        super().__init__()
        self.rnn = cell(40, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, 12)

    def forward(self, x):
        return self.head(self.rnn(x)[0].mean(dim=1))


def main() -> int:
    torch.set_num_threads(1)
    # Hidden sizes that give about one million parameters each.
    for cell, hidden in ((nn.LSTM, 288), (nn.GRU, 336)):
        model = Classifier(cell, hidden).eval()
        parameters = sum(p.numel() for p in model.parameters())
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            report = export_model(model, Path(folder) / "m.onnx", example_shape="1x100x40")
            elapsed = time.perf_counter() - start
        print(
            f"{cell.__name__}: {parameters:,} parameters, export + parity {elapsed:.2f} s, "
            f"max abs error {report.parity.max_abs_error:.2g}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
