"""bptt.loss_and_grads for every cell kind and direction count, against the engine's routes.

The agreement grid: cell kind x layers 1-3 x bidirectional x initial state x batch_first x T in
1..50. Targets: unrolled graph vs analytic <= 1e-10 relative (to the largest entry of each
parameter's gradient); fused vs unrolled <= 1e-10; each route vs central differences within
atol 1e-5 + rtol 1e-3. The default run checks a covering subset; ``pytest -m slow`` the full grid
(and prints the worst figures per cell kind).
"""
import itertools

import numpy as np
import pytest

from micrornn import bptt

from micrornn.check import routes as rnncheck
from micrornn.bptt.model import step_grads
from micrornn.nn import SequenceModel
from micrornn.engine.tensor import no_grad

from grad_helpers import numeric_ratio, relative

AGREE, ATOL, RTOL, EPS = 1e-10, 1e-5, 1e-3, 1e-6


def sampled_numeric(model, x, targets, h0, per_tensor, rng):
    """Central differences at per_tensor random entries of each parameter: {name: (flat indices, values)}."""
    xs, ys = rnncheck._model_layout(model, x, targets)
    state = rnncheck._state_tensor(h0)
    out = {}
    for name, p in model.named_parameters():
        flat = p.data.reshape(-1)  # a view: entries are perturbed in place
        picks = np.arange(flat.size) if per_tensor is None else rng.choice(flat.size, min(per_tensor, flat.size),
                                                                           replace=False)
        with no_grad():
            values = [_central(model, xs, ys, state, flat, i) for i in picks]
        out[name] = (picks, np.array(values))
    return out


def _central(model, xs, ys, state, flat, i):
    """(L(p + eps) - L(p - eps)) / 2eps for the flat parameter entry i."""
    orig = flat[i]
    flat[i] = orig + EPS
    plus = model.loss(xs, ys, state)[0].item()
    flat[i] = orig - EPS
    minus = model.loss(xs, ys, state)[0].item()
    flat[i] = orig
    return (plus - minus) / (2 * EPS)


def agreement(cell, layers, bidirectional, with_h0, batch_first, T, numeric="all", seed=0, bias=True):
    """The worst figures of one grid point: {graph_vs_analytic, fused_vs_graph, <route>_vs_numeric, loss}."""
    model, x, targets, h0 = rnncheck.random_problem(
        layers, 3, 3, 4, T, 2, seed=seed, with_h0=with_h0, cell=cell, bidirectional=bidirectional,
        batch_first=batch_first, bias=bias)
    loss_g, graph = rnncheck.route_grads(model, x, targets, h0, fused=False)
    loss_f, fused = rnncheck.route_grads(model, x, targets, h0, fused=True)
    loss_a, analytic = bptt.loss_and_grads(model, x, targets, h0)
    names = [n for n, _ in model.named_parameters()]
    assert list(analytic) == list(graph) == names
    figures = {"graph_vs_analytic": max(relative(graph[n], analytic[n]) for n in names),
               "fused_vs_graph": max(relative(fused[n], graph[n]) for n in names),
               "loss": max(abs(loss_g - loss_a), abs(loss_f - loss_a)) / abs(loss_a)}
    if numeric:
        saved, model.rnn.fused = model.rnn.fused, True  # the same function, evaluated faster
        try:
            num = sampled_numeric(model, x, targets, h0, None if numeric == "all" else 4,
                                  np.random.default_rng(seed))
        finally:
            model.rnn.fused = saved
        for route, grads in (("graph", graph), ("analytic", analytic), ("fused", fused)):
            figures[f"{route}_vs_numeric"] = max(numeric_ratio(grads[n].reshape(-1)[i], v, atol=ATOL, rtol=RTOL)
                                                 for n, (i, v) in num.items())
    return figures


def assert_within_targets(figures, where):
    assert figures["graph_vs_analytic"] <= AGREE, (where, figures)
    assert figures["fused_vs_graph"] <= AGREE, (where, figures)
    assert figures["loss"] <= 1e-12, (where, figures)
    for key in ("graph_vs_numeric", "analytic_vs_numeric", "fused_vs_numeric"):
        if key in figures:
            assert figures[key] <= 1.0, (where, figures)


# (layers, bidirectional, with_h0, batch_first, T): every value of every axis, every pair of the
# binary axes, with each cell kind; T=50 is checked with numerics at sampled entries.
COVERING = [(1, False, False, False, 1), (2, True, True, False, 4), (3, False, True, True, 3),
            (1, True, False, True, 2), (2, False, False, True, 50), (3, True, True, False, 20)]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("point", COVERING, ids=lambda p: "L{}-{}-{}-{}-T{}".format(
    p[0], "bi" if p[1] else "uni", "h0" if p[2] else "zeros", "bf" if p[3] else "tm", p[4]))
def test_agreement_covering_subset(cell, point):
    numeric = "sample" if point[4] > 10 else "all"
    assert_within_targets(agreement(cell, *point, numeric=numeric), (cell, point))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_agreement_without_bias(cell):
    """bias=False: the fused layers pass constant zeros for b (and b_hn)."""
    assert_within_targets(agreement(cell, 2, True, True, False, 4, bias=False), (cell, "no bias"))


