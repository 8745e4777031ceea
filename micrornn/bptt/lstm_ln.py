"""Analytic forward pass and BPTT for one layer-norm LSTM layer (``LSTMCell(layer_norm=True)``).

Plain NumPy with no imports from the engine. LN(v; gain, shift) normalizes each gate block (i, f,
g, o) over its H units (``layernorm``); per step, rows are batch items:

    p_t = LN(x_t U^T; gain_x, b)          (all steps at once)     r_t = LN(h_{t-1} W^T; gain_h, 0)
    a_t = p_t + r_t                       i, f, o = sig(a_i, a_f, a_o),  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g             y_t = LN(c_t; gain_c, bias_c) (one block)
    h_t = o * tanh(y_t)

Backward, with gh_t = dL/dh_t and gc_t = dL/dc_t TOTALS as in ``lstm``:

    dy = gh_t * o * (1 - tanh(y)^2)           dgain_c += dy * c^,  dbias_c += dy
    gc_t = dcs_t + LN'(dy * gain_c) + gc_{t+1} * f_{t+1}         (LN' = ``normalize_backward``)
    da_t = [gc g, gc c_{t-1}, gc i, gh tanh(y)] * gate slopes     (= dL/dp_t, the input part's gradient)
    d(h W^T)_t = LN'(da_t * gain_h)           dgain_h += da_t * h^_t
    gh_{t-1} = dhs_{t-1} + d(h W^T)_t W       dW = sum_t d(h W^T)_t^T h_{t-1}

and after the loop the input part's backward gives dx, dU, dgain_x, db. A masked step (mask False)
keeps (h, c): its deltas are 0 and gh, gc pass to step t-1 unchanged.
"""

import numpy as np

from micrornn.bptt.layernorm import block_norm, input_part_backward, input_part_forward, normalize, normalize_backward
from micrornn.bptt.lstm import _check_args, activate_cell, gate_slopes
from micrornn.bptt.shared import _arrays, _as, _check_shape, _float_dtype, _skipped


def _check_ln(H, gain_x, gain_h, gain_c, bias_c):
    for name, arr, n in (("gain_x", gain_x, 4 * H), ("gain_h", gain_h, 4 * H), ("gain_c", gain_c, H),
                         ("bias_c", bias_c, H)):
        if arr is not None:
            _check_shape(name, arr, (n,))


def step_equations(p, h_prev, c_prev, W, gain_h, gain_c, bias_c, sigmoid, tanh):
    """One step for any array type (ndarrays, or Tensors for the fused layer's replay): (h_t, c_t)
    from p_t = LN(x_t U^T; gain_x, b) and (h_{t-1}, c_{t-1})."""
    H = W.shape[-1]
    a = p + block_norm(h_prev @ W.T, 4) * gain_h  # a_t = p_t + LN(h_{t-1} W^T; gain_h, 0)
    i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
    c = f * c_prev + i * g  # c_t = f * c_{t-1} + i * g
    return o * tanh(block_norm(c, 1) * gain_c + bias_c), c  # h_t = o * tanh(LN(c_t; gain_c, bias_c))


def ln_lstm_layer_forward(x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0, mask=None):
    """Run one layer-norm LSTM layer over x (T, B, I): (hs, cs, cache) — cache for the backward."""
    x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0 = _arrays(x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0)
    T, B, I, H = _check_args(x, U, W, b, h0, c0)
    _check_ln(H, gain_x, gain_h, gain_c, bias_c)
    dtype = _float_dtype(x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0)
    x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0 = (
        _as(a, dtype) for a in (x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0))

    gates, x_hat, inv_x = input_part_forward(x, U, gain_x, b, 4)  # p_t of every step, activated in place below
    hs, cs, tanh_y = (np.empty((T, B, H), dtype=dtype) for _ in range(3))
    r_hat, inv_r = np.empty((T, B, 4 * H), dtype=dtype), np.empty((T, B, 4, 1), dtype=dtype)
    c_hat, inv_c = np.empty((T, B, H), dtype=dtype), np.empty((T, B, 1, 1), dtype=dtype)
    h_prev = np.zeros((B, H), dtype=dtype) if h0 is None else h0
    c_prev = np.zeros((B, H), dtype=dtype) if c0 is None else c0
    W_T = np.ascontiguousarray(W.T)
    for t in range(T):
        r_hat[t], inv_r[t] = normalize(h_prev @ W_T, 4)
        a = gates[t]
        a += r_hat[t] * gain_h  # a_t = p_t + LN(h_{t-1} W^T; gain_h, 0)
        o, c = activate_cell(a, H, c_prev, cs[t])
        c_hat[t], inv_c[t] = normalize(c, 1)
        y = c_hat[t] * gain_c
        if bias_c is not None:
            y += bias_c
        np.tanh(y, out=tanh_y[t])
        np.multiply(o, tanh_y[t], out=hs[t])  # h_t = o * tanh(LN(c_t))
        skip = _skipped(mask, t)
        if skip is not None:  # a padded step keeps the state
            hs[t][skip], c[skip] = h_prev[skip], c_prev[skip]
        h_prev, c_prev = hs[t], c
    cache = (x, x_hat, inv_x, r_hat, inv_r, gates, hs, cs, c_hat, inv_c, tanh_y, h0, c0)
    return hs, cs, cache


