"""Analytic forward pass and BPTT for one layer-norm GRU layer (``GRUCell(layer_norm=True)``).

Plain NumPy with no imports from the engine. LN(v; gain, shift) normalizes each block (r, z, n)
over its H units (``layernorm``); the input and recurrent parts apart, so the reset gate still
scales the whole recurrent part of n:

    p_t = LN(x_t U^T; gain_x, b)          (all steps at once)     q_t = LN(h_{t-1} W^T; gain_h, 0)
    r = sig(p_r + q_r)    z = sig(p_z + q_z)    hn = q_n + b_hn    n = tanh(p_n + r * hn)
    h_t = (1 - z) * n + z * h_{t-1}

Backward, with gh_t = dL/dh_t in TOTAL (as in ``gru``):

    dan = gh_t (1 - z)(1 - n^2)    dar = dan * hn * r(1-r)    daz = gh_t (h_{t-1} - n) z(1-z)
    dL/dp_t = [dar, daz, dan]      dL/dq_t = [dar, daz, dan * r]      db_hn = sum dan * r
    d(h W^T)_t = LN'(dL/dq_t * gain_h)     dgain_h = sum dL/dq_t * h^_t   (LN' = ``normalize_backward``)
    gh_{t-1} = dhs_{t-1} + d(h W^T)_t W + gh_t * z       dW = sum_t d(h W^T)_t^T h_{t-1}

and after the loop the input part's backward gives dx, dU, dgain_x, db. A masked step keeps h:
its deltas are 0 and gh_t passes to h_{t-1} unchanged.
"""

import numpy as np

from micrornn.bptt.gru import _check_args, gate_slopes
from micrornn.bptt.layernorm import block_norm, input_part_backward, input_part_forward, normalize, normalize_backward
from micrornn.bptt.shared import _arrays, _as, _check_shape, _float_dtype, _sigmoid, _skipped


def step_equations(p, h_prev, W, b_hn, gain_h, sigmoid, tanh):
    """One step for any array type (ndarrays, or Tensors for the fused layer's replay): h_t from
    p_t = LN(x_t U^T; gain_x, b) and h_{t-1}."""
    H = W.shape[-1]
    q = block_norm(h_prev @ W.T, 3) * gain_h  # q_t = LN(h_{t-1} W^T; gain_h, 0)
    r, z = sigmoid(p[:, :H] + q[:, :H]), sigmoid(p[:, H:2 * H] + q[:, H:2 * H])
    n = tanh(p[:, 2 * H:] + r * (q[:, 2 * H:] + b_hn))  # n = tanh(p_n + r * (q_n + b_hn))
    return n + z * (h_prev - n)  # h_t = (1 - z) * n + z * h_{t-1}


def ln_gru_layer_forward(x, U, W, b, b_hn, gain_x, gain_h, h0, mask=None):
    """Run one layer-norm GRU layer over x (T, B, I): (hs, cache) — cache for the backward."""
    x, U, W, b, b_hn, gain_x, gain_h, h0 = _arrays(x, U, W, b, b_hn, gain_x, gain_h, h0)
    T, B, I, H = _check_args(x, U, W, b, b_hn, h0)
    for name, arr in (("gain_x", gain_x), ("gain_h", gain_h)):
        _check_shape(name, arr, (3 * H,))
    dtype = _float_dtype(x, U, W, b, b_hn, gain_x, gain_h, h0)
    x, U, W, b, b_hn, gain_x, gain_h, h0 = (_as(a, dtype) for a in (x, U, W, b, b_hn, gain_x, gain_h, h0))

    gates, x_hat, inv_x = input_part_forward(x, U, gain_x, b, 3)  # p_t of every step, activated in place below
    hs, hns = np.empty((T, B, H), dtype=dtype), np.empty((T, B, H), dtype=dtype)
    q_hat, inv_q = np.empty((T, B, 3 * H), dtype=dtype), np.empty((T, B, 3, 1), dtype=dtype)
    h_prev = np.zeros((B, H), dtype=dtype) if h0 is None else h0
    W_T = np.ascontiguousarray(W.T)
    for t in range(T):
        q_hat[t], inv_q[t] = normalize(h_prev @ W_T, 3)
        q = q_hat[t] * gain_h  # q_t = LN(h_{t-1} W^T; gain_h, 0)
        a, hn = gates[t], hns[t]
        a[:, :2 * H] += q[:, :2 * H]
        _sigmoid(a[:, :2 * H], out=a[:, :2 * H])  # r, z
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        hn[...] = q[:, 2 * H:]
        if b_hn is not None:
            hn += b_hn
        n += r * hn
        np.tanh(n, out=n)  # n = tanh(p_n + r * hn)
        np.multiply(z, h_prev - n, out=hs[t])
        hs[t] += n  # h_t = n + z * (h_{t-1} - n)
        skip = _skipped(mask, t)
        if skip is not None:  # a padded step keeps the state
            hs[t][skip] = h_prev[skip]
        h_prev = hs[t]
    return hs, (x, x_hat, inv_x, q_hat, inv_q, gates, hns, hs, h0)


