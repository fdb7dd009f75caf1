"""Lowering of `nn.LSTM(proj_size > 0)`, which the ONNX `LSTM` operator cannot express.

A projected LSTM multiplies each new hidden state by `weight_hr` (proj_size x hidden) before
it becomes the output and the next step's recurrent input:

    i, f, g, o = split(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)    (PyTorch's gate order)
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = W_hr (sigmoid(o) * tanh(c_t))

ONNX `LSTM` has no projection, and neither torch.onnx exporter handles it (the
TorchScript-based one rejects it, the dynamo one writes a model that ONNX Runtime rejects).
Here each projected `nn.LSTM` is replaced by a module that computes the input product of
all steps as one MatMul and runs the recurrent step above over time. For the
TorchScript-based exporter the loop is scripted, which that exporter writes as an ONNX
`Loop`. torch.export cannot capture a scripted module, and it fixes a Python loop to the
example's length, so under torch.export the same step runs through torch's `scan` operator,
which the dynamo exporter of torch 2.13 writes as an ONNX `Scan`. Layers run in order and
the reverse direction runs over the flipped sequence, as in `nn.LSTM`. A `PackedSequence`
input runs through `forward_packed`, which masks the steps past each sequence's length.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch._higher_order_ops.scan import scan
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


class _ProjectedDirection(nn.Module):
    """One layer and direction of a projected LSTM over time-major input."""

    def __init__(self, lstm: nn.LSTM, suffix: str, reverse: bool) -> None:
        super().__init__()
        self.reverse = reverse
        weight_ih = getattr(lstm, f"weight_ih{suffix}").detach().clone()
        self.weight_ih_t = nn.Parameter(weight_ih.t().contiguous(), requires_grad=False)
        self.weight_hh_t = nn.Parameter(
            getattr(lstm, f"weight_hh{suffix}").detach().t().contiguous(), requires_grad=False
        )
        self.weight_hr_t = nn.Parameter(
            getattr(lstm, f"weight_hr{suffix}").detach().t().contiguous(), requires_grad=False
        )
        bias = torch.zeros(weight_ih.shape[0])
        if lstm.bias:
            bias = getattr(lstm, f"bias_ih{suffix}").detach() + getattr(lstm, f"bias_hh{suffix}")
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not torch.jit.is_scripting():
            return self.forward_scan(x, h, c, None)
        if self.reverse:
            x = x.flip(0)
        input_gates = torch.matmul(x, self.weight_ih_t) + self.bias
        outputs: list[torch.Tensor] = []
        for t in range(x.size(0)):
            gates = input_gates[t] + torch.matmul(h, self.weight_hh_t)
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.matmul(torch.sigmoid(o) * torch.tanh(c), self.weight_hr_t)
            outputs.append(h)
        out = torch.stack(outputs, 0)
        if self.reverse:
            out = out.flip(0)
        return out, h, c

    @torch.jit.export
    def forward_masked(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run like `forward`, keeping the state and writing zeros where `mask` is 0.

        A separate method rather than an optional mask argument of `forward`: an optional
        tensor reaches the exported graph as `Optional` nodes that the ONNX checker rejects.
        """
        if not torch.jit.is_scripting():
            return self.forward_scan(x, h, c, mask)
        if self.reverse:
            x = x.flip(0)
            mask = mask.flip(0)
        input_gates = torch.matmul(x, self.weight_ih_t) + self.bias
        outputs: list[torch.Tensor] = []
        for t in range(x.size(0)):
            gates = input_gates[t] + torch.matmul(h, self.weight_hh_t)
            i, f, g, o = gates.chunk(4, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.matmul(torch.sigmoid(o) * torch.tanh(c_new), self.weight_hr_t)
            # Past a sequence's length the state stays and the output is zero, so the
            # reverse direction starts at each sequence's own last step.
            valid = mask[t]
            c = c + valid * (c_new - c)
            h = h + valid * (h_new - h)
            outputs.append(valid * h_new)
        out = torch.stack(outputs, 0)
        if self.reverse:
            out = out.flip(0)
        return out, h, c

    @torch.jit.unused
    def forward_scan(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run `forward` or, with a mask, `forward_masked` as one `scan` over time.

        Scripting leaves this method out, and the scripted `forward` keeps its loop.
        """
        input_gates = torch.matmul(x, self.weight_ih_t) + self.bias
        weight_hh_t, weight_hr_t = self.weight_hh_t, self.weight_hr_t

        def step(carry, inputs):
            h, c = carry
            step_gates, valid = inputs if mask is not None else (inputs, None)
            gates = step_gates + torch.matmul(h, weight_hh_t)
            i, f, g, o = gates.chunk(4, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.matmul(torch.sigmoid(o) * torch.tanh(c_new), weight_hr_t)
            if valid is None:
                # scan rejects an output that aliases the carry, hence the clone.
                return (h_new, c_new), h_new.clone()
            c = c + valid * (c_new - c)
            h = h + valid * (h_new - h)
            return (h, c), valid * h_new

        steps = input_gates if mask is None else (input_gates, mask)
        (h, c), out = scan(step, (h, c), steps, dim=0, reverse=self.reverse)
        return out, h, c


class _ProjectedLayer(nn.Module):
    """One layer of a projected LSTM, with its forward direction and, when bidirectional,
    its reverse one.

    Scripting unrolls the loop over `self.cells`, so the graph gets one fixed `Concat` of
    the directions' outputs.
    """

    def __init__(self, lstm: nn.LSTM, layer: int) -> None:
        super().__init__()
        cells = [_ProjectedDirection(lstm, f"_l{layer}", reverse=False)]
        if lstm.bidirectional:
            cells.append(_ProjectedDirection(lstm, f"_l{layer}_reverse", reverse=True))
        self.cells = nn.ModuleList(cells)

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run each direction over time-major `x` from its slot of `h0` and `c0`."""
        outputs: list[torch.Tensor] = []
        hs: list[torch.Tensor] = []
        cs: list[torch.Tensor] = []
        for direction, cell in enumerate(self.cells):
            out, h, c = cell(x, h0[direction], c0[direction])
            outputs.append(out)
            hs.append(h)
            cs.append(c)
        return torch.cat(outputs, 2), torch.stack(hs, 0), torch.stack(cs, 0)

    @torch.jit.export
    def forward_masked(
        self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run like `forward`, with the steps where `mask` is 0 masked."""
        outputs: list[torch.Tensor] = []
        hs: list[torch.Tensor] = []
        cs: list[torch.Tensor] = []
        for direction, cell in enumerate(self.cells):
            out, h, c = cell.forward_masked(x, h0[direction], c0[direction], mask)
            outputs.append(out)
            hs.append(h)
            cs.append(c)
        return torch.cat(outputs, 2), torch.stack(hs, 0), torch.stack(cs, 0)


class _ProjectedLSTMCore(nn.Module):
    """All layers and directions, scripted so that the time loop survives export.

    The layer and direction loops run over module lists, which scripting unrolls, and the
    state slots of each layer are a slice at a constant offset. No run-time value such as
    a list length decides where a layer ends. The TorchScript-based exporter turns such a
    test into an ONNX `If` whose output ONNX Runtime rejects with "Invalid tensor data
    type 0" (seen with one layer and one direction over a packed batch).
    """

    # Constants of the scripted module, so that the state slices have fixed bounds.
    __constants__ = ("directions",)

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.batch_first = lstm.batch_first
        self.directions = 2 if lstm.bidirectional else 1
        self.hidden_size = lstm.hidden_size
        self.proj_size = lstm.proj_size
        self.layers = nn.ModuleList(
            [_ProjectedLayer(lstm, layer) for layer in range(lstm.num_layers)]
        )

    def forward(
        self, input: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # permute, unlike transpose, converts without knowing the rank, which a padded
        # batch unpacked from a PackedSequence lacks during export.
        x = input.permute(1, 0, 2) if self.batch_first else input
        hs: list[torch.Tensor] = []
        cs: list[torch.Tensor] = []
        for layer_index, layer in enumerate(self.layers):
            first = layer_index * self.directions
            last = first + self.directions
            x, h, c = layer(x, h0[first:last], c0[first:last])
            hs.append(h)
            cs.append(c)
        if self.batch_first:
            x = x.permute(1, 0, 2)
        return x, torch.cat(hs, 0), torch.cat(cs, 0)

    @torch.jit.export
    def forward_packed(
        self, input: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run like `forward` over a padded batch whose sequence b has `lengths[b]` steps."""
        x = input.permute(1, 0, 2) if self.batch_first else input
        steps = torch.arange(x.size(0), device=x.device).unsqueeze(1)
        limits = lengths.to(device=x.device, dtype=steps.dtype).unsqueeze(0)
        mask = (steps < limits).to(x.dtype).unsqueeze(2)
        hs: list[torch.Tensor] = []
        cs: list[torch.Tensor] = []
        for layer_index, layer in enumerate(self.layers):
            first = layer_index * self.directions
            last = first + self.directions
            x, h, c = layer.forward_masked(x, h0[first:last], c0[first:last], mask)
            hs.append(h)
            cs.append(c)
        if self.batch_first:
            x = x.permute(1, 0, 2)
        return x, torch.cat(hs, 0), torch.cat(cs, 0)


class LoweredProjectedLSTM(nn.Module):
    """Drop-in replacement of a projected `nn.LSTM` with the same call and outputs.

    A `PackedSequence` input is unpacked to the padded batch and its lengths, run with the
    steps past each length masked, and packed again, as `nn.LSTM` would return it.
    """

    recurrent_kind = "LSTM"

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.num_layers = lstm.num_layers
        self.bidirectional = lstm.bidirectional
        self.hidden_size = lstm.hidden_size
        self.proj_size = lstm.proj_size
        self.batch_first = lstm.batch_first
        with warnings.catch_warnings():
            # torch 2.13 marks torch.jit.script deprecated; see the module docstring.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.core = torch.jit.script(_ProjectedLSTMCore(lstm))
        # torch.export cannot capture the scripted core, so it runs this unscripted one,
        # whose directions step through `scan`.
        self.exportable_core = _ProjectedLSTMCore(lstm)

    def forward(
        self,
        input: torch.Tensor | PackedSequence,
        hx: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor | PackedSequence, tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(input, PackedSequence):
            padded, lengths = pad_packed_sequence(input, batch_first=self.batch_first)
            out, state = self._run(padded, hx, lengths)
            packed = pack_padded_sequence(
                out, lengths, batch_first=self.batch_first, enforce_sorted=False
            )
            return packed, state
        return self._run(input, hx, None)

    def _run(
        self,
        input: torch.Tensor,
        hx: tuple[torch.Tensor, torch.Tensor] | None,
        lengths: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if hx is None:
            batch = input.size(0) if self.batch_first else input.size(1)
            slots = self.num_layers * (2 if self.bidirectional else 1)
            h0 = input.new_zeros((slots, batch, self.proj_size))
            c0 = input.new_zeros((slots, batch, self.hidden_size))
            hx = (h0, c0)
        core = self.exportable_core if torch.compiler.is_compiling() else self.core
        if lengths is None:
            out, h, c = core(input, hx[0], hx[1])
        else:
            out, h, c = core.forward_packed(input, hx[0], hx[1], lengths)
        return out, (h, c)


def has_projection(model: nn.Module) -> bool:
    return any(isinstance(m, nn.LSTM) and m.proj_size > 0 for m in model.modules())


def lower_projections(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Return a copy of `model` with every projected `nn.LSTM` lowered, and their names."""
    if isinstance(model, nn.LSTM) and model.proj_size > 0:
        return LoweredProjectedLSTM(model).eval(), [""]
    lowered = copy.deepcopy(model)
    names = []
    for name, module in list(lowered.named_modules()):
        if isinstance(module, nn.LSTM) and module.proj_size > 0:
            replacement = LoweredProjectedLSTM(module).eval()
            _set_submodule(lowered, name, replacement)
            names.append(name)
    return lowered, names


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)
