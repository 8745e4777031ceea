"""nn.Recurrent as the one time loop of every cell: layers, directions, dropout, PyTorch's state order,
return_states, and the check of what a cell returns."""
import warnings

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.nn import Module, Recurrent

from user_cells import MGU


def _copy_into(rec, layer):
    """rec's cells take the weights of the built-in layer's cells (PyTorch order on both sides)."""
    for l in range(layer.num_layers):
        for d in range(layer.num_directions):
            for (_, mine), (_, theirs) in zip(rec.cell_at(l, d).named_parameters(),
                                              layer.cell_at(l, d).named_parameters()):
                mine.data[...] = theirs.data


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("fused", [False, True])
def test_recurrent_of_a_built_in_cell_class_is_the_built_in_layer(kind, fused):
    rng = np.random.default_rng(0)
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
    layer = cls(3, 4, num_layers=2, bidirectional=True, fused=fused, rng=1)
    rec = Recurrent(nn.cells.CELLS[kind], 3, 4, num_layers=2, bidirectional=True)
    assert len(rec.cells) == 4 and rec.cells[1] is rec.cell_at(0, 1)
    _copy_into(rec, layer)
    x = mr.Tensor(rng.standard_normal((5, 2, 3)))
    out, final = rec(x)
    ref, ref_final = layer(x)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12, atol=1e-14)
    finals, refs = (final, ref_final) if kind == "lstm" else ((final,), (ref_final,))
    for a, b in zip(finals, refs):
        assert a.shape == b.shape == (4, 2, 4)  # (L*D, B, H) in PyTorch's order
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)
    names = [n for n, _ in rec.named_parameters()]
    assert names[0] == "cells.0.U" and "cells.3.W" in names


def test_initial_state_goes_in_stacked_and_the_final_state_comes_out_stacked():
    rng = np.random.default_rng(1)
    rec = Recurrent(nn.LSTMCell, 2, 3, num_layers=2, bidirectional=True)
    h0, c0 = (mr.Tensor(rng.standard_normal((4, 2, 3))) for _ in range(2))
    x = mr.Tensor(rng.standard_normal((4, 2, 2)))
    _, (h, c) = rec(x, (h0, c0))
    below = Recurrent(nn.LSTMCell, 2, 3, bidirectional=True)  # layer 0 alone, with the same cells
    below.__dict__["cells"] = rec.cells[:2]
    layer0, _ = below(x, (h0[:2], c0[:2]))
    # entry 3 is layer 1's reverse direction: its cell run alone backwards over layer 0's output
    _, (h_alone, c_alone) = Recurrent(rec.cells[3])(layer0.data[::-1].copy(), (h0[3], c0[3]))
    np.testing.assert_allclose(h.data[3], h_alone.data, rtol=1e-12)
    np.testing.assert_allclose(c.data[3], c_alone.data, rtol=1e-12)
    with pytest.raises(ValueError, match=r"initial state entry 0 must have shape .*\(4, 2, 3\), got \(2, 2, 3\)"):
        rec(x, (h0[:2], c0[:2]))


@pytest.mark.parametrize("fused", [False, True])
def test_return_states_gives_every_c_t_of_the_lstm(fused):
    rng = np.random.default_rng(2)
    lstm = nn.LSTM(2, 3, fused=fused, rng=0)
    x = mr.Tensor(rng.standard_normal((5, 2, 2)))
    out, (h_n, c_n), (hs, cs) = lstm(x, return_states=True)
    np.testing.assert_array_equal(hs.data, out.data)
    np.testing.assert_allclose(cs.data[-1], c_n.data[0], rtol=1e-14)
    cell, state = lstm.cells[0], None
    for t in range(5):
        state = cell(x[t], state)
        np.testing.assert_allclose(cs.data[t], state[1].data, rtol=1e-12)
    rec = Recurrent(nn.LSTMCell, 2, 3)
    _copy_into(rec, lstm)
    _, _, (hs2, cs2) = rec(x, return_states=True)
    np.testing.assert_allclose(cs2.data, cs.data, rtol=1e-12)


