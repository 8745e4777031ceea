"""Tests for micrornn.bptt: the hand-derived RNN forward/BPTT checked against finite differences."""

from types import SimpleNamespace

import numpy as np
import pytest

from micrornn.bptt import (
    loss_and_grads,
    rnn_layer_backward,
    rnn_layer_forward,
    softmax_cross_entropy,
)

from grad_helpers import central_differences

ATOL, RTOL = 1e-6, 1e-4  # the finite-difference step is central_differences' 1e-6


# ----------------------------------------------------------------------------- helpers

def assert_grad_close(analytic, numeric, name, atol=ATOL, rtol=RTOL):
    """Assert |a - n| <= atol + rtol * |n| elementwise, reporting the worst entry."""
    assert analytic.shape == numeric.shape, f"{name}: shape {analytic.shape} vs {numeric.shape}"
    excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    worst = np.unravel_index(np.argmax(excess), excess.shape) if excess.size else None
    assert excess.size == 0 or excess.max() <= 0, (
        f"{name}: worst at {worst}: analytic {analytic[worst]!r} vs numeric {numeric[worst]!r}")


def naive_forward(x, U, W, b, h0, nonlinearity, h_offset=None):
    """Step-by-step reference forward -> (hs, pres); h_offset (T, B, H) is added to each h_t."""
    T, B, _ = x.shape
    H = U.shape[0]
    h = np.zeros((B, H)) if h0 is None else h0
    hs, pres = [], []
    for t in range(T):
        pre = x[t] @ U.T + h @ W.T + (0 if b is None else b)
        h = np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)
        if h_offset is not None:
            h = h + h_offset[t]
        hs.append(h)
        pres.append(pre)
    return np.stack(hs), np.stack(pres)


def naive_loss(model, x, targets, h0=None, h_offsets=None):
    """Reference summed cross-entropy of a stand-in model, one step and one row at a time."""
    inp = x
    for l, cell in enumerate(model.rnn.cells):
        b = None if cell.b is None else cell.b.data
        inp, _ = naive_forward(inp, cell.U.data, cell.W.data, b, None if h0 is None else h0[l],
                               cell.nonlinearity, None if h_offsets is None else h_offsets[l])
    V, c = model.head.weight.data, model.head.bias
    total = 0.0
    for t in range(x.shape[0]):
        for i in range(x.shape[1]):
            o = V @ inp[t, i] + (0 if c is None else c.data)
            m = o.max()
            total += m + np.log(np.exp(o - m).sum()) - o[targets[t, i]]
    return total


def param(arr):
    """Stand-in for a Parameter: an object with .data."""
    return SimpleNamespace(data=arr)


def make_model(rng, I, H, O, nonlinearities, bias=True, scale=0.5):
    """Stand-in SequenceModel exposing only the attributes loss_and_grads relies on."""
    cells, in_size = [], I
    for nl in nonlinearities:
        cells.append(SimpleNamespace(
            U=param(rng.normal(0, scale, (H, in_size))), W=param(rng.normal(0, scale, (H, H))),
            b=param(rng.normal(0, scale, H)) if bias else None, nonlinearity=nl))
        in_size = H
    head = SimpleNamespace(weight=param(rng.normal(0, scale, (O, H))),
                           bias=param(rng.normal(0, scale, O)) if bias else None)
    return SimpleNamespace(rnn=SimpleNamespace(cells=cells, batch_first=False), head=head)


def min_abs_preactivation(model, x, h0):
    """Smallest |pre| over every layer, step and unit (relu must stay away from its kink)."""
    inp, smallest = x, np.inf
    for l, cell in enumerate(model.rnn.cells):
        b = None if cell.b is None else cell.b.data
        inp, pres = naive_forward(inp, cell.U.data, cell.W.data, b,
                                  None if h0 is None else h0[l], cell.nonlinearity)
        smallest = min(smallest, np.abs(pres).min())
    return smallest


def layer_problem(seed, T, B, I, H, nonlinearity, with_h0=True):
    """Random layer inputs; for relu, reseed until no pre-activation is within 1e-3 of 0."""
    for s in range(seed, seed + 1000):
        rng = np.random.default_rng(s)
        x, U, W = rng.normal(size=(T, B, I)), rng.normal(0, 0.6, (H, I)), rng.normal(0, 0.6, (H, H))
        b = rng.normal(size=H)
        h0 = rng.normal(size=(B, H)) if with_h0 else None
        _, pres = naive_forward(x, U, W, b, h0, nonlinearity)
        if nonlinearity == "tanh" or np.abs(pres).min() > 1e-3:
            return rng, x, U, W, b, h0
    raise AssertionError("no seed kept relu pre-activations away from 0")


# ----------------------------------------------------------------------------- one layer

