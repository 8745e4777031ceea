"""Fused layer primitives for the layer-norm LSTM and GRU: forward and VJP are ``bptt.lstm_ln`` and
``bptt.gru_ln``; for higher order (create_graph) the steps are replayed through Tensor ops and
differentiated, as ``fused`` does for the plain cells.

LSTM_LN_LAYER(x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0, mask=) -> (T, B, 2H), [h_t c_t];
GRU_LN_LAYER(x, U, W, b, b_hn, gain_x, gain_h, h0, mask=) -> (T, B, H). x is floats (T, B, I); biases
and initial states are always tensors (a layer without bias passes zeros). mask (T, B): a False
step keeps the state. Forward mode: the tangent recursion of each step (``*_jvp``), with the layer
norm's tangent LN'(dv) = gain * inv * (dv - mean dv - v^ mean(dv v^)) + dgain * v^ + dshift.
"""
from __future__ import annotations

import numpy as np

from micrornn.bptt import gru_ln, lstm_ln
from micrornn.bptt.fused import _at_step
from micrornn.bptt.layernorm import block_norm, normalize_backward
from micrornn.bptt.shared import _skipped
from micrornn.engine import ops
from micrornn.engine.ops import defprimitive
from micrornn.engine.tensor import Tensor, _leaf, apply, scope, where


def lstm_ln_layer_fwd(x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0, mask=None):
    hs, cs, cache = lstm_ln.ln_lstm_layer_forward(x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0, mask)
    return np.concatenate([hs, cs], axis=2), (cache, U, W, gain_x, gain_h, gain_c, mask)


def lstm_ln_layer_vjp(g, saved, needs):
    # gc_t = g_c,t + LN'(dy gain_c) + gc_{t+1} f_{t+1};  d(hW^T)_t = LN'(da_t gain_h);  see bptt.lstm_ln
    cache, U, W, gain_x, gain_h, gain_c, mask = saved
    H = W.shape[1]
    grads, _ = lstm_ln.ln_lstm_layer_backward(g[..., :H], g[..., H:], cache, U, W, gain_x, gain_h, gain_c,
                                              mask=mask, need_dx=needs[0])
    return tuple(grads[k] for k in ("x", "U", "W", "b", "gain_x", "gain_h", "gain_c", "bias_c", "h0", "c0"))


def gru_ln_layer_fwd(x, U, W, b, b_hn, gain_x, gain_h, h0, mask=None):
    hs, cache = gru_ln.ln_gru_layer_forward(x, U, W, b, b_hn, gain_x, gain_h, h0, mask)
    return hs, (cache, U, W, gain_x, gain_h, mask)


def gru_ln_layer_vjp(g, saved, needs):
    # gh_{t-1} = g_{t-1} + LN'([dar, daz, dan r] gain_h) W + gh_t z;  see bptt.gru_ln
    cache, U, W, gain_x, gain_h, mask = saved
    grads, _ = gru_ln.ln_gru_layer_backward(g, cache, U, W, gain_x, gain_h, mask=mask, need_dx=needs[0])
    return tuple(grads[k] for k in ("x", "U", "W", "b", "b_hn", "gain_x", "gain_h", "h0"))


def _replayed_vjp(step, initial, gain_x, b, g, out, xs, needs, mask):
    """A create_graph VJP: p_t = LN(x_t U^T; gain_x, b) for every step, then the steps through Tensor
    ops (``step(p_t, state) -> (state, output row)``, a padded step keeping the state), differentiated
    with create_graph=True."""
    from micrornn.engine.transforms import grad  # higher sits above the primitive table
    x, U = xs[0], xs[1]
    T, B = out.shape[0], out.shape[1]
    G = U.shape[0] // xs[2].shape[1]
    p = (block_norm(x.reshape(T * B, x.shape[2]) @ U.T, G) * gain_x + b).reshape(T, B, U.shape[0])
    state, outputs = initial, []
    for t in range(T):
        with scope(_at_step(out.scope, t + 1)):
            new, row = step(p[t], state)
            if _skipped(mask, t) is not None:
                keep = _leaf(mask[t][:, None])
                new = tuple(where(keep, n, o) for n, o in zip(new, state))
                row = apply(ops.CONCATENATE, *new, axis=1) if len(new) == 2 else new[0]
        state = new
        outputs.append(row)
    wanted = [v for v, need in zip(xs, needs) if need]
    found = iter(grad(apply(ops.STACK, *outputs, axis=0), wanted, grad_outputs=[g], create_graph=True))
    return tuple(next(found) if need else None for need in needs)


def lstm_ln_layer_dvjp(g, out, xs, saved, needs):
    # the LN-LSTM steps replayed through primitives and differentiated
    x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0 = xs

    def step(p, state):
        h, c = lstm_ln.step_equations(p, state[0], state[1], W, gain_h, gain_c, bias_c, Tensor.sigmoid, Tensor.tanh)
        return (h, c), apply(ops.CONCATENATE, h, c, axis=1)
    return _replayed_vjp(step, (h0, c0), gain_x, b, g, out, xs, needs, saved[-1])


def gru_ln_layer_dvjp(g, out, xs, saved, needs):
    # the LN-GRU steps replayed through primitives and differentiated
    x, U, W, b, b_hn, gain_x, gain_h, h0 = xs

    def step(p, state):
        h = gru_ln.step_equations(p, state[0], W, b_hn, gain_h, Tensor.sigmoid, Tensor.tanh)
        return (h,), h
    return _replayed_vjp(step, (h0,), gain_x, b, g, out, xs, needs, saved[-1])