def test_return_states_of_a_bidirectional_stack_and_a_tensor_state():
    rng = np.random.default_rng(3)
    rec = Recurrent(MGU, 2, 3, bidirectional=True)
    out, h_n, states = rec(mr.Tensor(rng.standard_normal((4, 2, 2))), return_states=True)
    assert isinstance(states, mr.Tensor) and states.shape == (4, 2, 6)
    np.testing.assert_array_equal(states.data, out.data)


def test_dropout_between_layers_only_in_training():
    rng = np.random.default_rng(4)
    rec = Recurrent(MGU, 2, 8, num_layers=2, dropout=0.5)
    x = mr.Tensor(rng.standard_normal((3, 2, 2)))
    rec.eval()
    a, b = rec(x)[0].data, rec(x)[0].data
    np.testing.assert_array_equal(a, b)
    rec.train()
    assert not np.allclose(rec(x)[0].data, a)


class Returns(Module):
    """A cell that returns whatever it is told to."""

    hidden_size = 4

    def __init__(self, value):
        self.value = value

    def forward(self, x, h):
        return self.value(x, h)


@pytest.mark.parametrize("value, kind, message", [
    (lambda x, h: mr.Tensor(np.zeros((x.shape[0], 5))), ValueError, r"Returns.forward returned h of shape \(2, 5\); "
                                                                    r"expected \(2, 4\)"),
    (lambda x, h: None, TypeError, r"Returns.forward must return the next state .* got NoneType"),
    (lambda x, h: np.zeros((2, 4)), TypeError, r"Returns.forward must return .* got ndarray"),
    (lambda x, h: {"h": h}, TypeError, r"Returns.forward must return .* got dict"),
    (lambda x, h: mr.Tensor(np.zeros((3, 4))), ValueError, r"Returns.forward returned h of shape \(3, 4\)"),
    (lambda x, h: mr.Tensor(np.zeros((2, 4), dtype=np.float32)), ValueError, r"Returns.forward returned h of dtype "
                                                                             r"float32; the run is float64"),
    (lambda x, h: (h, h), TypeError, r"Returns.forward returned a state of 2 entries .* started from 1"),
])
def test_a_wrong_state_is_refused_at_the_first_step_naming_the_cell(value, kind, message):
    with pytest.raises(kind, match=message):
        Recurrent(Returns(value))(mr.Tensor(np.ones((3, 2, 1))))


def test_make_cell_must_build_modules_and_the_instance_form_takes_no_sizes():
    with pytest.raises(TypeError, match="make_cell must build a cell Module, got int"):
        Recurrent(lambda i, h: 3, 2, 3)
    with pytest.raises(TypeError, match=r"a cell instance is the one-layer form"):
        Recurrent(MGU(2, 3), 2, 3)


def test_interop_reads_a_stacked_recurrent_of_built_in_cells_in_pytorchs_layout():
    from micrornn.interop import torch_state_dict
    gru = nn.GRU(2, 3, num_layers=2, bidirectional=True, rng=0)
    rec = Recurrent(nn.GRUCell, 2, 3, num_layers=2, bidirectional=True)
    _copy_into(rec, gru)
    ours, theirs = torch_state_dict(rec), torch_state_dict(gru)
    assert list(ours) == list(theirs) and "weight_hh_l1_reverse" in ours
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key])
    with pytest.raises(TypeError, match="PyTorch has no layout for a MGU"):
        torch_state_dict(Recurrent(MGU, 2, 3))


def test_dropout_on_a_single_layer_warns_that_it_does_nothing():
    with pytest.warns(UserWarning, match="with num_layers=1 it does nothing"):
        nn.Recurrent(MGU, 3, 4, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.Recurrent(MGU, 3, 4, num_layers=2, dropout=0.5)