@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("with_h0", [True, False])
def test_layer_forward_matches_naive_loop(nonlinearity, with_h0):
    rng, x, U, W, b, h0 = layer_problem(0, 5, 3, 4, 6, nonlinearity, with_h0)
    expected, _ = naive_forward(x, U, W, b, h0, nonlinearity)
    hs = rnn_layer_forward(x, U, W, b, h0, nonlinearity)
    assert hs.shape == (5, 3, 6)
    np.testing.assert_allclose(hs, expected, rtol=1e-12, atol=1e-12)
    no_bias, _ = naive_forward(x, U, W, None, h0, nonlinearity)
    np.testing.assert_allclose(rnn_layer_forward(x, U, W, None, h0, nonlinearity), no_bias,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("T", [1, 3, 7])
@pytest.mark.parametrize("B", [1, 4])
def test_layer_backward_matches_finite_differences(nonlinearity, T, B):
    I, H = 3, 5
    rng, x, U, W, b, h0 = layer_problem(10 * T + B, T, B, I, H, nonlinearity)
    probe = rng.normal(size=(T, B, H))  # loss = <probe, hs>, so dL/dhs = probe

    def loss():
        return float((probe * rnn_layer_forward(x, U, W, b, h0, nonlinearity)).sum())

    hs = rnn_layer_forward(x, U, W, b, h0, nonlinearity)
    dx, dU, dW, db, dh0 = rnn_layer_backward(probe, x, hs, h0, U, W, nonlinearity)
    for name, analytic, arr in [("dx", dx, x), ("dU", dU, U), ("dW", dW, W),
                                ("db", db, b), ("dh0", dh0, h0)]:
        assert_grad_close(analytic, central_differences(loss, arr), f"{nonlinearity} T={T} B={B} {name}")


def test_layer_backward_without_h0_uses_zero_state():
    _, x, U, W, b, _ = layer_problem(3, 4, 2, 3, 5, "tanh", with_h0=False)
    zeros = np.zeros((2, 5))
    probe = np.random.default_rng(1).normal(size=(4, 2, 5))
    hs = rnn_layer_forward(x, U, W, b, None)
    np.testing.assert_array_equal(hs, rnn_layer_forward(x, U, W, b, zeros))
    got = rnn_layer_backward(probe, x, hs, None, U, W)
    ref = rnn_layer_backward(probe, x, hs, zeros, U, W)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_layer_backward_return_dh_is_total_state_gradient(nonlinearity):
    T, B, I, H = 5, 3, 2, 4
    rng, x, U, W, b, h0 = layer_problem(7, T, B, I, H, nonlinearity)
    probe = rng.normal(size=(T, B, H))
    offset = np.zeros((T, B, H))

    def loss():
        return float((probe * naive_forward(x, U, W, b, h0, nonlinearity, offset)[0]).sum())

    hs = rnn_layer_forward(x, U, W, b, h0, nonlinearity)
    plain = rnn_layer_backward(probe, x, hs, h0, U, W, nonlinearity)
    *rest, dh = rnn_layer_backward(probe, x, hs, h0, U, W, nonlinearity, return_dh=True)
    assert len(plain) == 5
    for a, b_ in zip(plain, rest):
        np.testing.assert_array_equal(a, b_)
    assert_grad_close(dh, central_differences(loss, offset), "dh")


# ----------------------------------------------------------------------------- model level

@pytest.mark.parametrize("nonlinearities", [["tanh"], ["tanh", "relu", "tanh"]])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_h0", [True, False])
def test_loss_and_grads_matches_finite_differences(nonlinearities, bias, with_h0):
    T, B, I, H, O, L = 4, 3, 3, 5, 6, len(nonlinearities)
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        model = make_model(rng, I, H, O, nonlinearities, bias)
        x = rng.normal(size=(T, B, I))
        targets = rng.integers(0, O, size=(T, B))
        h0 = rng.normal(size=(L, B, H)) if with_h0 else None
        if min_abs_preactivation(model, x, h0) > 1e-3:
            break

    loss, grads = loss_and_grads(model, x, targets, h0)
    assert isinstance(loss, float)
    assert loss == pytest.approx(naive_loss(model, x, targets, h0), rel=1e-12)

    expected_names = [f"rnn.cells.{l}.{p}" for l in range(L) for p in ("UWb" if bias else "UW")]
    expected_names += ["head.weight", "head.bias"] if bias else ["head.weight"]
    assert list(grads) == expected_names

    arrays = {f"rnn.cells.{l}.{p}": getattr(cell, p).data
              for l, cell in enumerate(model.rnn.cells)
              for p in "UWb" if getattr(cell, p) is not None}
    arrays["head.weight"] = model.head.weight.data
    if bias:
        arrays["head.bias"] = model.head.bias.data
    for name, arr in arrays.items():
        numeric = central_differences(lambda: naive_loss(model, x, targets, h0), arr)
        assert_grad_close(grads[name], numeric, name)


def test_hidden_grads_match_finite_differences_of_state_offsets():
    T, B, I, H, O = 5, 2, 3, 4, 5
    rng = np.random.default_rng(4)
    model = make_model(rng, I, H, O, ["tanh", "tanh"])
    x, targets = rng.normal(size=(T, B, I)), rng.integers(0, O, size=(T, B))
    h0 = rng.normal(size=(2, B, H))
    loss, grads, hidden = loss_and_grads(model, x, targets, h0, return_hidden_grads=True)
    assert len(hidden) == 2 and all(g.shape == (T, B, H) for g in hidden)
    assert loss == pytest.approx(loss_and_grads(model, x, targets, h0)[0], rel=1e-15)
    offsets = [np.zeros((T, B, H)) for _ in range(2)]
    for l in range(2):
        numeric = central_differences(lambda: naive_loss(model, x, targets, h0, offsets), offsets[l])
        assert_grad_close(hidden[l], numeric, f"hidden grads layer {l}")


def test_ignores_batch_first_flag_input_is_time_major():
    rng = np.random.default_rng(5)
    model = make_model(rng, 2, 3, 4, ["tanh"])
    x, targets = rng.normal(size=(3, 2, 2)), rng.integers(0, 4, size=(3, 2))
    loss, _ = loss_and_grads(model, x, targets)
    model.rnn.batch_first = True
    assert loss_and_grads(model, x, targets)[0] == loss


# ----------------------------------------------------------------------------- numerics

def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]])
    loss, dlogits = softmax_cross_entropy(logits, np.array([1, 2]))
    expected = 2000.0 + (1.0 + np.log1p(np.exp(-1.0)))
    assert np.isfinite(loss) and loss == pytest.approx(expected, rel=1e-12)
    soft = np.exp(-np.log1p(np.exp(-1.0)))  # softmax mass on the 1000 logit of row 2
    np.testing.assert_allclose(dlogits, [[1, -1, 0], [0, soft, -soft]], atol=1e-12)


