"""Scriptable stand-ins for recurrent cells whose own `forward` cannot be exported.

`torch.jit.script` keeps a Python loop over time as a loop, which the TorchScript-based
exporter turns into an ONNX `Loop`. `nn.GRUCell.forward` checks its input with
`hx.dim() not in (1, 2)`, and that membership test has no ONNX conversion, while
`aten::gru_cell` itself has none either. `ExportableGRUCell` computes the same step with
matrix products and activations, keeps the original cell's parameters (the same tensors,
under the same names), and is swapped in on a copy of the model before scripting.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ExportableGRUCell(nn.Module):
    """One GRU step written in matrix products and activations, as `nn.GRUCell` computes it.

    r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
    z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
    h' = n + z * (h - n)
    """

    def __init__(self, cell: nn.GRUCell) -> None:
        super().__init__()
        self.input_size = cell.input_size
        self.hidden_size = cell.hidden_size
        self.weight_ih = cell.weight_ih
        self.weight_hh = cell.weight_hh
        if cell.bias:
            self.bias_ih = cell.bias_ih
            self.bias_hh = cell.bias_hh
        else:
            self.register_buffer("bias_ih", torch.zeros(3 * cell.hidden_size), persistent=False)
            self.register_buffer("bias_hh", torch.zeros(3 * cell.hidden_size), persistent=False)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            h = torch.zeros((x.size(0), self.hidden_size), dtype=x.dtype, device=x.device)
        else:
            h = hx if batched else hx.unsqueeze(0)
        gates_x = torch.matmul(x, self.weight_ih.t()) + self.bias_ih
        gates_h = torch.matmul(h, self.weight_hh.t()) + self.bias_hh
        x_r, x_z, x_n = gates_x.chunk(3, 1)
        h_r, h_z, h_n = gates_h.chunk(3, 1)
        reset = torch.sigmoid(x_r + h_r)
        update = torch.sigmoid(x_z + h_z)
        candidate = torch.tanh(x_n + reset * h_n)
        out = candidate + update * (h - candidate)
        return out if batched else out.squeeze(0)


def with_exportable_cells(model: nn.Module) -> nn.Module:
    """Return `model`, or a copy of it with each `nn.GRUCell` replaced for scripting.

    The user's model is never changed. The copy shares no tensors with it.
    """
    if not any(isinstance(module, nn.GRUCell) for module in model.modules()):
        return model
    if isinstance(model, nn.GRUCell):
        return ExportableGRUCell(copy.deepcopy(model)).train(model.training)
    replaced = copy.deepcopy(model)
    for parent in replaced.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GRUCell):
                setattr(parent, name, ExportableGRUCell(child).train(child.training))
    return replaced
