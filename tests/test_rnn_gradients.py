"""RNN gradients four ways: unrolled autograd, analytic BPTT (micrornn.bptt), the fused primitive,
and central finite differences; plus the two-path example and a scalar-Value cell.

Tolerances (float64 throughout), all in the |a - r| <= atol + rtol * scale form:
  * unrolled autograd vs analytic: |a - r| <= 1e-10 * max|r| + 1e-12, per parameter
    (max|r| is the largest entry of that parameter's analytic gradient);
  * fused vs unrolled: |f - u| <= 1e-13 * max|u| + 1e-15 (float64 round-off: both sum the same
    terms in a different order, a few hundred ulps of the largest entry at most);
  * either route vs central differences (eps 1e-6): |g - n| <= 1e-5 + 1e-3 * |n|, elementwise;
  * scalar Value engine vs tensor engine: |s - t| <= 1e-10 * max|t| + 1e-12.
"""
import itertools

import numpy as np
import pytest

import micrornn
from micrornn import Tensor, Value, bptt
from micrornn.bptt import fused as fused_ops
from micrornn.engine import ops
from micrornn.nn import functional as F
from micrornn.check.finite_differences import gradcheck, numerical_grad
from micrornn.nn import SequenceModel
from micrornn.engine.tensor import apply
from micrornn.viz.flow import walk

I, H, O = 3, 5, 4          # grid sizes: input, hidden and output all different
TINY = dict(I=2, H=3, O=4)  # finite-difference sizes (O(params) forward passes each)


# ----------------------------------------------------------------------------- helpers

def assert_agree(a, r, name, rtol, atol):
    """|a - r| <= rtol * max|r| + atol for every element, reporting the worst."""
    a, r = np.asarray(a), np.asarray(r)
    assert a.shape == r.shape, f"{name}: shape {a.shape} vs {r.shape}"
    err = float(np.max(np.abs(a - r))) if r.size else 0.0
    bound = rtol * (float(np.max(np.abs(r))) if r.size else 0.0) + atol
    assert err <= bound, f"{name}: max |diff| {err:.3e} > {bound:.3e} (max|ref| {np.max(np.abs(r)):.3e})"


def assert_close_to_numeric(g, n, name, atol=1e-5, rtol=1e-3):
    """|g - n| <= atol + rtol |n| elementwise (the contract's finite-difference tolerance)."""
    excess = np.abs(g - n) - (atol + rtol * np.abs(n))
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 0, f"{name}: element {worst}: gradient {g[worst]!r} vs numeric {n[worst]!r}"


def pre_activations(model, x, h0):
    """Every layer's pre-activations (NumPy, layers x T x B x H), time-major x."""
    pres, inp = [], x
    for l, cell in enumerate(model.rnn.cells):
        h = np.zeros((x.shape[1], cell.hidden_size)) if h0 is None else h0[l]
        out = []
        for t in range(inp.shape[0]):
            pre = inp[t] @ cell.U.data.T + h @ cell.W.data.T + cell.b.data
            pres.append(pre)
            h = np.tanh(pre) if cell.nonlinearity == "tanh" else np.maximum(pre, 0)
            out.append(h)
        inp = np.stack(out)
    return np.stack(pres).reshape(len(model.rnn.cells), *inp.shape)


def problem(layers, T, B, nonlinearity, with_h0, batch_first=False, fused=False, seed=0,
            I=I, H=H, O=O, margin=None):
    """A float64 model and time-major data. With ``margin``, reseed until every |pre-activation| is
    above it (finite differences must not straddle relu's kink) and, for relu, at least a quarter of
    each layer's units are on (so no layer is dead and every gradient is exercised)."""
    for s in range(seed, seed + 500):
        rng = np.random.default_rng(s)
        model = SequenceModel(I, H, O, num_layers=layers, nonlinearity=nonlinearity, fused=fused,
                              batch_first=batch_first, rng=rng)
        x = rng.standard_normal((T, B, I))
        targets = rng.integers(0, O, size=(T, B))
        h0 = rng.uniform(-1, 1, size=(layers, B, H)) if with_h0 else None
        if margin is None:
            return model, x, targets, h0
        pres = pre_activations(model, x, h0)
        alive = nonlinearity == "tanh" or min((p > 0).mean() for p in pres) >= 0.25
        if np.abs(pres).min() > margin and alive:
            return model, x, targets, h0
    raise AssertionError("no seed kept every pre-activation away from 0")


def engine_loss(model, x, targets, h0):
    """The summed loss through the model's graph; x, targets time-major (rearranged if batch_first)."""
    if model.rnn.batch_first:
        x, targets = x.transpose(1, 0, 2), targets.T
    return model.loss(Tensor(x), targets, None if h0 is None else Tensor(h0), reduction="sum")[0]


