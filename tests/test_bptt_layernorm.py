"""The layer-norm LSTM and GRU three ways in float64: the unrolled graph, the hand-derived BPTT
(bptt.lstm_ln / gru_ln through bptt.loss_and_grads) and central differences; 2 layers, bidirectional,
lengths, random h0. Targets as in test_bptt_models: graph vs analytic <= 1e-10 relative to each
gradient's largest entry; each route vs central differences within atol 1e-5 + rtol 1e-3."""
# gradient-tested: ln_lstm_layer, ln_gru_layer, layernorm.normalize

import itertools

import numpy as np
import pytest

from micrornn import bptt
from micrornn.bptt.layernorm import normalize, normalize_backward
from micrornn.check import routes
from grad_helpers import numeric_ratio, relative
from test_layernorm_cells import ln_problem

AGREE, ATOL, RTOL = 1e-10, 1e-5, 1e-3


def three_way(cell, numeric=True, **problem):
    """{graph_vs_analytic, loss, graph_vs_numeric, analytic_vs_numeric}: the worst figures of one problem."""
    model, x, targets, h0, lengths = ln_problem(cell, **problem)
    loss_g, graph = routes.route_grads(model, x, targets, h0, fused=False, lengths=lengths)
    loss_a, analytic = bptt.loss_and_grads(model, x, targets, h0, lengths=lengths)
    names = [n for n, _ in model.named_parameters()]
    assert list(graph) == list(analytic) == names
    figures = {"graph_vs_analytic": max(relative(graph[n], analytic[n]) for n in names),
               "loss": abs(loss_g - loss_a) / abs(loss_a)}
    if numeric:
        num = routes.numeric_grads(model, x, targets, h0, lengths=lengths)
        figures["graph_vs_numeric"] = max(numeric_ratio(graph[n], num[n], atol=ATOL, rtol=RTOL) for n in names)
        figures["analytic_vs_numeric"] = max(numeric_ratio(analytic[n], num[n], atol=ATOL, rtol=RTOL) for n in names)
    return figures


def assert_within(figures, where):
    assert figures["graph_vs_analytic"] <= AGREE, (where, figures)
    assert figures["loss"] <= 1e-12, (where, figures)
    for key in ("graph_vs_numeric", "analytic_vs_numeric"):
        if key in figures:
            assert figures[key] <= 1.0, (where, figures)


def test_normalize_backward_matches_central_differences():
    rng = np.random.default_rng(0)
    v, w = rng.normal(size=(3, 2 * 5)), rng.normal(size=(3, 2 * 5))
    v_hat, inv = normalize(v, 2)
    analytic = normalize_backward(w, v_hat, inv, 2)
    numeric = np.zeros_like(v)
    for idx in np.ndindex(v.shape):
        plus, minus = v.copy(), v.copy()
        plus[idx] += 1e-6
        minus[idx] -= 1e-6
        numeric[idx] = (np.sum(w * normalize(plus, 2)[0]) - np.sum(w * normalize(minus, 2)[0])) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    blocks = v_hat.reshape(3, 2, 5)
    np.testing.assert_allclose(blocks.mean(axis=-1), 0, atol=1e-12)  # each block centred ...
    np.testing.assert_allclose(blocks.var(axis=-1), 1 - 1e-5 * inv.reshape(3, 2) ** 2, rtol=1e-10)  # var/(var+eps)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_three_ways_two_layers_bidirectional_lengths_h0(cell, bias):
    assert_within(three_way(cell, bias=bias), (cell, bias))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_graph_and_analytic_agree_on_a_longer_batch(cell):
    assert_within(three_way(cell, numeric=False, T=30, batch=4, seed=3), cell)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_index_inputs_and_float32(cell):
    """Index inputs (one-hot rows) and a float32 model: analytic grads keep the parameter dtype and
    agree with the float32 graph."""
    from micrornn.nn import SequenceModel
    rng = np.random.default_rng(5)
    model = SequenceModel(6, 4, 6, num_layers=2, cell=cell, layer_norm=True, dtype=np.float32, rng=rng)
    x, y = rng.integers(0, 6, (5, 3)), rng.integers(0, 6, (5, 3))
    _, graph = routes.route_grads(model, x, y)
    _, analytic = bptt.loss_and_grads(model, x, y)
    for name, g in analytic.items():
        assert g.dtype == np.float32, name
        assert relative(g, graph[name]) <= 1e-4, name


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_three_ways_grid(cell):
    for layers, bi, T, seed in itertools.product((1, 2, 3), (False, True), (1, 2, 7), (0, 1)):
        assert_within(three_way(cell, layers=layers, bidirectional=bi, T=T, seed=seed), (cell, layers, bi, T, seed))
