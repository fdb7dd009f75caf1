"""The scriptable GRU cell computes what nn.GRUCell computes, in every calling form."""

import pytest
import torch
from torch import nn

from rnnedge.export.cells import ExportableGRUCell, with_exportable_cells


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("given_state", [True, False])
def test_step_matches_grucell(bias, batched, given_state):
    torch.manual_seed(0)
    cell = nn.GRUCell(5, 8, bias=bias)
    x = torch.randn(3, 5) if batched else torch.randn(5)
    h = None
    if given_state:
        h = torch.randn(3, 8) if batched else torch.randn(8)
    expected = cell(x, h)
    got = ExportableGRUCell(cell)(x, h)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_scripted_stand_in_matches():
    torch.manual_seed(1)
    cell = nn.GRUCell(4, 6)
    scripted = torch.jit.script(ExportableGRUCell(cell))
    x, h = torch.randn(2, 4), torch.randn(2, 6)
    torch.testing.assert_close(scripted(x, h), cell(x, h), rtol=0, atol=1e-6)


def test_model_without_grucell_is_returned_as_is():
    model = nn.Sequential(nn.Linear(3, 3), nn.LSTMCell(3, 4))
    assert with_exportable_cells(model) is model


def test_copy_replaces_nested_cells_and_keeps_names():
    model = nn.Sequential(nn.Linear(3, 3), nn.ModuleList([nn.GRUCell(3, 4), nn.GRUCell(4, 2)]))
    replaced = with_exportable_cells(model)
    assert replaced is not model
    assert all(isinstance(cell, ExportableGRUCell) for cell in replaced[1])
    assert all(isinstance(cell, nn.GRUCell) for cell in model[1])
    original = model.state_dict()
    copied = replaced.state_dict()
    assert original.keys() == copied.keys()
    for name, value in original.items():
        assert torch.equal(copied[name], value)
        assert copied[name].data_ptr() != value.data_ptr()


def test_bare_grucell_is_wrapped():
    cell = nn.GRUCell(3, 4).eval()
    replaced = with_exportable_cells(cell)
    assert isinstance(replaced, ExportableGRUCell)
    assert not replaced.training