def test_model_with_logits_around_1000_gives_finite_results():
    rng = np.random.default_rng(6)
    model = make_model(rng, 3, 4, 5, ["tanh", "tanh"], scale=3.0)
    model.head.weight.data *= 1000 / 3.0
    x, targets = rng.normal(size=(6, 2, 3)), rng.integers(0, 5, size=(6, 2))
    loss, grads, hidden = loss_and_grads(model, x, targets, return_hidden_grads=True)
    assert np.isfinite(loss) and loss > 100
    assert all(np.all(np.isfinite(g)) for g in list(grads.values()) + hidden)


def test_float32_stays_float32():
    rng = np.random.default_rng(7)
    model = make_model(rng, 3, 4, 5, ["tanh", "relu"])
    for cell in model.rnn.cells:
        for p in (cell.U, cell.W, cell.b):
            p.data = p.data.astype(np.float32)
    model.head.weight.data = model.head.weight.data.astype(np.float32)
    model.head.bias.data = model.head.bias.data.astype(np.float32)
    x = rng.normal(size=(4, 2, 3)).astype(np.float32)
    targets = rng.integers(0, 5, size=(4, 2))
    h0 = np.zeros((2, 2, 4), dtype=np.float32)
    loss, grads, hidden = loss_and_grads(model, x, targets, h0, return_hidden_grads=True)
    assert isinstance(loss, float)
    assert all(g.dtype == np.float32 for g in list(grads.values()) + hidden)

    cell = model.rnn.cells[0]
    hs = rnn_layer_forward(x, cell.U.data, cell.W.data, cell.b.data, None)
    assert hs.dtype == np.float32
    out = rnn_layer_backward(np.ones_like(hs), x, hs, h0[0], cell.U.data, cell.W.data,
                             return_dh=True)
    assert all(a.dtype == np.float32 for a in out)
    ref = loss_and_grads(_as_float64(model), x.astype(np.float64), targets)[1]
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref[name], rtol=1e-3, atol=1e-4)


def _as_float64(model):
    """Copy of a stand-in model with float64 parameters."""
    f64 = lambda p: None if p is None else param(p.data.astype(np.float64))  # noqa: E731
    cells = [SimpleNamespace(U=f64(c.U), W=f64(c.W), b=f64(c.b), nonlinearity=c.nonlinearity)
             for c in model.rnn.cells]
    head = SimpleNamespace(weight=f64(model.head.weight), bias=f64(model.head.bias))
    return SimpleNamespace(rnn=SimpleNamespace(cells=cells), head=head)


# ----------------------------------------------------------------------------- errors