def engine_grads(model, x, targets, h0, unused=()):
    """(loss, {name: grad}) by backward through the model's graph; every parameter gets a gradient
    (as in the fused and analytic routes and torch), and those in ``unused`` exactly zeros."""
    model.zero_grad()
    loss = engine_loss(model, x, targets, h0)
    loss.backward()
    grads = {}
    for n, p in model.named_parameters():
        assert p.grad is not None, f"{n}: no gradient (grad None)"
        assert n not in unused or not p.grad.any(), f"{n}: expected a zero gradient, got {p.grad!r}"
        grads[n] = p.grad.copy()
    model.zero_grad()
    return loss.item(), grads


def fused_twin(model):
    """The same architecture and weights, running every layer through the fused primitive."""
    cfg = dict(model.config, fused=True)
    del cfg["dtype"]
    twin = SequenceModel(**cfg, rng=0)
    twin.load_state_dict(model.state_dict())
    return twin


# ----------------------------------------------------------------------------- the grid

GRID = list(itertools.product([1, 2, 3], [1, 2, 7, 40], [1, 5], ["tanh", "relu"], [False, True], [False, True]))


def _id(case):
    layers, T, B, nl, with_h0, bf = case
    return f"L{layers}-T{T}-B{B}-{nl}-{'h0' if with_h0 else 'noh0'}-{'bf' if bf else 'tm'}"


@pytest.mark.parametrize("case", GRID, ids=[_id(c) for c in GRID])
def test_unrolled_matches_analytic_and_fused_matches_unrolled(case):
    layers, T, B, nl, with_h0, bf = case
    model, x, targets, h0 = problem(layers, T, B, nl, with_h0, bf, seed=layers * 1000 + T * 10 + B)
    # with one step and a zero initial state, W multiplies only zeros: every route reports a zero
    # gradient for it (not None: the same model gives the same gradients whichever path runs it)
    unused = [f"rnn.cells.{l}.W" for l in range(layers)] if T == 1 and not with_h0 else []
    loss, auto = engine_grads(model, x, targets, h0, unused)
    ref_loss, analytic = bptt.loss_and_grads(model, x, targets, h0)
    assert list(auto) == list(analytic) == [n for n, _ in model.named_parameters()]
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss) + 1e-12
    for name in auto:
        assert_agree(auto[name], analytic[name], f"{name} autograd vs analytic", rtol=1e-10, atol=1e-12)

    twin = fused_twin(model)
    fused_loss, fused = engine_grads(twin, x, targets, h0)
    assert abs(fused_loss - loss) <= 1e-13 * abs(loss) + 1e-15
    for name in auto:
        assert_agree(fused[name], auto[name], f"{name} fused vs unrolled", rtol=1e-13, atol=1e-15)


# every axis value of the grid appears at least once (tiny sizes: finite differences are costly)
FD_SUBSET = [
    (1, 1, 1, "tanh", False, False),
    (2, 2, 5, "relu", True, True),
    (3, 7, 1, "tanh", True, True),
    (1, 40, 5, "relu", False, False),
    (3, 40, 1, "relu", True, False),
    (2, 7, 5, "tanh", False, True),
]


@pytest.mark.parametrize("case", FD_SUBSET, ids=[_id(c) for c in FD_SUBSET])
def test_both_routes_match_central_differences(case):
    layers, T, B, nl, with_h0, bf = case
    model, x, targets, h0 = problem(layers, T, B, nl, with_h0, bf, seed=7, margin=1e-3, **TINY)
    unused = [f"rnn.cells.{l}.W" for l in range(layers)] if T == 1 and not with_h0 else []
    _, auto = engine_grads(model, x, targets, h0, unused)
    _, analytic = bptt.loss_and_grads(model, x, targets, h0)
    named = model.named_parameters()
    numeric = numerical_grad(lambda *_: engine_loss(model, x, targets, h0), [p for _, p in named], eps=1e-6)
    for (name, _), n in zip(named, numeric):
        assert np.abs(n).max() > 0 or name in unused, f"{name}: numeric gradient is all zero"
        assert_close_to_numeric(auto[name], n, f"{name} autograd vs numeric")
        assert_close_to_numeric(analytic[name], n, f"{name} analytic vs numeric")


def test_fd_subset_covers_every_grid_axis():
    for axis in range(6):
        assert {c[axis] for c in FD_SUBSET} == {c[axis] for c in GRID}, f"axis {axis} not covered"


