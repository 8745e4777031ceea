"""The hand-derived LSTM and GRU layers (micrornn.bptt.lstm / gru) and their fused primitives,
checked against naive step loops and central differences in float64."""
# gradient-tested: lstm_layer, gru_layer

import numpy as np
import pytest

from micrornn.bptt.gru import gru_layer_backward, gru_layer_forward
from micrornn.bptt.lstm import lstm_layer_backward, lstm_layer_forward
from micrornn.bptt.fused import GRU_LAYER, LSTM_LAYER
from micrornn.check.finite_differences import gradcheck
from micrornn.engine.tensor import Tensor, apply

from grad_helpers import central_differences

ATOL, RTOL = 1e-6, 1e-4  # the finite-difference step is central_differences' 1e-6


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def naive_lstm(x, U, W, b, h0, c0):
    """PyTorch's LSTM equations one step at a time -> (hs, cs)."""
    H = W.shape[1]
    h = np.zeros((x.shape[1], H)) if h0 is None else h0
    c = np.zeros((x.shape[1], H)) if c0 is None else c0
    hs, cs = [], []
    for x_t in x:
        a = x_t @ U.T + h @ W.T + (0 if b is None else b)
        i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


def naive_gru(x, U, W, b, b_hn, h0):
    """PyTorch's GRU equations one step at a time -> hs."""
    H = W.shape[1]
    h = np.zeros((x.shape[1], H)) if h0 is None else h0
    hs = []
    for x_t in x:
        ax = x_t @ U.T + (0 if b is None else b)
        ah = h @ W.T
        r, z = sigmoid(ax[:, :H] + ah[:, :H]), sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
        n = np.tanh(ax[:, 2 * H:] + r * (ah[:, 2 * H:] + (0 if b_hn is None else b_hn)))
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs)


def assert_close(analytic, numeric_grad, name):
    """|a - n| <= ATOL + RTOL |n| everywhere, naming the worst entry."""
    assert analytic.shape == numeric_grad.shape, name
    excess = np.abs(analytic - numeric_grad) - (ATOL + RTOL * np.abs(numeric_grad))
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 0, f"{name} at {worst}: {analytic[worst]!r} vs numeric {numeric_grad[worst]!r}"


def problem(kind, T, B, I=3, H=4, seed=0, with_h0=True):
    """Random float64 layer arguments for kind 'lstm' (x, U, W, b, h0, c0) or 'gru' (x, U, W, b, b_hn, h0)."""
    rng = np.random.default_rng(seed)
    G = 4 if kind == "lstm" else 3
    x = rng.normal(size=(T, B, I))
    U, W, b = rng.normal(0, 0.6, (G * H, I)), rng.normal(0, 0.6, (G * H, H)), rng.normal(0, 0.5, G * H)
    h0 = rng.normal(0, 0.5, (B, H)) if with_h0 else None
    last = rng.normal(0, 0.5, (B, H)) if with_h0 else None
    if kind == "gru":
        return rng, (x, U, W, b, rng.normal(0, 0.5, H), h0)
    return rng, (x, U, W, b, h0, last)


# ----------------------------------------------------------------------------- forward

