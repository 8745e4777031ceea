"""Higher order and forward mode through recurrent networks: the fused layer's rules, Hessian-vector
products of sequence losses against finite differences of the analytic BPTT gradient, the scopes of
the recorded backward graph, and grad of grad with retained and released graphs.
"""
from __future__ import annotations

import numpy as np
import pytest

import micrornn as mr
from micrornn import Tensor, bptt
from micrornn.bptt import fused as fused_ops
from micrornn.check.finite_differences import gradcheck, gradgradcheck
from micrornn.nn import SequenceModel, StepScope
from micrornn.engine.tensor import apply
from micrornn.viz.flow import walk
from test_higher_ops import dot_product_gap

# higher-order-tested: rnn_layer, lstm_layer, gru_layer
T, B, I, H, O = 4, 2, 3, 5, 4


def layer_arrays(seed=0):
    """x, U, W, b, h0 of one small fused layer (float64)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, B, I)), rng.standard_normal((H, I)) * 0.5, rng.standard_normal((H, H)) * 0.5,
            rng.standard_normal(H) * 0.5, rng.standard_normal((B, H)) * 0.5)


def fused(nonlinearity):
    return lambda *xs: apply(fused_ops.RNN_LAYER, *xs, nonlinearity=nonlinearity)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_fused_layer_second_order(nonlinearity):
    inputs = [Tensor(a, requires_grad=True) for a in layer_arrays()]
    assert gradcheck(fused(nonlinearity), inputs, atol=1e-7, rtol=1e-5)
    assert gradgradcheck(fused(nonlinearity), inputs, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_fused_layer_jvp_is_the_transpose_of_its_vjp(nonlinearity):
    assert dot_product_gap(fused(nonlinearity), layer_arrays(1)) < 1e-13


def test_fused_layer_jvp_equals_the_unrolled_one():
    arrays = layer_arrays(2)
    tangents = [np.random.default_rng(3).standard_normal(a.shape) for a in arrays]

    def unrolled(x, U, W, b, h):
        states = []
        for t in range(T):
            h = (x[t] @ U.T + h @ W.T + b).tanh()
            states.append(h)
        return mr.stack(states)

    _, fused_tangent = mr.jvp(fused("tanh"), [Tensor(a) for a in arrays], tangents)
    _, unrolled_tangent = mr.jvp(unrolled, [Tensor(a) for a in arrays], tangents)
    np.testing.assert_allclose(fused_tangent.data, unrolled_tangent.data, rtol=1e-12, atol=1e-14)


# ---- the gated fused layers ----------------------------------------------------------------------

def gated_arrays(kind, seed=0):
    """Inputs of LSTM_LAYER (x, U, W, b, h0, c0) or GRU_LAYER (x, U, W, b, b_hn, h0)."""
    rng = np.random.default_rng(seed)
    blocks = 4 if kind == "lstm" else 3
    last = [rng.standard_normal((B, H)) * 0.5, rng.standard_normal((B, H)) * 0.5]
    if kind == "gru":
        last = [rng.standard_normal(H) * 0.5, last[0]]
    return (rng.standard_normal((T, B, I)), rng.standard_normal((blocks * H, I)) * 0.5,
            rng.standard_normal((blocks * H, H)) * 0.5, rng.standard_normal(blocks * H) * 0.5, *last)


GATED = {"lstm": fused_ops.LSTM_LAYER, "gru": fused_ops.GRU_LAYER}


@pytest.mark.parametrize("kind", sorted(GATED))
def test_gated_fused_layer_second_order(kind):
    inputs = [Tensor(a, requires_grad=True) for a in gated_arrays(kind)]
    assert gradgradcheck(lambda *xs: apply(GATED[kind], *xs), inputs, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(GATED))
def test_gated_fused_layer_jvp_is_the_transpose_of_its_vjp(kind):
    assert dot_product_gap(lambda *xs: apply(GATED[kind], *xs), gated_arrays(kind, 1)) < 1e-13


@pytest.mark.parametrize("kind", sorted(GATED))
def test_gated_fused_layer_jvp_against_central_differences(kind):
    arrays = gated_arrays(kind, 2)
    vs = [np.random.default_rng(4).standard_normal(a.shape) for a in arrays]
    _, jv = mr.jvp(lambda *xs: apply(GATED[kind], *xs), [Tensor(a) for a in arrays], vs)
    eps = 1e-6
    plus = apply(GATED[kind], *[Tensor(a + eps * v) for a, v in zip(arrays, vs)]).data
    minus = apply(GATED[kind], *[Tensor(a - eps * v) for a, v in zip(arrays, vs)]).data
    np.testing.assert_allclose(jv.data, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-8)


# ---- Hessian-vector products of sequence losses -------------------------------------------------

def sequence_problem(seed, fused_layers, num_layers=2, cell="rnn"):
    """A small two-layer SequenceModel, inputs and targets."""
    model = SequenceModel(I, H, O, num_layers=num_layers, fused=fused_layers, rng=np.random.default_rng(seed),
                          cell=cell)
    rng = np.random.default_rng(seed + 1)
    return model, rng.standard_normal((T, B, I)), rng.integers(0, O, (T, B))


def hvp_by_differences_of_bptt(model, x, targets, vs, eps=1e-5):
    """(g(theta + eps v) - g(theta - eps v)) / 2 eps with g the hand-derived BPTT gradient: the
    fused layers' VJPs (micrornn.bptt) on a fused copy of the model."""
    twin = SequenceModel(I, H, O, num_layers=model.rnn.num_layers, fused=True, cell=model.rnn.cell_kind)
    params, twin_params = model.parameters(), twin.parameters()
    grads = []
    for sign in (1, -1):
        for p, q, v in zip(params, twin_params, vs):
            q.data[...] = p.data + sign * eps * v
        grads.append([g.data for g in mr.grad(twin.loss(x, targets)[0], twin_params)])
    return [(a - b) / (2 * eps) for a, b in zip(*grads)]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("fused_layers", [False, True], ids=["unrolled", "fused"])