GRID_T = (1, 2, 3, 5, 10, 20, 35, 50)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_agreement_full_grid(cell, capsys):
    """Every grid point within the targets; prints the worst figures of this cell kind."""
    worst = {}
    for layers, bi, h0, bf, T in itertools.product((1, 2, 3), (False, True), (False, True), (False, True), GRID_T):
        figures = agreement(cell, layers, bi, h0, bf, T, numeric="all" if T <= 10 else "sample")
        assert_within_targets(figures, (cell, layers, bi, h0, bf, T))
        for key, value in figures.items():
            worst[key] = max(worst.get(key, 0.0), value)
    with capsys.disabled():
        print(f"\n{cell} ({3 * 2 * 2 * 2 * len(GRID_T)} points): " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))


# ----------------------------------------------------------------------------- the API

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_grads_are_keyed_like_named_parameters(cell, bias):
    model = SequenceModel(2, 3, 4, num_layers=2, cell=cell, bidirectional=True, bias=bias, rng=0)
    x, y = np.random.default_rng(0).normal(size=(4, 2, 2)), np.zeros((4, 2), dtype=int)
    _, grads = bptt.loss_and_grads(model, x, y)
    assert list(grads) == [n for n, _ in model.named_parameters()]
    assert all(grads[n].shape == p.shape for n, p in model.named_parameters())
    assert any(n.startswith("rnn.reverse_cells.1.") for n in grads)


def test_float32_model_gets_float32_grads():
    model = SequenceModel(2, 3, 4, cell="gru", dtype=np.float32, rng=0)
    x = np.random.default_rng(0).normal(size=(5, 2, 2)).astype(np.float32)
    _, grads = bptt.loss_and_grads(model, x, np.ones((5, 2), dtype=int))
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}


def test_lstm_initial_state_is_a_tuple_and_bad_shapes_are_named():
    model, x, y, (h0, c0) = rnncheck.random_problem(2, cell="lstm", bidirectional=True, with_h0=True)
    bptt.loss_and_grads(model, x, y, (h0, c0))
    with pytest.raises(ValueError, match=r"tuple \(h0, c0\)"):
        bptt.loss_and_grads(model, x, y, h0)
    with pytest.raises(ValueError, match=r"c0: expected shape \(4, 2, 4\)"):
        bptt.loss_and_grads(model, x, y, (h0, c0[:2]))
    with pytest.raises(ValueError, match="x: expected shape"):
        bptt.loss_and_grads(model, x[..., :2], y)


def test_initial_state_changes_the_result():
    """h0 is used (the grid would also pass if every route ignored it; this would not)."""
    model, x, y, h0 = rnncheck.random_problem(2, cell="gru", bidirectional=True, with_h0=True)
    assert bptt.loss_and_grads(model, x, y, h0)[0] != bptt.loss_and_grads(model, x, y)[0]


def test_vanilla_unidirectional_keeps_its_hidden_grads_list():
    model, x, y, _ = rnncheck.random_problem(2)
    _, _, hidden = bptt.loss_and_grads(model, x, y, return_hidden_grads=True)
    assert isinstance(hidden, list) and len(hidden) == 2 and hidden[0].shape == (6, 2, 4)
    steps = step_grads(model, x, y)  # the general route agrees with the vanilla one
    np.testing.assert_allclose(steps[(0, 0)]["h"], hidden[0], rtol=1e-12, atol=1e-15)


def test_each_direction_starts_its_walk_back_with_the_head_alone():
    """Forward direction at t=T and reverse direction at t=1 get only their own step's head gradient."""
    model, x, y, _ = rnncheck.random_problem(1, cell="lstm", bidirectional=True, steps=5)
    steps = step_grads(model, x, y)
    logits = model(x)[0].data
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    p[np.arange(5)[:, None], np.arange(2), y] -= 1  # dL/dlogits = softmax - onehot
    d_top = p @ model.head.weight.data  # (T, B, 2H)
    np.testing.assert_allclose(steps[(0, 0)]["h"][-1], d_top[-1, :, :4], rtol=1e-12)
    np.testing.assert_allclose(steps[(0, 1)]["h"][0], d_top[0, :, 4:], rtol=1e-12)
    assert not np.allclose(steps[(0, 1)]["h"][-1], d_top[-1, :, 4:])  # later in its walk: more than the head
    assert not steps[(0, 0)]["c_line"][-1].any() and not steps[(0, 1)]["c_line"][0].any()


def test_dropout_in_training_mode_is_refused():
    model = SequenceModel(2, 3, 4, num_layers=2, cell="lstm", dropout=0.5, rng=0)
    x, y = np.zeros((3, 1, 2)), np.zeros((3, 1), dtype=int)
    with pytest.raises(ValueError, match=r"dropout=0.5 in training mode.*model.eval\(\)"):
        bptt.loss_and_grads(model, x, y)
    model.eval()
    _, grads = bptt.loss_and_grads(model, x, y)  # without dropout the model is deterministic again
    model.zero_grad()
    model.loss(x, y)[0].backward()
    np.testing.assert_allclose(grads["rnn.cells.0.W"], model.rnn.cells[0].W.grad, rtol=1e-10, atol=1e-14)
