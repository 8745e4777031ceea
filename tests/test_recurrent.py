"""nn.Recurrent and the shared time loop: user cells get step tags, pictures, anomaly messages,
truncated BPTT and gradient checks like the built-in layers."""
import warnings

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.check.finite_differences import gradcheck
from micrornn.nn import GRU, GRUCell, LSTMCell, Module, Parameter, Recurrent, StepScope, detach_state_tensors
from micrornn.viz import draw_unrolled, hidden_grad_norms
from micrornn.viz.flow import retain_hidden_grads, walk


class Wrapped(Module):
    """A user cell that only calls another cell: it runs the generic path (cell(x_t, state))."""

    def __init__(self, inner):
        self.inner, self.hidden_size = inner, inner.hidden_size

    def forward(self, x, h):
        return self.inner(x, h)


class Leaky(Module):
    """A user cell with a tuple state (h, m) and its own initial_state (no hidden_size)."""

    def __init__(self, n, rng):
        self.A = Parameter(rng.uniform(-0.5, 0.5, (n, n)))
        self.n = n

    def initial_state(self, batch):
        return mr.Tensor(np.zeros((batch, self.n))), mr.Tensor(np.ones((batch, self.n)))

    def forward(self, x, state):
        h, m = state
        m = m * 0.5 + x
        return (x @ self.A + h * m).tanh(), m


def test_generic_path_matches_the_built_in_layer():
    rng = np.random.default_rng(0)
    gru = GRU(3, 4, rng=1)
    rec = Recurrent(Wrapped(gru.cells[0]))
    x, h0 = rng.standard_normal((6, 2, 3)), rng.standard_normal((2, 4))
    out, h = rec(mr.Tensor(x), mr.Tensor(h0))
    ref, h_n = gru(mr.Tensor(x), mr.Tensor(h0[None]))
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(h.data, h_n.data[0], rtol=1e-14, atol=1e-15)
    out.sum().backward()
    via_rec = [p.grad.copy() for p in gru.parameters()]
    gru.zero_grad()
    ref.sum().backward()
    for a, b in zip(via_rec, [p.grad for p in gru.parameters()]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_recurrent_of_a_built_in_cell_and_batch_first():
    rng = np.random.default_rng(1)
    cell = LSTMCell(3, 4, rng=rng)
    x = rng.standard_normal((2, 5, 3))  # (B, T, I)
    out, (h, c) = Recurrent(cell, batch_first=True)(mr.Tensor(x))
    ref, (h_ref, c_ref) = Recurrent(cell)(mr.Tensor(x.transpose(1, 0, 2)))
    np.testing.assert_allclose(out.data, ref.data.transpose(1, 0, 2), rtol=1e-15)
    np.testing.assert_allclose(c.data, c_ref.data, rtol=1e-15)
    assert out.shape == (2, 5, 4) and h.shape == c.shape == (2, 4)


def test_tuple_state_and_initial_state_method():
    rng = np.random.default_rng(2)
    rec = Recurrent(Leaky(3, rng))
    out, (h, m) = rec(mr.Tensor(rng.standard_normal((4, 2, 3))))
    assert out.shape == (4, 2, 3) and m.shape == (2, 3)
    assert rec.hidden_size is None and [n for n, _ in rec.named_parameters()] == ["cell.A"]


def test_every_step_is_tagged_and_named():
    rng = np.random.default_rng(3)
    rec = Recurrent(Wrapped(GRUCell(2, 3, rng=rng)))
    out, _ = rec(mr.Tensor(rng.standard_normal((5, 1, 2))))
    loss = (out * out).sum()
    steps = {n.scope.step for n in walk([loss]) if isinstance(n.scope, StepScope) and n.scope.step}
    assert steps == {1, 2, 3, 4, 5}
    assert retain_hidden_grads(loss) == 5
    loss.backward()
    norms = hidden_grad_norms(loss)
    assert sorted(norms) == [(0, t) for t in range(1, 6)] and all(v > 0 for v in norms.values())


def test_reverse_direction_is_tagged_apart_and_prints_like_before():
    assert repr(StepScope(0, 3)) == "StepScope(layer=0, step=3)"
    assert repr(StepScope(1, 2, 1)) == "StepScope(layer=1, step=2, direction=1)"
    out, _ = nn.LSTM(2, 3, bidirectional=True, rng=0)(mr.Tensor(np.ones((3, 1, 2))))
    directions = {n.scope.direction for n in walk([out]) if isinstance(n.scope, StepScope)}
    assert directions == {0, 1}


def test_anomaly_message_names_the_step_of_a_user_cell():
    class LogCell(Module):
        hidden_size = 2

        def __init__(self):
            self.w = Parameter(np.ones(2))

        def forward(self, x, h):
            return (x * self.w).log() + h

    x = np.ones((5, 1, 2))
    x[2] = -1.0  # log of a negative number at step 3
    with mr.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(mr.AnomalyError, match=r"'log'.*StepScope\(layer=0, step=3\)"):
            Recurrent(LogCell())(mr.Tensor(x))


def test_truncated_bptt_with_detach_state_tensors():
    rng = np.random.default_rng(4)
    rec = Recurrent(LSTMCell(2, 3, rng=rng))
    x = mr.Tensor(rng.standard_normal((4, 1, 2)))
    _, state = rec(x)
    carried = detach_state_tensors(state)
    assert isinstance(carried, tuple) and all(t.is_leaf and not t.requires_grad for t in carried)
    out, _ = rec(x, carried)
    first_chunk = {id(t) for t in state}
    assert not any(id(n) in first_chunk for n in walk([out]))  # the graph stops at the boundary
    assert detach_state_tensors(None) is None


def test_draw_unrolled_accepts_recurrent_and_gated_layers():
    rng = np.random.default_rng(5)
    for model in (Recurrent(Wrapped(GRUCell(2, 3, rng=rng))), nn.SequenceModel(2, 3, 2, cell="lstm", rng=rng)):
        source = draw_unrolled(model, steps=3).source
        assert "h<SUB>3</SUB>" in source


def test_user_cell_gradcheck_through_the_loop():
    rng = np.random.default_rng(6)
    cell = Leaky(2, rng)
    x = mr.Tensor(rng.standard_normal((3, 2, 2)), requires_grad=True)
    assert gradcheck(lambda x, A: Recurrent(cell)(x)[0], [x, cell.A])


def test_bad_cells_are_named():
    class NoSize(Module):
        def forward(self, x, h):
            return x

    with pytest.raises(TypeError, match="needs a hidden_size attribute or an initial_state"):
        Recurrent(NoSize())(mr.Tensor(np.ones((2, 1, 3))))
    with pytest.raises(TypeError, match="expected a cell Module"):
        Recurrent(lambda x, h: x)
    with pytest.raises(ValueError, match=r"expected input of shape \(T, B, ...\)"):
        Recurrent(GRUCell(2, 3))(mr.Tensor(np.ones(3)))