def test_sequence_loss_hvp_against_differences_of_bptt(cell, fused_layers):
    model, x, targets = sequence_problem(4, fused_layers, cell=cell)
    params = model.parameters()
    vs = [np.random.default_rng(9).standard_normal(p.shape) for p in params]
    value, hv = mr.hvp(lambda *ps: model.loss(x, targets)[0], params, vs)
    assert value.item() == pytest.approx(model.loss(x, targets)[0].item(), rel=1e-14)
    for name, got, want in zip([n for n, _ in model.named_parameters()], hv,
                               hvp_by_differences_of_bptt(model, x, targets, vs)):
        np.testing.assert_allclose(got.data, want, rtol=1e-5, atol=1e-7, err_msg=name)


def test_rnn_hvp_reference_is_the_analytic_bptt_of_micrornn_bptt():
    model, x, targets = sequence_problem(5, fused_layers=False)
    twin_grads = hvp_by_differences_of_bptt(model, x, targets, [np.zeros(p.shape) for p in model.parameters()])
    assert all(np.all(g == 0) for g in twin_grads)  # zero direction: zero difference
    analytic = bptt.loss_and_grads(model, x, targets)[1]
    engine = mr.grad(model.loss(x, targets)[0], model.parameters())
    for (name, _), g in zip(model.named_parameters(), engine):
        np.testing.assert_allclose(g.data, analytic[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fused_and_unrolled_hessians_agree(cell):
    hvps = []
    for fused_layers in (False, True):
        model, x, targets = sequence_problem(6, fused_layers, cell=cell)
        vs = [np.random.default_rng(7).standard_normal(p.shape) for p in model.parameters()]
        hvps.append(mr.hvp(lambda *ps: model.loss(x, targets)[0], model.parameters(), vs)[1])  # noqa: B023
    for a, b in zip(*hvps):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-10, atol=1e-12)


def test_rnn_loss_jvp_is_the_directional_derivative_of_bptt():
    model, x, targets = sequence_problem(8, fused_layers=False)
    params = model.parameters()
    vs = [np.random.default_rng(2).standard_normal(p.shape) for p in params]
    with mr.no_grad():  # forward mode needs no graph
        loss, slope = mr.jvp(lambda *ps: model.loss(x, targets)[0], params, vs)
    grads = bptt.loss_and_grads(model, x, targets)[1]
    expected = sum(float(np.sum(grads[n] * v)) for (n, _), v in zip(model.named_parameters(), vs))
    assert slope.item() == pytest.approx(expected, rel=1e-11)
    assert loss.item() == pytest.approx(bptt.loss_and_grads(model, x, targets)[0], rel=1e-12)


# ---- the recorded backward graph is BPTT, in time-step clusters ------------------------------

@pytest.mark.parametrize("fused_layers", [False, True], ids=["unrolled", "fused"])
def test_gradient_graph_nodes_carry_the_forward_step_scopes(fused_layers):
    model, x, targets = sequence_problem(3, fused_layers, num_layers=1)
    loss = model.loss(x, targets)[0]
    cell = model.rnn.cells[0]
    dU, dW = mr.grad(loss, [cell.U, cell.W], create_graph=True)
    forward = {id(n) for n in walk([loss])}
    backward = [n for n in walk([dU, dW]) if id(n) not in forward]
    steps = {n.scope.step for n in backward if isinstance(n.scope, StepScope)}
    assert steps - {None} == set(range(1, T + 1))  # the delta recursion runs through every step's cluster
    assert any(n.op_name == "matmul" and n.scope == StepScope(0, 2) for n in backward)


# ---- grad of grad, retained and released ------------------------------------------------------

def test_third_derivative_of_tanh():
    x = Tensor(np.linspace(-2, 2, 7), requires_grad=True)
    t = np.tanh(x.data)
    d1, = mr.grad(x.tanh().sum(), x, create_graph=True)
    d2, = mr.grad(d1.sum(), x, create_graph=True)
    d3, = mr.grad(d2.sum(), x)
    np.testing.assert_allclose(d1.data, 1 - t ** 2, rtol=1e-14)
    np.testing.assert_allclose(d2.data, -2 * t * (1 - t ** 2), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(d3.data, (6 * t ** 2 - 2) * (1 - t ** 2), rtol=1e-12, atol=1e-15)


def test_grad_twice_through_a_retained_graph():
    x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    y = (x * x * x).sum()
    g1, = mr.grad(y, x, retain_graph=True)
    g2, = mr.grad(y, x)  # the graph was kept by the first call
    np.testing.assert_allclose(g1.data, g2.data, rtol=0)
    np.testing.assert_allclose(g1.data, 3 * x.data ** 2, rtol=1e-15)


def test_released_graph_says_to_retain_it():
    x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    y = (x * x * x).sum()
    mr.grad(y, x)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        mr.grad(y, x)


def test_second_order_through_a_released_forward_graph_says_to_retain_it():
    x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    g, = mr.grad((x.tanh() * x).sum(), x, create_graph=True, retain_graph=False)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        mr.grad(g.sum(), x)
    x2 = Tensor(x.data.copy(), requires_grad=True)
    g2, = mr.grad((x2.tanh() * x2).sum(), x2, create_graph=True)  # retained by default
    h, = mr.grad(g2.sum(), x2)
    t = np.tanh(x.data)
    np.testing.assert_allclose(h.data, 2 * (1 - t ** 2) - 2 * x.data * t * (1 - t ** 2), rtol=1e-13)


def test_backward_then_create_graph_needs_the_retained_graph():
    x = Tensor(np.array([0.5]), requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        mr.grad(y, x, create_graph=True)


# ---- grad() itself --------------------------------------------------------------------------------

def test_grad_matches_backward_and_leaves_dot_grad_alone():
    model, x, targets = sequence_problem(11, fused_layers=False)
    grads = mr.grad(model.loss(x, targets)[0], model.parameters())
    assert all(p.grad is None for p in model.parameters())
    model.loss(x, targets)[0].backward()
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(g.data, p.grad)
        assert not g.requires_grad


def test_grad_of_several_outputs_with_grad_outputs_and_unused_input():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([3.0]), requires_grad=True)
    unused = Tensor(np.ones((2, 2)), requires_grad=True)
    ga, gb, gu = mr.grad([a * b, (a * a).sum()], [a, b, unused], grad_outputs=[np.array([1.0, -1.0]), None])
    np.testing.assert_allclose(ga.data, [3.0 + 2.0, -3.0 + 4.0], rtol=1e-15)
    np.testing.assert_allclose(gb.data, [1.0 - 2.0], rtol=1e-15)
    np.testing.assert_array_equal(gu.data, np.zeros((2, 2)))


def test_grad_with_respect_to_an_intermediate_tensor():
    x = Tensor(np.array([0.2, 0.4]), requires_grad=True)
    h = x.tanh()
    gh, gx = mr.grad((h * h).sum(), [h, x])
    np.testing.assert_allclose(gh.data, 2 * h.data, rtol=1e-15)
    np.testing.assert_allclose(gx.data, 2 * h.data * (1 - h.data ** 2), rtol=1e-15)


def test_grad_errors_say_what_to_do():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="requires_grad=True"):
        mr.grad((x * 2).sum(), Tensor(np.ones(3)))
    with pytest.raises(ValueError, match="grad_outputs"):
        mr.grad(x * 2, x)
    with pytest.raises(ValueError, match="shape"):
        mr.grad(x * 2, x, grad_outputs=[np.ones(2)])
    with pytest.raises(ValueError, match=r"micrornn\.grad\(loss, params, create_graph=True\)"):
        (x * 2).sum().backward(create_graph=True)
    with pytest.raises(ValueError, match="one-element"):
        mr.hvp(lambda a: a * 2, x, np.ones(3))
    with pytest.raises(RuntimeError, match="nested"):
        mr.jvp(lambda a: mr.jvp(lambda b: b, a, np.ones(3))[0], x, np.ones(3))


def test_draw_graph_fills_the_recorded_backward_and_names_hidden_gradients():
    from micrornn.viz import draw_graph
    from micrornn.viz.graph import BACKWARD_STYLE
    model, x, targets = sequence_problem(3, fused_layers=False, num_layers=1)
    loss = model.loss(x, targets)[0]
    grads = list(mr.grad(loss, model.parameters(), create_graph=True))
    fill = BACKWARD_STYLE["fillcolor"]
    lines = draw_graph(grads, names=model, forward=loss).source.splitlines()
    assert any("∂L/∂h2" in line and fill in line for line in lines)  # the backward, named after h_t
    assert not any("tanh" in line and fill in line for line in lines)  # forward ops keep their style
    assert fill not in draw_graph(grads, names=model).source  # without forward= nothing is filled
