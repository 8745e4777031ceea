"""The fused layer-norm LSTM and GRU primitives (bptt.fused_layernorm) in float64: the primitives against
central differences (first and second order and forward mode, with a mask), and fused == unrolled for a whole model's
loss and every gradient (2 layers, bidirectional, lengths, random h0)."""
# gradient-tested: lstm_ln_layer, gru_ln_layer
# higher-order-tested: lstm_ln_layer, gru_ln_layer

import numpy as np
import pytest

import micrornn as mr
from micrornn.bptt.fused_layernorm import GRU_LN_LAYER, LSTM_LN_LAYER
from micrornn.check import routes
from micrornn.check.finite_differences import gradcheck, gradgradcheck
from micrornn.engine.tensor import Tensor, apply
from test_bptt_layernorm import relative
from test_layernorm_cells import ln_problem, naive_ln_gru, naive_ln_lstm

PRIMS = {"lstm": LSTM_LN_LAYER, "gru": GRU_LN_LAYER}


def layer_arrays(kind, T, B=2, I=3, H=4, seed=0):
    """Random float64 arguments of one primitive, gains away from 1 and shifts away from 0."""
    rng = np.random.default_rng(seed)
    G = 4 if kind == "lstm" else 3
    x, U, W = rng.normal(size=(T, B, I)), rng.normal(0, 0.6, (G * H, I)), rng.normal(0, 0.6, (G * H, H))
    b, gain_x, gain_h = rng.normal(0, 0.5, G * H), rng.normal(1, 0.3, G * H), rng.normal(1, 0.3, G * H)
    h0 = rng.normal(0, 0.5, (B, H))
    if kind == "lstm":
        return [x, U, W, b, gain_x, gain_h, rng.normal(1, 0.3, H), rng.normal(0, 0.3, H), h0, rng.normal(0, 0.5, (B, H))]
    return [x, U, W, b, rng.normal(0, 0.5, H), gain_x, gain_h, h0]


def naive(kind, arrays):
    """The primitive's output from the naive loops of test_layernorm_cells."""
    if kind == "lstm":
        x, U, W, b, gx, gh, gc, bc, h0, c0 = arrays
        hs, cs = naive_ln_lstm(x, dict(U=U, W=W, b=b, gain_x=gx, gain_h=gh, gain_c=gc, bias_c=bc), h0, c0)
        return np.concatenate([hs, cs], axis=2)
    x, U, W, b, b_hn, gx, gh, h0 = arrays
    return naive_ln_gru(x, dict(U=U, W=W, b=b, b_hn=b_hn, gain_x=gx, gain_h=gh), h0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("T", [1, 4])
def test_primitive_output_and_gradcheck(kind, T):
    arrays = layer_arrays(kind, T, seed=T)
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    np.testing.assert_allclose(apply(PRIMS[kind], *inputs).data, naive(kind, arrays), rtol=1e-12, atol=1e-13)
    assert gradcheck(lambda *ts: apply(PRIMS[kind], *ts), inputs)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_primitive_gradcheck_with_a_mask(kind):
    arrays = layer_arrays(kind, 4, B=3, seed=4)
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0]], dtype=bool)
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    out = apply(PRIMS[kind], *inputs, mask=mask).data
    assert all(np.array_equal(out[t, 1], out[1, 1]) for t in (2, 3))  # a padded step keeps the state
    assert gradcheck(lambda *ts: apply(PRIMS[kind], *ts, mask=mask), inputs)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_second_order_through_the_replayed_steps(kind):
    arrays = layer_arrays(kind, 2, B=1, I=2, H=3, seed=6)  # (H=2 is a degenerate norm: v^ = +-1 nearly)
    mask = np.array([[True], [False]])
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    assert gradgradcheck(lambda *ts: apply(PRIMS[kind], *ts, mask=mask), inputs, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("masked", [False, True])
def test_jvp_against_central_differences_and_the_vjp(kind, masked):
    """Forward mode: J v against central differences, and <J v, u> = <v, J^T u> against the VJP."""
    arrays = layer_arrays(kind, 3, B=3, seed=9)
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=bool) if masked else None
    rng = np.random.default_rng(4)
    vs = [rng.standard_normal(a.shape) for a in arrays]
    layer = lambda *xs: apply(PRIMS[kind], *xs, mask=mask)  # noqa: E731
    out, jv = mr.jvp(layer, [Tensor(a) for a in arrays], vs)
    eps = 1e-6
    plus = layer(*[Tensor(a + eps * v) for a, v in zip(arrays, vs)]).data
    minus = layer(*[Tensor(a - eps * v) for a, v in zip(arrays, vs)]).data
    np.testing.assert_allclose(jv.data, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-8)
    u = rng.standard_normal(out.shape)
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    layer(*inputs).backward(u)
    transposed = sum(float(np.sum(t.grad * v)) for t, v in zip(inputs, vs))
    assert abs(float(np.sum(jv.data * u)) - transposed) <= 1e-12 * abs(transposed)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("lengths", [True, False])
def test_fused_model_equals_unrolled(cell, lengths):
    """Loss and every gradient of a 2-layer bidirectional model with random h0: fused == unrolled."""
    model, x, targets, h0, lens = ln_problem(cell, T=6, batch=3, seed=2)
    lens = lens if lengths else None
    loss_g, graph = routes.route_grads(model, x, targets, h0, fused=False, lengths=lens)
    loss_f, fused = routes.route_grads(model, x, targets, h0, fused=True, lengths=lens)
    assert list(fused) == list(graph) == [n for n, _ in model.named_parameters()]
    assert abs(loss_f - loss_g) <= 1e-12 * abs(loss_g)
    for name in graph:
        assert relative(fused[name], graph[name]) <= 1e-10, name
