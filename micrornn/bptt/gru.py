"""Analytic forward pass and backpropagation through time for one GRU layer.

Plain NumPy with no imports from the engine. Gate blocks in PyTorch's order r, z, n; per step,
rows are batch items (U (3H, I), W (3H, H), b (3H,), b_hn (H,)):

    ax = x_t U^T + b          ah = h_{t-1} W^T        (B, 3H) each, blocks r z n
    r = sig(ax_r + ah_r)      z = sig(ax_z + ah_z)
    hn = ah_n + b_hn          (the recurrent part of n, which the reset gate scales)
    n = tanh(ax_n + r * hn)
    h_t = (1 - z) * n + z * h_{t-1}

Backward, with gh_t = dL/dh_t in TOTAL = dhs_t (from the layer above or the head at step t)
+ what flows back from step t+1 (both through W and along the direct z-path):

    dL/dn = gh_t * (1 - z)    dL/dz = gh_t * (h_{t-1} - n)
    dan = dL/dn * (1 - n^2)   (gradient of n's pre-activation)
    dar = dan * hn * r(1-r)   daz = dL/dz * z(1-z)
    dhn = dan * r             (gradient of the recurrent part of n)

What flows DOWN the layer goes through the input weights U with the input-side deltas
dx_pre = [dar, daz, dan]: dL/dx_t = dx_pre U, dU = sum_t dx_pre^T x_t, db = sum dx_pre.
What flows BACK in time goes through the recurrent weights W with dh_pre = [dar, daz, dhn]
(the reset gate sits between W_n and n), plus the direct path through z:

    gh_{t-1} = dhs_{t-1} + dh_pre W + gh_t * z
    dW = sum_t dh_pre^T h_{t-1},   db_hn = sum_t sum_batch dhn

With a mask (T, B) (False from a sequence's length on), a masked step keeps the state
h_t = h_{t-1}: its deltas are 0 and gh_t passes to h_{t-1} unchanged.
"""

import numpy as np

from micrornn.bptt.shared import _arrays, _as, _check_shape, _float_dtype, _sigmoid, _skipped

GATES = ("r", "z", "n")


def _check_args(x, U, W, b, b_hn, h0):
    """Validate one GRU layer's arguments; return (T, B, I, H)."""
    _check_shape("U", U, ("3H", "I"))
    if U.shape[0] % 3:
        raise ValueError(f"U: expected 3*hidden_size rows (gates r, z, n), got {U.shape[0]}")
    H3, I = U.shape
    H = H3 // 3
    _check_shape("W", W, (H3, H))
    if b is not None:
        _check_shape("b", b, (H3,))
    if b_hn is not None:
        _check_shape("b_hn", b_hn, (H,))
    _check_shape("x", x, ("T", "B", I))
    T, B = x.shape[:2]
    if h0 is not None:
        _check_shape("h0", h0, (B, H))
    return T, B, I, H


def step_equations(ax, ah, h_prev, b_hn, sigmoid, tanh):
    """One step written once for any array type (ndarrays, or engine Tensors for the fused layer's
    replay): h_t from ax = x_t U^T + b, ah = h_{t-1} W^T (B, 3H each), h_{t-1} and b_hn."""
    H = ah.shape[-1] // 3
    r, z = sigmoid(ax[:, :H] + ah[:, :H]), sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
    n = tanh(ax[:, 2 * H:] + r * (ah[:, 2 * H:] + b_hn))  # n = tanh(ax_n + r * hn)
    return n + z * (h_prev - n)  # h_t = (1 - z) * n + z * h_{t-1}


def gate_slopes(gates):
    """d(activation)/d(pre-activation) of every gate, from the activations: sig' = s(1-s), tanh' = 1-n^2."""
    H = gates.shape[-1] // 3
    slopes = gates * (1 - gates)  # sigmoid blocks r, z
    n = gates[..., 2 * H:]
    slopes[..., 2 * H:] = 1 - n * n  # tanh block n
    return slopes


def gru_layer_forward(x, U, W, b, b_hn, h0, mask=None):
    """Run one GRU layer over x (T, B, I): (hs, gates, hn), each step's h, activated r z n, and hn;
    mask (T, B) False where a step is padding (the state is kept)."""
    x, U, W, b, b_hn, h0 = _arrays(x, U, W, b, b_hn, h0)
    T, B, I, H = _check_args(x, U, W, b, b_hn, h0)
    dtype = _float_dtype(x, U, W, b, b_hn, h0)
    x, U, W, b, b_hn, h0 = (_as(a, dtype) for a in (x, U, W, b, b_hn, h0))

    gates = (x.reshape(-1, I) @ U.T).reshape(T, B, 3 * H)  # input projections of every step at once
    if b is not None:
        gates += b
    hs, hns = np.empty((T, B, H), dtype=dtype), np.empty((T, B, H), dtype=dtype)
    h_prev = np.zeros((B, H), dtype=dtype) if h0 is None else h0
    W_T, ah = np.ascontiguousarray(W.T), np.empty((B, 3 * H), dtype=dtype)  # BLAS runs faster on a copy of W.T
    for t in range(T):
        a, hn = gates[t], hns[t]  # activated in place
        np.matmul(h_prev, W_T, out=ah)
        a[:, :2 * H] += ah[:, :2 * H]
        _sigmoid(a[:, :2 * H], out=a[:, :2 * H])  # r, z
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        hn[...] = ah[:, 2 * H:]
        if b_hn is not None:
            hn += b_hn
        n += r * hn
        np.tanh(n, out=n)  # n = tanh(ax_n + r * hn)
        np.multiply(z, h_prev - n, out=hs[t])
        hs[t] += n  # h_t = (1 - z) * n + z * h_{t-1} = n + z * (h_{t-1} - n)
        skip = _skipped(mask, t)
        if skip is not None:  # a padded step keeps the state
            hs[t][skip] = h_prev[skip]
        h_prev = hs[t]
    return hs, gates, hns


