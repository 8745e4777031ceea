"""Cells and layers: PyTorch's equations (re-derived in NumPy in torch_reference.py), shapes, state layout,
bidirectional and batch_first, unrolled vs fused, gradchecks, the T=1 zero gradient, dropout."""
import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.check.finite_differences import gradcheck
from micrornn.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, SequenceModel

from torch_reference import torch_forward, torch_gru_step, torch_lstm_step, torch_params

LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def load_torch_params(layer, p):
    """Set a micrornn layer from PyTorch-style parameters (the contract's bias mapping, by hand)."""
    directions = [layer.cells] + ([layer.reverse_cells] if layer.bidirectional else [])
    for l in range(layer.num_layers):
        for d, cells in enumerate(directions):
            load_cell(cells[l], p, f"_l{l}" + ("_reverse" if d else ""))


def load_cell(cell, p, sfx):
    """One cell from PyTorch-style parameters with suffix sfx."""
    H = cell.hidden_size
    cell.U.data[...] = p["weight_ih" + sfx]
    cell.W.data[...] = p["weight_hh" + sfx]
    b_ih, b_hh = p["bias_ih" + sfx], p["bias_hh" + sfx]
    if cell.cell_kind == "gru":  # r, z use b_ih + b_hh; n uses b_in, and b_hn inside r * (...)
        cell.b.data[...] = b_ih + np.concatenate([b_hh[:2 * H], np.zeros(H)])
        cell.b_hn.data[...] = b_hh[2 * H:]
    else:
        cell.b.data[...] = b_ih + b_hh


def assert_agree(a, r, name, rtol, atol=1e-14):
    a, r = np.asarray(a), np.asarray(r)
    assert a.shape == r.shape, f"{name}: shape {a.shape} vs {r.shape}"
    err, bound = np.max(np.abs(a - r)), rtol * np.max(np.abs(r)) + atol
    assert err <= bound, f"{name}: max |diff| {err:.3e} > {bound:.3e}"


# ------------------------------------------------------------------------ equations and layout

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("L,bidirectional,with_state,batch_first",
                         [(1, False, False, False), (2, True, True, False), (3, True, False, True),
                          (2, False, True, True)])