def ln_gru_layer_backward(dhs, cache, U, W, gain_x, gain_h, mask=None, need_dx=True):
    """BPTT through one layer-norm GRU layer: ({x, U, W, b, b_hn, gain_x, gain_h, h0} gradients,
    (gh, da)) — gh the total dL/dh_t, da (T, B, 3H) dL/d(pre-activation) of r, z, n."""
    x, x_hat, inv_x, q_hat, inv_q, gates, hns, hs, h0 = cache
    T, B, H = hs.shape
    dtype = hs.dtype
    dhs = np.asarray(dhs).astype(dtype, copy=False)
    U, W, gain_x, gain_h = (np.asarray(a).astype(dtype, copy=False) for a in (U, W, gain_x, gain_h))
    h0 = np.zeros((B, H), dtype=dtype) if h0 is None else h0
    h_prevs = np.concatenate([h0[None], hs[:-1]])  # h_{t-1} of every step

    d_in, d_q, d_rec = np.empty_like(gates), np.empty_like(gates), np.empty_like(gates)
    gh_all = np.empty_like(hs)
    carry = np.zeros((B, H), dtype=dtype)  # what reaches h_t from step t+1
    for t in range(T - 1, -1, -1):
        r, z, n = (gates[t, :, k * H:(k + 1) * H] for k in range(3))
        slopes = gate_slopes(gates[t])
        gh = np.add(dhs[t], carry, out=gh_all[t])  # gh_t: above + from t+1
        d = d_in[t]
        np.multiply(gh, 1 - z, out=d[:, 2 * H:])  # dL/dn = gh * (1 - z)
        np.multiply(gh, h_prevs[t] - n, out=d[:, H:2 * H])  # dL/dz = gh * (h_{t-1} - n)
        d[:, 2 * H:] *= slopes[:, 2 * H:]  # dan = dL/dn * tanh'
        np.multiply(d[:, 2 * H:], hns[t], out=d[:, :H])  # dL/dr = dan * hn
        d[:, :2 * H] *= slopes[:, :2 * H]  # dar, daz through the sigmoids
        d_q[t, :, :2 * H] = d[:, :2 * H]
        np.multiply(d[:, 2 * H:], r, out=d_q[t, :, 2 * H:])  # dL/dhn = dan * r
        skip = _skipped(mask, t)
        if skip is not None:  # a padded step: h_t = h_{t-1}, so gh_t goes back unchanged
            passed = gh[skip]
            d[skip], d_q[t][skip] = 0, 0
        d_rec[t] = normalize_backward(d_q[t] * gain_h, q_hat[t], inv_q[t], 3)  # through LN(h W^T; gain_h, 0)
        np.matmul(d_rec[t], W, out=carry)  # back in time through W ...
        carry += gh * z  # ... and directly along h_t = ... + z * h_{t-1}
        if skip is not None:
            carry[skip] = passed

    flat_q = d_q.reshape(-1, 3 * H)
    dx, dU, dgain_x, db = input_part_backward(d_in, x, x_hat, inv_x, U, gain_x, 3, need_dx)
    grads = {"x": dx, "U": dU, "W": d_rec.reshape(-1, 3 * H).T @ h_prevs.reshape(-1, H),  # dW = sum d(hW^T)^T h
             "b": db, "b_hn": flat_q[:, 2 * H:].sum(axis=0),  # db_hn = sum dan * r
             "gain_x": dgain_x, "gain_h": (flat_q * q_hat.reshape(flat_q.shape)).sum(axis=0),  # sum dq * q^
             "h0": carry}  # after the loop carry = dL/dh_0
    return grads, (gh_all, d_in)