@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_forward_matches_naive_loop(with_h0, bias):
    _, (x, U, W, b, h0, c0) = problem("lstm", 6, 3, with_h0=with_h0)
    b = b if bias else None
    hs, cs, gates = lstm_layer_forward(x, U, W, b, h0, c0)
    want_h, want_c = naive_lstm(x, U, W, b, h0, c0)
    np.testing.assert_allclose(hs, want_h, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(cs, want_c, rtol=1e-13, atol=1e-14)
    assert gates.shape == (6, 3, 16) and np.all((gates[..., :8] > 0) & (gates[..., :8] < 1))


@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_forward_matches_naive_loop(with_h0, bias):
    _, (x, U, W, b, b_hn, h0) = problem("gru", 6, 3, with_h0=with_h0)
    b, b_hn = (b, b_hn) if bias else (None, None)
    hs, gates, hns = gru_layer_forward(x, U, W, b, b_hn, h0)
    np.testing.assert_allclose(hs, naive_gru(x, U, W, b, b_hn, h0), rtol=1e-13, atol=1e-14)
    assert gates.shape == (6, 3, 12) and hns.shape == (6, 3, 4)


def test_large_preactivations_stay_finite():
    _, (x, U, W, b, h0, c0) = problem("lstm", 3, 2)
    hs, cs, _ = lstm_layer_forward(x * 1e3, U, W, b, h0, c0)
    assert np.all(np.isfinite(hs)) and np.all(np.abs(hs) <= 1)


# ----------------------------------------------------------------------------- backward vs finite differences

@pytest.mark.parametrize("T", [1, 2, 7])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("with_h0", [True, False])
def test_lstm_backward_matches_finite_differences(T, B, with_h0):
    rng, (x, U, W, b, h0, c0) = problem("lstm", T, B, seed=T * 10 + B, with_h0=with_h0)
    probe_h, probe_c = rng.normal(size=(T, B, 4)), rng.normal(size=(T, B, 4))

    def loss():  # dL/dhs = probe_h, dL/dcs = probe_c
        hs, cs, _ = lstm_layer_forward(x, U, W, b, h0, c0)
        return np.sum(hs * probe_h) + np.sum(cs * probe_c)

    hs, cs, gates = lstm_layer_forward(x, U, W, b, h0, c0)
    grads = lstm_layer_backward(probe_h, probe_c, x, hs, cs, gates, h0, c0, U, W)
    wrt = {"x": x, "U": U, "W": W, "b": b}
    if with_h0:
        wrt.update(h0=h0, c0=c0)
    for (name, arr), g in zip(wrt.items(), grads):
        assert_close(g, central_differences(loss, arr), name)
    if not with_h0:  # dL/dh0 and dL/dc0 still come back (of the zero state)
        assert grads[4].shape == grads[5].shape == (B, 4)


@pytest.mark.parametrize("T", [1, 2, 7])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("with_h0", [True, False])
def test_gru_backward_matches_finite_differences(T, B, with_h0):
    rng, (x, U, W, b, b_hn, h0) = problem("gru", T, B, seed=T * 10 + B, with_h0=with_h0)
    probe = rng.normal(size=(T, B, 4))

    def loss():
        return np.sum(gru_layer_forward(x, U, W, b, b_hn, h0)[0] * probe)

    hs, gates, hns = gru_layer_forward(x, U, W, b, b_hn, h0)
    grads = gru_layer_backward(probe, x, hs, gates, hns, h0, U, W)
    wrt = {"x": x, "U": U, "W": W, "b": b, "b_hn": b_hn}
    if with_h0:
        wrt["h0"] = h0
    for (name, arr), g in zip(wrt.items(), grads):
        assert_close(g, central_differences(loss, arr), name)


def test_lstm_hidden_grads_are_totals():
    """gh_t and gc_t from return_hidden equal the gradients of an offset added to h_t / c_t."""
    rng, (x, U, W, b, h0, c0) = problem("lstm", 4, 2, seed=3)
    probe = rng.normal(size=(4, 2, 4))
    hs, cs, gates = lstm_layer_forward(x, U, W, b, h0, c0)
    *_, (gh, gc, da) = lstm_layer_backward(probe, None, x, hs, cs, gates, h0, c0, U, W, return_hidden=True)
    # dL/dc_T = probe_T * o_T * (1 - tanh(c_T)^2) and dL/dh_T = probe_T at the last step
    np.testing.assert_allclose(gh[-1], probe[-1], rtol=0, atol=0)
    np.testing.assert_allclose(gc[-1], probe[-1] * gates[-1, :, 12:] * (1 - np.tanh(cs[-1]) ** 2), rtol=1e-14)
    # dL/db = sum over steps and batch of the gate gradients
    db = lstm_layer_backward(probe, None, x, hs, cs, gates, h0, c0, U, W)[3]
    np.testing.assert_allclose(da.sum(axis=(0, 1)), db, rtol=1e-13)
    # the earlier steps: an offset added to h_1 (seen by the loss and by step 2) moves L at rate gh_1
    offset = np.zeros((2, 4))

    def loss():
        h, c, out = h0, c0, 0.0
        for t in range(4):
            hs_t, cs_t, _ = lstm_layer_forward(x[t:t + 1], U, W, b, h, c)
            h, c = hs_t[0] + (offset if t == 0 else 0), cs_t[0]
            out += np.sum(h * probe[t])
        return out

    assert_close(gh[0], central_differences(loss, offset), "gh_1")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bad_shapes_are_named(kind):
    _, args = problem(kind, 3, 2)
    args = list(args)
    args[2] = args[2][:, :3]  # W with the wrong number of columns
    forward = lstm_layer_forward if kind == "lstm" else gru_layer_forward
    with pytest.raises(ValueError, match="W: expected shape"):
        forward(*args)
    args = list(problem(kind, 3, 2)[1])
    args[1] = args[1][:-1]  # U whose rows are not a multiple of the gate count
    with pytest.raises(ValueError, match="U: expected"):
        forward(*args)


# ----------------------------------------------------------------------------- fused primitives

@pytest.mark.parametrize("T", [1, 4])
def test_lstm_layer_primitive_gradcheck(T):
    _, arrays = problem("lstm", T, 2, seed=7)
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(lambda *ts: apply(LSTM_LAYER, *ts), inputs)
    out = apply(LSTM_LAYER, *inputs)
    hs, cs = naive_lstm(*arrays)
    np.testing.assert_allclose(out.data, np.concatenate([hs, cs], axis=2), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("T", [1, 4])
def test_gru_layer_primitive_gradcheck(T):
    _, arrays = problem("gru", T, 2, seed=8)
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(lambda *ts: apply(GRU_LAYER, *ts), inputs)
    np.testing.assert_allclose(apply(GRU_LAYER, *inputs).data, naive_gru(*arrays), rtol=1e-13, atol=1e-14)


def test_primitive_with_constant_inputs_and_reuse():
    """Only some inputs need grad, and the output used twice accumulates correctly."""
    _, (x, U, W, b, h0, c0) = problem("lstm", 3, 2, seed=9)
    Ut, Wt = Tensor(U, requires_grad=True), Tensor(W, requires_grad=True)
    fn = lambda U_, W_: apply(LSTM_LAYER, Tensor(x), U_, W_, Tensor(b), Tensor(h0), Tensor(c0))  # noqa: E731
    assert gradcheck(lambda U_, W_: fn(U_, W_) * 2 + fn(U_, W_) ** 2, [Ut, Wt])