def ln_lstm_layer_backward(dhs, dcs, cache, U, W, gain_x, gain_h, gain_c, mask=None, need_dx=True):
    """BPTT through one layer-norm LSTM layer: ({x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0}
    gradients, (gh, gc, da)) — gh, gc the total dL/dh_t, dL/dc_t, da (T, B, 4H) dL/d(gate pre-activation)."""
    x, x_hat, inv_x, r_hat, inv_r, gates, hs, cs, c_hat, inv_c, tanh_y, h0, c0 = cache
    T, B, H = hs.shape
    dtype = hs.dtype
    dhs = np.asarray(dhs).astype(dtype, copy=False)
    dcs = None if dcs is None else np.asarray(dcs).astype(dtype, copy=False)
    U, W, gain_x, gain_h, gain_c = (np.asarray(a).astype(dtype, copy=False) for a in (U, W, gain_x, gain_h, gain_c))
    h0 = np.zeros((B, H), dtype=dtype) if h0 is None else h0
    c0 = np.zeros((B, H), dtype=dtype) if c0 is None else c0

    da, d_rec = np.empty_like(gates), np.empty_like(gates)  # dL/da_t (= dL/dp_t) and dL/d(h_{t-1} W^T)
    dy_all, gh_all, gc_all = np.empty_like(hs), np.empty_like(hs), np.empty_like(hs)
    carry_h = np.zeros((B, H), dtype=dtype)  # d(h W^T)_{t+1} W: what reaches h_t from step t+1
    carry_c = np.zeros((B, H), dtype=dtype)  # gc_{t+1} f_{t+1}: what reaches c_t along the cell line
    o_slope = gates[..., 3 * H:] * (1 - tanh_y * tanh_y)  # o * tanh'(y) of every step: dy = gh * o_slope
    for t in range(T - 1, -1, -1):
        i, f, g, o = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        c_prev = cs[t - 1] if t > 0 else c0
        gh = np.add(dhs[t], carry_h, out=gh_all[t])  # gh_t: above + through W
        skip = _skipped(mask, t)
        if skip is not None:  # a padded step: what reaches h_t, c_t goes to h_{t-1}, c_{t-1} unchanged
            passed_h = gh[skip]
            passed_c = carry_c[skip] if dcs is None else carry_c[skip] + dcs[t][skip]
        dy = dy_all[t]
        np.multiply(gh, o_slope[t], out=dy)  # dL/dy = gh * o * tanh'(y)
        if skip is not None:
            dy[skip] = 0
        gc = gc_all[t]
        gc[...] = normalize_backward(dy * gain_c, c_hat[t], inv_c[t], 1) + carry_c  # through LN(c), plus c_{t+1}
        if dcs is not None:
            gc += dcs[t]
        d = da[t]
        np.multiply(gc, g, out=d[:, :H])  # dL/di = gc * g
        np.multiply(gc, c_prev, out=d[:, H:2 * H])  # dL/df = gc * c_{t-1}
        np.multiply(gc, i, out=d[:, 2 * H:3 * H])  # dL/dg = gc * i
        np.multiply(gh, tanh_y[t], out=d[:, 3 * H:])  # dL/do = gh * tanh(y)
        d *= gate_slopes(gates[t])  # through each gate's activation: da_t
        if skip is not None:
            d[skip], gc[skip] = 0, passed_c
        d_rec[t] = normalize_backward(d * gain_h, r_hat[t], inv_r[t], 4)  # through LN(h W^T; gain_h, 0)
        np.matmul(d_rec[t], W, out=carry_h)  # back in time through W
        np.multiply(gc, f, out=carry_c)  # back in time along the cell line, through f alone
        if skip is not None:
            carry_h[skip], carry_c[skip] = passed_h, passed_c

    h_prevs = np.concatenate([h0[None], hs[:-1]]).reshape(-1, H)  # h_{t-1} of every step
    flat = da.reshape(-1, 4 * H)
    dx, dU, dgain_x, db = input_part_backward(da, x, x_hat, inv_x, U, gain_x, 4, need_dx)
    grads = {"x": dx, "U": dU, "W": d_rec.reshape(-1, 4 * H).T @ h_prevs,  # dW = sum_t d(h W^T)_t^T h_{t-1}
             "b": db, "gain_x": dgain_x,
             "gain_h": (flat * r_hat.reshape(flat.shape)).sum(axis=0),  # dgain_h = sum da * h^
             "gain_c": (dy_all * c_hat).reshape(-1, H).sum(axis=0),  # dgain_c = sum dy * c^
             "bias_c": dy_all.reshape(-1, H).sum(axis=0),  # dbias_c = sum dy
             "h0": carry_h, "c0": carry_c}  # after the loop the carries are dL/dh_0, dL/dc_0
    return grads, (gh_all, gc_all, da)