def test_integer_index_inputs_match_analytic_with_one_hot():
    model, _, targets, h0 = problem(2, 7, 5, "tanh", True, seed=3)
    idx = np.random.default_rng(3).integers(0, I, size=(7, 5))
    model.zero_grad()
    engine_loss_value = model.loss(Tensor(idx), targets, Tensor(h0))[0]
    engine_loss_value.backward()
    ref_loss, analytic = bptt.loss_and_grads(model, np.eye(I)[idx], targets, h0)
    assert abs(engine_loss_value.item() - ref_loss) <= 1e-12 * abs(ref_loss)
    for name, p in model.named_parameters():
        assert_agree(p.grad, analytic[name], name, rtol=1e-10, atol=1e-12)


def test_a_wrong_analytic_gradient_is_caught():
    """The agreement check can fail: perturb one analytic entry by 1e-8 relative and it must."""
    model, x, targets, h0 = problem(2, 7, 5, "tanh", True)
    _, auto = engine_grads(model, x, targets, h0)
    _, analytic = bptt.loss_and_grads(model, x, targets, h0)
    bad = analytic["rnn.cells.0.W"].copy()
    bad[1, 2] += 1e-8 * np.abs(bad).max()
    with pytest.raises(AssertionError, match="rnn.cells.0.W"):
        assert_agree(auto["rnn.cells.0.W"], bad, "rnn.cells.0.W", rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- the fused primitive

@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_layer_primitive_gradients(nonlinearity):
    # gradient-tested: rnn_layer
    for seed in range(100):  # relu: keep pre-activations away from the kink
        rng = np.random.default_rng(seed)
        x, U, W = rng.standard_normal((4, 3, 2)), rng.normal(0, 0.7, (5, 2)), rng.normal(0, 0.7, (5, 5))
        b, h0 = rng.standard_normal(5), rng.uniform(-1, 1, (3, 5))
        pres, h = [], h0
        for t in range(4):
            pres.append(x[t] @ U.T + h @ W.T + b)
            h = np.tanh(pres[-1]) if nonlinearity == "tanh" else np.maximum(pres[-1], 0)
        if np.abs(pres).min() > 1e-3:
            break
    inputs = [Tensor(a, requires_grad=True) for a in (x, U, W, b, h0)]
    layer = lambda *ts: apply(fused_ops.RNN_LAYER, *ts, nonlinearity=nonlinearity)  # noqa: E731
    assert gradcheck(layer, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)

    # and against the unrolled graph of the same layer, for a random upstream gradient
    g = np.random.default_rng(1).standard_normal((4, 3, 5))
    layer(*inputs).backward(g)
    fused = [t.grad.copy() for t in inputs]
    for t in inputs:
        t.grad = None
    xt, Ut, Wt, bt, h = inputs
    states = []
    for t in range(4):
        h = getattr(xt[t] @ Ut.T + h @ Wt.T + bt, nonlinearity)()
        states.append(h)
    micrornn.stack(states).backward(g)
    for name, f, t in zip("x U W b h0".split(), fused, inputs):
        assert_agree(f, t.grad, f"rnn_layer d{name}", rtol=1e-13, atol=1e-15)


def test_rnn_layer_gradcheck_can_fail():
    """A deliberately wrong VJP (dW scaled by 1.01) must be caught by the same check."""
    prim = ops.Primitive("rnn_layer_wrong", fused_ops.RNN_LAYER.forward,
                         lambda g, saved, needs: tuple(d * 1.01 if i == 2 else d
                                                       for i, d in enumerate(fused_ops.RNN_LAYER.vjp(g, saved, needs))))
    rng = np.random.default_rng(0)
    inputs = [Tensor(rng.standard_normal(s) * 0.5, requires_grad=True) for s in [(3, 2, 2), (4, 2), (4, 4), (4,), (2, 4)]]
    assert not gradcheck(lambda *ts: apply(prim, *ts, nonlinearity="tanh"), inputs, raise_exception=False)


# ----------------------------------------------------------------------------- the two-path example

def test_two_path_example_engine_gradient_at_h1_is_the_sum_of_both_paths():
    """dL/dh_1 = V^T (softmax(o_1) - y_1) [from L_1] + W^T ((1 - h_2^2) * V^T (softmax(o_2) - y_2)) [via h_2]."""
    Ii, Hh, Oo = 3, 4, 5
    model = SequenceModel(Ii, Hh, Oo, rng=11)
    cell, head = model.rnn.cells[0], model.head
    U, W, b, V, c = cell.U.data, cell.W.data, cell.b.data, head.weight.data, head.bias.data
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((2, 1, Ii)), np.array([[1], [3]])

    # by hand, vectors (batch of one)
    softmax = lambda o: np.exp(o - o.max()) / np.exp(o - o.max()).sum()  # noqa: E731
    h1 = np.tanh(U @ x[0, 0] + b)
    h2 = np.tanh(U @ x[1, 0] + W @ h1 + b)
    p1, p2 = softmax(V @ h1 + c), softmax(V @ h2 + c)
    path1 = V.T @ (p1 - np.eye(Oo)[1])
    path2 = W.T @ ((1 - h2 ** 2) * (V.T @ (p2 - np.eye(Oo)[3])))

    # the engine: retain_grad on the h_1 node
    h1_t = cell(Tensor(x[0]), Tensor(np.zeros((1, Hh)))).retain_grad()
    h2_t = cell(Tensor(x[1]), h1_t)
    loss = (F.cross_entropy(head(h1_t), y[0], reduction="sum")
            + F.cross_entropy(head(h2_t), y[1], reduction="sum"))
    loss.backward()
    engine = h1_t.grad[0]
    np.testing.assert_allclose(h1_t.data[0], h1, rtol=0, atol=1e-15)

    # the analytic route's total dL/dh_1, and the unrolled model's own h_1 node
    ref_loss, _, hidden = bptt.loss_and_grads(model, x, y, return_hidden_grads=True)
    assert abs(ref_loss - loss.item()) <= 1e-14 * ref_loss

    both = path1 + path2
    assert_agree(engine, both, "engine dL/dh_1 vs path 1 + path 2", rtol=1e-12, atol=1e-15)
    assert_agree(hidden[0][0, 0], both, "analytic dL/dh_1 vs path 1 + path 2", rtol=1e-12, atol=1e-15)
    # ... and neither path alone: each one is a sizeable part of the total
    assert np.max(np.abs(engine - path1)) > 1e-3 and np.max(np.abs(engine - path2)) > 1e-3


def test_two_path_example_through_the_unrolled_model_graph():
    """The same through SequenceModel: find the h1 node in the unrolled graph and retain its grad."""
    model = SequenceModel(3, 4, 5, rng=11)
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((2, 1, 3)), np.array([[1], [3]])
    logits, _ = model(Tensor(x))
    h1 = [n for n in walk([logits]) if n.name == "h1"]
    assert len(h1) == 1
    h1[0].retain_grad()
    F.cross_entropy(logits, y, reduction="sum").backward()
    _, _, hidden = bptt.loss_and_grads(model, x, y, return_hidden_grads=True)
    assert_agree(h1[0].grad, hidden[0][0], "unrolled h1 grad vs analytic", rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- scalar Value engine

def _scalar_loss(U, W, b, V, c, x, h0, targets, nonlinearity):
    """Summed cross-entropy of a one-layer RNN written entirely with scalar Values."""
    total, h = Value(0.0), h0
    for t in range(len(x)):
        h = [[getattr(sum((U[j][k] * x[t][n][k] for k in range(len(x[t][n]))), Value(0.0))
                      + sum((W[j][k] * h[n][k] for k in range(len(W))), Value(0.0)) + b[j], nonlinearity)()
              for j in range(len(W))] for n in range(len(x[t]))]
        for n in range(len(x[t])):
            o = [sum((V[m][j] * h[n][j] for j in range(len(W))), Value(0.0)) + c[m] for m in range(len(V))]
            top = max(v.data for v in o)  # a constant shift: log-sum-exp stays finite
            lse = sum(((v - top).exp() for v in o), Value(0.0)).log() + top
            total = total + lse - o[targets[t][n]]
    return total


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_scalar_value_cell_matches_tensor_engine(nonlinearity):
    Ii, Hh, Oo, T, B = 2, 4, 3, 5, 2
    for seed in range(100):
        model, x, targets, h0 = problem(1, T, B, nonlinearity, True, seed=seed, I=Ii, H=Hh, O=Oo)
        if np.abs(pre_activations(model, x, h0)).min() > 1e-6:
            break
    cell, head = model.rnn.cells[0], model.head
    lift = lambda a: [lift(r) for r in a] if np.ndim(a) else Value(float(a))  # noqa: E731
    U, W, b, V, c = (lift(p.data) for p in (cell.U, cell.W, cell.b, head.weight, head.bias))
    loss = _scalar_loss(U, W, b, V, c, x.tolist(), lift(h0[0]), targets.tolist(), nonlinearity)
    loss.backward()

    tensor_loss, grads = engine_grads(model, x, targets, h0)
    assert abs(loss.data - tensor_loss) <= 1e-12 * abs(tensor_loss)
    grad_of = lambda vs: np.array([grad_of(v) for v in vs]) if isinstance(vs, list) else vs.grad  # noqa: E731
    for name, vs in zip(["rnn.cells.0.U", "rnn.cells.0.W", "rnn.cells.0.b", "head.weight", "head.bias"],
                        (U, W, b, V, c)):
        assert_agree(grad_of(vs), grads[name], f"{name} scalar vs tensor", rtol=1e-10, atol=1e-12)