def test_layer_follows_pytorch_equations(kind, L, bidirectional, with_state, batch_first):
    rng = np.random.default_rng(L * 10 + bidirectional)
    T, B, I, H, D = 6, 3, 4, 5, 2 if bidirectional else 1
    p = torch_params(kind, I, H, L, D, rng)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H)) if with_state else None
    c0 = rng.standard_normal((D * L, B, H)) if with_state and kind == "lstm" else None
    ref = torch_forward(kind, p, x, L, D, h0, c0)

    layer = LAYERS[kind](I, H, L, batch_first=batch_first, bidirectional=bidirectional)
    load_torch_params(layer, p)
    xin = x.transpose(1, 0, 2) if batch_first else x
    state = None if not with_state else ((h0, c0) if kind == "lstm" else h0)
    out, final = layer(mr.Tensor(xin), state)
    out = out.data.transpose(1, 0, 2) if batch_first else out.data
    assert out.shape == (T, B, D * H)
    assert_agree(out, ref[0], "output", 1e-13)
    finals = final if kind == "lstm" else (final,)
    for got, want, name in zip(finals, ref[1:], ["h_n", "c_n"]):
        assert got.shape == (D * L, B, H)
        assert_agree(got.data, want, name, 1e-13)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cell_step_follows_pytorch_equations(kind):
    rng = np.random.default_rng(3)
    B, I, H = 4, 3, 5
    p = torch_params(kind, I, H, 1, 1, rng)
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    cell = (LSTMCell if kind == "lstm" else GRUCell)(I, H)
    load_cell(cell, p, "_l0")
    args = [p[k + "_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if kind == "lstm":
        h1, c1 = cell(mr.Tensor(x), (mr.Tensor(h), mr.Tensor(c)))
        rh, rc = torch_lstm_step(x, (h, c), *args)
        assert_agree(h1.data, rh, "h", 1e-14)
        assert_agree(c1.data, rc, "c", 1e-14)
        h0, c0 = cell(mr.Tensor(x))  # no state: zeros
        assert_agree(h0.data, torch_lstm_step(x, (0 * h, 0 * c), *args)[0], "h from zero state", 1e-14)
    else:
        assert_agree(cell(mr.Tensor(x), mr.Tensor(h)).data, torch_gru_step(x, h, *args), "h", 1e-14)
        assert_agree(cell(mr.Tensor(x)).data, torch_gru_step(x, 0 * h, *args), "h from zero state", 1e-14)


def test_cell_contract_attributes_and_shapes():
    lstm, gru, rnn = LSTMCell(3, 5), GRUCell(3, 5), RNNCell(3, 5)
    assert (lstm.cell_kind, gru.cell_kind, rnn.cell_kind) == ("lstm", "gru", "rnn")
    assert lstm.U.shape == (20, 3) and lstm.W.shape == (20, 5) and lstm.b.shape == (20,)
    assert gru.U.shape == (15, 3) and gru.W.shape == (15, 5) and gru.b.shape == (15,) and gru.b_hn.shape == (5,)
    assert [n for n, _ in gru.named_parameters()] == ["U", "W", "b", "b_hn"]
    h, c = lstm.initial_state(2, np.float32)
    assert h.shape == c.shape == (2, 5) and h.dtype == np.float32 and not h.data.any()
    assert gru.initial_state(2).shape == (2, 5)
    nb = GRUCell(3, 5, bias=False)
    assert nb.b is None and nb.b_hn is None and [n for n, _ in nb.named_parameters()] == ["U", "W"]
    assert LSTMCell(3, 5, bias=False).b is None
    assert nn.RNNCell is RNNCell and mr.nn.LSTMCell is LSTMCell


def test_layer_parameter_names_and_attributes():
    model = SequenceModel(4, 6, 3, num_layers=2, cell="lstm", bidirectional=True)
    names = [n for n, _ in model.named_parameters()]
    assert names[:3] == ["rnn.cells.0.U", "rnn.cells.0.W", "rnn.cells.0.b"]
    assert "rnn.reverse_cells.1.W" in names and names[-2:] == ["head.weight", "head.bias"]
    r = model.rnn
    assert (r.cell_kind, r.num_layers, r.num_directions, r.bidirectional, r.hidden_size) == ("lstm", 2, 2, True, 6)
    assert r.cells[1].U.shape == (24, 12)  # layer 1 reads both directions of layer 0
    assert model.head.weight.shape == (3, 12)
    assert not hasattr(LSTM(4, 6), "reverse_cells")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequence_model_cell_kinds_with_index_inputs(kind):
    model = SequenceModel(7, 5, 7, num_layers=2, cell=kind, bidirectional=True, rng=0)
    x = np.random.default_rng(0).integers(0, 7, (4, 3))
    logits, h_n = model(mr.Tensor(x))
    assert logits.shape == (4, 3, 7)
    dense, _ = model(mr.Tensor(np.eye(7)[x]))
    assert_agree(logits.data, dense.data, "indices vs one-hot", 1e-13)
    again, _ = model(mr.Tensor(x), h_n)  # the final state feeds back in as an initial state
    assert again.shape == (4, 3, 7)
    fused = SequenceModel(**dict(model.config, fused=True))
    fused.load_state_dict(model.state_dict())
    assert_agree(fused(mr.Tensor(x), h_n)[0].data, again.data, "fused with index inputs", 1e-12)
    twin = SequenceModel(**model.config)
    assert twin.config == model.config and model.config["cell"] == kind


# ---------------------------------------------------------------------- gradients, three ways

@pytest.mark.parametrize("cell_type", [RNNCell, LSTMCell, GRUCell])
def test_cells_gradcheck_float64(cell_type):
    rng = np.random.default_rng(1)
    cell = cell_type(3, 4, rng=rng)
    x = mr.Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    h = mr.Tensor(rng.standard_normal((2, 4)), requires_grad=True)
    c = mr.Tensor(rng.standard_normal((2, 4)), requires_grad=True)
    params = cell.parameters()
    if cell_type is LSTMCell:
        def fn(x, h, c, *_):
            h1, c1 = cell(x, (h, c))
            return h1 * 1.5 + c1
        assert gradcheck(fn, [x, h, c, *params])
    else:
        assert gradcheck(lambda x, h, *_: cell(x, h), [x, h, *params])


def grads_of(model, x, state, targets):
    model.zero_grad()
    loss, _ = model.loss(mr.Tensor(x), targets, state)
    loss.backward()
    return loss.item(), {n: p.grad.copy() for n, p in model.named_parameters()}


def make_state(kind, shape, rng):
    if shape is None:
        return None
    if kind == "lstm":
        return mr.Tensor(rng.standard_normal(shape)), mr.Tensor(rng.standard_normal(shape))
    return mr.Tensor(rng.standard_normal(shape))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("L,T,bidirectional,with_state,bias",
                         [(1, 1, False, False, True), (2, 5, True, True, True), (3, 3, True, False, False),
                          (1, 9, False, True, False)])
def test_unrolled_matches_fused(kind, L, T, bidirectional, with_state, bias):
    rng = np.random.default_rng(T + L)
    B, I, H, O, D = 2, 3, 4, 5, 2 if bidirectional else 1
    model = SequenceModel(I, H, O, L, cell=kind, bidirectional=bidirectional, bias=bias, rng=rng)
    twin = SequenceModel(**dict(model.config, fused=True))
    twin.load_state_dict(model.state_dict())
    x, targets = rng.standard_normal((T, B, I)), rng.integers(0, O, (T, B))
    state = make_state(kind, (D * L, B, H) if with_state else None, rng)
    loss, unrolled = grads_of(model, x, state, targets)
    fused_loss, fused = grads_of(twin, x, state, targets)
    assert abs(loss - fused_loss) <= 1e-12 * abs(loss)
    assert list(unrolled) == list(fused)
    for name in unrolled:
        assert_agree(fused[name], unrolled[name], f"{name} fused vs unrolled", 1e-10)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_one_step_without_state_gives_zero_recurrent_gradient_on_every_path(kind):
    # h_0 = 0, so dL/dW = sum_t delta_t^T h_{t-1} = 0 at T = 1: zeros (as in torch), not None
    rng = np.random.default_rng(0)
    x, targets = rng.standard_normal((1, 2, 3)), rng.integers(0, 3, (1, 2))
    model = SequenceModel(3, 4, 3, 2, cell=kind, bidirectional=True, rng=0)
    twin = SequenceModel(**dict(model.config, fused=True))
    twin.load_state_dict(model.state_dict())
    for m in (model, twin):
        _, grads = grads_of(m, x, None, targets)
        for name in ("rnn.cells.0.W", "rnn.cells.1.W", "rnn.reverse_cells.0.W"):
            assert grads[name].shape == m.rnn.cells[0].W.shape and not grads[name].any(), name
    loss_recurrent = Recurrent_of(kind)
    out, _ = loss_recurrent(mr.Tensor(x))
    out.sum().backward()
    assert loss_recurrent.cell.W.grad is not None and not loss_recurrent.cell.W.grad.any()


def Recurrent_of(kind):
    cell = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}[kind](3, 4, rng=0)
    return nn.Recurrent(cell)


# ------------------------------------------------------------------ nonlinearity, dropout, errors

def test_callable_nonlinearity_runs_unrolled_and_fused_refuses():
    softsign = lambda a: a / (1 + (a * a) ** 0.5)  # noqa: E731  (built from primitives)
    rnn = RNN(3, 4, 2, nonlinearity=softsign, rng=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, h_n = rnn(mr.Tensor(x))
    c0, c1 = rnn.cells
    h, outs = np.zeros((2, 4)), []
    for t in range(5):  # layer 0 by hand
        a = x[t] @ c0.U.data.T + h @ c0.W.data.T + c0.b.data
        h = a / (1 + np.abs(a))
        outs.append(h)
    assert_agree(h_n.data[0], outs[-1], "layer 0 final state", 1e-14)
    assert out.shape == (5, 2, 4)
    with pytest.raises(ValueError, match="fused=True needs nonlinearity 'tanh' or 'relu'"):
        RNN(3, 4, nonlinearity=softsign, fused=True)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        RNN(3, 4, nonlinearity="sigmoid")


def test_dropout_between_layers_only_in_training():
    rng = np.random.default_rng(0)
    x = mr.Tensor(rng.standard_normal((4, 3, 2)))
    plain = LSTM(2, 8, 3, rng=1)
    dropped = LSTM(2, 8, 3, dropout=0.5, rng=1)
    ref, _ = plain(x)
    noisy, _ = dropped(x)
    assert not np.allclose(noisy.data, ref.data)
    dropped.eval()
    quiet, _ = dropped(x)
    assert_agree(quiet.data, ref.data, "eval mode: no dropout", 1e-15)
    single, _ = LSTM(2, 8, 1, dropout=0.5, rng=1)(x)  # nothing between layers to drop
    assert_agree(single.data, LSTM(2, 8, 1, rng=1)(x)[0].data, "one layer", 1e-15)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        GRU(2, 3, dropout=1.0)


def test_bad_states_and_arguments_are_named():
    lstm, gru = LSTM(3, 4, 2, bidirectional=True), GRU(3, 4)
    x = mr.Tensor(np.zeros((5, 2, 3)))
    with pytest.raises(TypeError, match=r"state must be a tuple \(h0, c0\)"):
        lstm(x, mr.Tensor(np.zeros((4, 2, 4))))
    with pytest.raises(ValueError, match=r"c0: expected shape \(4, 2, 4\)"):
        lstm(x, (np.zeros((4, 2, 4)), np.zeros((2, 2, 4))))
    with pytest.raises(ValueError, match=r"h0: expected shape \(1, 2, 4\)"):
        gru(x, np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="GRU: expected input of shape"):
        gru(mr.Tensor(np.zeros((5, 2, 4))))
    with pytest.raises(ValueError, match="cell must be one of"):
        SequenceModel(3, 4, 3, cell="transformer")
    with pytest.raises(ValueError, match="nonlinearity applies to cell='rnn' only"):
        SequenceModel(3, 4, 3, nonlinearity="relu", cell="gru")
    with pytest.raises(TypeError, match=r"LSTMCell: state must be a tuple \(h, c\)"):
        LSTMCell(3, 4)(np.zeros((2, 3)), np.zeros((2, 4)))


FULL_GRID = [(kind, L, T, bi, st, bf) for kind in ("rnn", "lstm", "gru") for L in (1, 2, 3) for T in (1, 2, 7, 50)
             for bi in (False, True) for st in (False, True) for bf in (False, True)]


@pytest.mark.slow
@pytest.mark.parametrize("case", FULL_GRID, ids=["-".join(map(str, c)) for c in FULL_GRID])
def test_unrolled_matches_fused_full_grid(case):
    kind, L, T, bidirectional, with_state, batch_first = case
    rng = np.random.default_rng(L * 100 + T)
    B, I, H, O, D = 3, 3, 4, 5, 2 if bidirectional else 1
    model = SequenceModel(I, H, O, L, cell=kind, bidirectional=bidirectional, batch_first=batch_first, rng=rng)
    twin = SequenceModel(**dict(model.config, fused=True))
    twin.load_state_dict(model.state_dict())
    x, targets = rng.standard_normal((T, B, I)), rng.integers(0, O, (T, B))
    if batch_first:
        x, targets = x.transpose(1, 0, 2), targets.T
    state = make_state(kind, (D * L, B, H) if with_state else None, rng)
    _, unrolled = grads_of(model, x, state, targets)
    _, fused = grads_of(twin, x, state, targets)
    for name in unrolled:
        assert_agree(fused[name], unrolled[name], f"{name} fused vs unrolled", 1e-10)