def _tangents(ts, arrays):
    """Each tangent, zeros for the inputs without one."""
    return [np.zeros_like(a) if t is None else t for t, a in zip(ts, arrays)]


def _input_part_tangent(tx, tU, tgain_x, tb, x, x_hat, inv, U, gain_x, G):
    """dp of p = LN(x U^T; gain_x, b) for every step: gain_x LN'(dx U^T + x dU^T) + dgain_x x^ + db."""
    T, B, I = x.shape
    d_ax = tx.reshape(-1, I) @ U.T + x.reshape(-1, I) @ tU.T
    d_hat = normalize_backward(d_ax, x_hat.reshape(d_ax.shape), inv.reshape(-1, G, 1), G)  # LN's Jacobian is symmetric
    return (d_hat * gain_x + x_hat.reshape(d_ax.shape) * tgain_x + tb).reshape(T, B, -1)


def lstm_ln_layer_jvp(ts, saved, out):
    # da = dp + gain_h LN'(dh W^T + h dW^T) + dgain_h r^;  dc = df c + f dc + di g + i dg;
    # dy = gain_c LN'(dc) + dgain_c c^ + dbias_c;  dh = do tanh(y) + o (1 - tanh(y)^2) dy
    cache, U, W, gain_x, gain_h, gain_c, mask = saved
    x, x_hat, inv_x, r_hat, inv_r, gates, hs, cs, c_hat, inv_c, tanh_y, h0, c0 = cache
    T, B, H = hs.shape
    h0 = np.zeros((B, H), dtype=hs.dtype) if h0 is None else h0
    c0 = np.zeros((B, H), dtype=hs.dtype) if c0 is None else c0
    tx, tU, tW, tb, tgx, tgh, tgc, tbc, th, tc = _tangents(
        ts, (x, U, W, gain_x, gain_x, gain_h, gain_c, gain_c, h0, c0))
    dp = _input_part_tangent(tx, tU, tgx, tb, x, x_hat, inv_x, U, gain_x, 4)
    slopes, tangents, h_prev, c_prev = lstm_ln.gate_slopes(gates), np.empty_like(out), h0, c0
    for t in range(T):
        d_ah = th @ W.T + h_prev @ tW.T
        da = slopes[t] * (dp[t] + normalize_backward(d_ah, r_hat[t], inv_r[t], 4) * gain_h + r_hat[t] * tgh)
        i, f, g, o = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        di, df, dg, do = (da[:, k * H:(k + 1) * H] for k in range(4))
        new_c = df * c_prev + f * tc + di * g + i * dg
        dy = normalize_backward(new_c, c_hat[t], inv_c[t], 1) * gain_c + c_hat[t] * tgc + tbc
        new_h = do * tanh_y[t] + o * (1 - tanh_y[t] * tanh_y[t]) * dy
        if _skipped(mask, t) is not None:  # a padded step keeps the state
            keep = mask[t][:, None]
            new_h, new_c = np.where(keep, new_h, th), np.where(keep, new_c, tc)
        th, tc = new_h, new_c
        tangents[t, :, :H], tangents[t, :, H:] = th, tc
        h_prev, c_prev = hs[t], cs[t]
    return tangents


def gru_ln_layer_jvp(ts, saved, out):
    # dq = gain_h LN'(dh W^T + h dW^T) + dgain_h q^;  dr = r(1-r)(dp_r + dq_r), dz likewise;
    # dn = (1-n^2)(dp_n + dr hn + r (dq_n + db_hn));  dh = (1-z) dn + dz (h_{t-1} - n) + z dh_{t-1}
    cache, U, W, gain_x, gain_h, mask = saved
    x, x_hat, inv_x, q_hat, inv_q, gates, hns, hs, h0 = cache
    T, B, H = hs.shape
    h0 = np.zeros((B, H), dtype=hs.dtype) if h0 is None else h0
    tx, tU, tW, tb, tb_hn, tgx, tgh, th = _tangents(ts, (x, U, W, gain_x, gain_x[:H], gain_x, gain_h, h0))
    dp = _input_part_tangent(tx, tU, tgx, tb, x, x_hat, inv_x, U, gain_x, 3)
    tangents, h_prev = np.empty_like(hs), h0
    for t in range(T):
        dq = normalize_backward(th @ W.T + h_prev @ tW.T, q_hat[t], inv_q[t], 3) * gain_h + q_hat[t] * tgh
        r, z, n = (gates[t, :, k * H:(k + 1) * H] for k in range(3))
        dr = r * (1 - r) * (dp[t, :, :H] + dq[:, :H])
        dz = z * (1 - z) * (dp[t, :, H:2 * H] + dq[:, H:2 * H])
        dn = (1 - n * n) * (dp[t, :, 2 * H:] + dr * hns[t] + r * (dq[:, 2 * H:] + tb_hn))
        new = (1 - z) * dn + dz * (h_prev - n) + z * th
        th = tangents[t] = new if _skipped(mask, t) is None else np.where(mask[t][:, None], new, th)
        h_prev = hs[t]
    return tangents


LSTM_LN_LAYER = defprimitive("lstm_ln_layer", lstm_ln_layer_fwd, lstm_ln_layer_vjp, fresh=True,
                             dvjp=lstm_ln_layer_dvjp, jvp=lstm_ln_layer_jvp)
GRU_LN_LAYER = defprimitive("gru_ln_layer", gru_ln_layer_fwd, gru_ln_layer_vjp, fresh=True,
                            dvjp=gru_ln_layer_dvjp, jvp=gru_ln_layer_jvp)