def _layer_args():
    rng = np.random.default_rng(8)
    return dict(x=rng.normal(size=(3, 2, 4)), U=rng.normal(size=(5, 4)),
                W=rng.normal(size=(5, 5)), b=rng.normal(size=5), h0=rng.normal(size=(2, 5)))


@pytest.mark.parametrize("name, bad, message", [
    ("x", np.zeros((3, 4)), r"x: expected shape \(T, B, I=4\), got \(3, 4\)"),
    ("x", np.zeros((3, 2, 6)), r"x: expected shape \(3, 2, 4\), got \(3, 2, 6\)"),
    ("U", np.zeros(5), r"U: expected shape \(H, I\), got \(5,\)"),
    ("W", np.zeros((5, 4)), r"W: expected shape \(5, 5\), got \(5, 4\)"),
    ("b", np.zeros(4), r"b: expected shape \(5,\), got \(4,\)"),
    ("h0", np.zeros((3, 5)), r"h0: expected shape \(2, 5\), got \(3, 5\)"),
])
def test_layer_forward_shape_errors_name_argument_and_shapes(name, bad, message):
    args = _layer_args()
    args[name] = bad
    with pytest.raises(ValueError, match=message):
        rnn_layer_forward(**args)


def test_layer_backward_shape_errors():
    a = _layer_args()
    hs = rnn_layer_forward(**a)
    with pytest.raises(ValueError, match=r"dhs: expected shape \(3, 2, 5\), got \(3, 2, 4\)"):
        rnn_layer_backward(np.zeros((3, 2, 4)), a["x"], hs, a["h0"], a["U"], a["W"])
    with pytest.raises(ValueError, match=r"hs: expected shape \(3, 2, 5\), got \(2, 2, 5\)"):
        rnn_layer_backward(hs, a["x"], hs[:2], a["h0"], a["U"], a["W"])


def test_unknown_nonlinearity_raises():
    with pytest.raises(ValueError, match="nonlinearity.*'sigmoid'"):
        rnn_layer_forward(**_layer_args(), nonlinearity="sigmoid")
    a = _layer_args()
    hs = rnn_layer_forward(**a)
    with pytest.raises(ValueError, match="nonlinearity.*'gelu'"):
        rnn_layer_backward(hs, a["x"], hs, a["h0"], a["U"], a["W"], nonlinearity="gelu")
    model = make_model(np.random.default_rng(0), 4, 5, 3, ["tanh", "elu"])
    with pytest.raises(ValueError, match="nonlinearity.*'elu'"):
        loss_and_grads(model, a["x"], np.zeros((3, 2), dtype=int))


def test_model_level_errors_name_argument_and_shapes():
    rng = np.random.default_rng(9)
    model = make_model(rng, 4, 5, 3, ["tanh", "tanh"])
    x, targets = rng.normal(size=(3, 2, 4)), rng.integers(0, 3, size=(3, 2))
    with pytest.raises(ValueError, match=r"x: expected shape \(T, B, I\), got \(2, 4\)"):
        loss_and_grads(model, x[0], targets)
    with pytest.raises(ValueError, match=r"targets: expected shape \(3, 2\), got \(2, 3\)"):
        loss_and_grads(model, x, targets.T)
    with pytest.raises(ValueError, match=r"targets: expected an integer array"):
        loss_and_grads(model, x, targets.astype(float))
    with pytest.raises(ValueError, match=r"targets: expected class indices in \[0, 3\)"):
        loss_and_grads(model, x, targets + 3)
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, 2, 5\), got \(1, 2, 5\)"):
        loss_and_grads(model, x, targets, np.zeros((1, 2, 5)))
    with pytest.raises(ValueError, match=r"x: expected shape \(3, 2, 4\), got \(3, 2, 6\)"):
        loss_and_grads(model, np.zeros((3, 2, 6)), targets)
    model.rnn.cells[1].U.data = np.zeros((5, 6))
    with pytest.raises(ValueError, match=r"rnn.cells.1.U: expected shape \(H, 5\), got \(5, 6\)"):
        loss_and_grads(model, x, targets)
    model.rnn.cells[1].U.data = np.zeros((5, 5))
    model.rnn.cells[1].W.data = np.zeros((5, 4))
    with pytest.raises(ValueError, match=r"rnn.cells.1.W: expected shape \(5, 5\), got \(5, 4\)"):
        loss_and_grads(model, x, targets)
    model.rnn.cells[1].W.data = np.zeros((5, 5))
    empty = SimpleNamespace(rnn=SimpleNamespace(cells=[]), head=model.head)
    with pytest.raises(ValueError, match=r"model.rnn.cells: expected at least one cell"):
        loss_and_grads(empty, x, targets)
    model.head.weight.data = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"head.weight: expected shape \(O, 5\), got \(3, 4\)"):
        loss_and_grads(model, x, targets)