def gru_layer_backward(dhs, x, hs, gates, hns, h0, U, W, return_hidden=False, mask=None):
    """BPTT through one GRU layer: (dx, dU, dW, db, db_hn, dh0), plus (gh, da) if return_hidden.

    gh (T, B, H) is the total dL/dh_t; da (T, B, 3H) is dL/d(pre-activation) of gates r z n.
    """
    dhs, x, hs, gates, hns, h0, U, W = _arrays(dhs, x, hs, gates, hns, h0, U, W)
    T, B, I, H = _check_args(x, U, W, None, None, h0)
    for name, arr in (("hs", hs), ("hns", hns), ("dhs", dhs)):
        _check_shape(name, arr, (T, B, H))
    _check_shape("gates", gates, (T, B, 3 * H))
    dtype = _float_dtype(dhs, x, hs, gates, hns, h0, U, W)
    dhs, x, hs, gates, hns, h0, U, W = (_as(a, dtype) for a in (dhs, x, hs, gates, hns, h0, U, W))
    h0 = np.zeros((B, H), dtype=dtype) if h0 is None else h0

    h_prevs = np.concatenate([h0[None], hs[:-1]])  # h_{t-1} of every step
    d_in = np.empty_like(gates)  # [dar, daz, dan]: input-side deltas (also the gate gradients)
    d_rec = np.empty_like(gates)  # [dar, daz, dhn]: recurrent-side deltas
    gh_all = np.empty_like(hs) if return_hidden else None
    gh_now, direct = np.empty((B, H), dtype=dtype), np.empty((B, H), dtype=dtype)
    carry = np.zeros((B, H), dtype=dtype)  # what reaches h_t from step t+1
    for t in range(T - 1, -1, -1):  # small per-step buffers: whole-sequence temporaries cost more here
        r, z, n = (gates[t, :, k * H:(k + 1) * H] for k in range(3))
        slopes = gate_slopes(gates[t])
        gh = np.add(dhs[t], carry, out=gh_all[t] if return_hidden else gh_now)  # gh_t: above + from t+1
        d = d_in[t]
        np.subtract(1, z, out=d[:, 2 * H:])
        d[:, 2 * H:] *= gh  # dL/dn = gh * (1 - z)
        np.subtract(h_prevs[t], n, out=d[:, H:2 * H])
        d[:, H:2 * H] *= gh  # dL/dz = gh * (h_{t-1} - n)
        d[:, 2 * H:] *= slopes[:, 2 * H:]  # dan = dL/dn * tanh'
        np.multiply(d[:, 2 * H:], hns[t], out=d[:, :H])  # dL/dr = dan * hn
        d[:, :2 * H] *= slopes[:, :2 * H]  # dar, daz through the sigmoids
        d_rec[t, :, :2 * H] = d[:, :2 * H]
        np.multiply(d[:, 2 * H:], r, out=d_rec[t, :, 2 * H:])  # dhn = dan * r
        skip = _skipped(mask, t)
        if skip is not None:  # a padded step: h_t = h_{t-1}, so gh_t goes back unchanged
            passed = gh[skip]
            d[skip], d_rec[t][skip] = 0, 0
        np.matmul(d_rec[t], W, out=carry)  # back in time through W ...
        carry += np.multiply(gh, z, out=direct)  # ... and directly along h_t = ... + z * h_{t-1}
        if skip is not None:
            carry[skip] = passed

    flat_in, flat_rec = d_in.reshape(-1, 3 * H), d_rec.reshape(-1, 3 * H)
    dU = flat_in.T @ x.reshape(-1, I)  # dU = sum_t dx_pre^T x_t
    dW = flat_rec.T @ h_prevs.reshape(-1, H)  # dW = sum_t dh_pre^T h_{t-1}
    db = flat_in.sum(axis=0)  # db = sum_t sum_batch dx_pre
    db_hn = flat_rec[:, 2 * H:].sum(axis=0)  # db_hn = sum_t sum_batch dhn
    dx = (flat_in @ U).reshape(T, B, I)  # down the layer: dL/dx_t = dx_pre U
    grads = (dx, dU, dW, db, db_hn, carry)  # after the loop carry = dL/dh_0
    return grads + ((gh_all, d_in),) if return_hidden else grads
