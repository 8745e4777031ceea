"""Analytic forward pass and backpropagation through time for one LSTM layer.

Plain NumPy with no imports from the engine. Gate blocks in PyTorch's order i, f, g, o; per step,
rows are batch items:

    a_t = x_t U^T + h_{t-1} W^T + b                       (B, 4H), blocks a_i a_f a_g a_o
    i = sig(a_i)   f = sig(a_f)   g = tanh(a_g)   o = sig(a_o)
    c_t = f * c_{t-1} + i * g                             the cell state
    h_t = o * tanh(c_t)                                   the hidden state

Backward. Two quantities are carried back in time, and both are TOTALS (every path summed):

    gh_t = dL/dh_t = dhs_t + da_{t+1} W
        what comes down from the layer above (or the head) at step t, plus what flows back from
        step t+1 through the recurrent weights W (h_t feeds a_{t+1} only through W);
    gc_t = dL/dc_t = dcs_t + gh_t * o * (1 - tanh(c_t)^2) + gc_{t+1} * f_{t+1}
        the second path: c_t reaches the loss through h_t at this step, and through c_{t+1},
        which carries it forward multiplied by the forget gate alone (no weight matrix, no
        squashing: this is the path along which gradients need not vanish).

From them the gate gradients (post-activation, then through each gate's slope):

    dL/di = gc_t * g    dL/df = gc_t * c_{t-1}    dL/dg = gc_t * i    dL/do = gh_t * tanh(c_t)
    da_t = [dL/di * i(1-i), dL/df * f(1-f), dL/dg * (1-g^2), dL/do * o(1-o)]

and the weights: da_t flows DOWN the layer through the input weights (dL/dx_t = da_t U, which is
the dhs of the layer below) and BACK in time through the recurrent weights (da_t W into gh_{t-1});
dU = sum_t da_t^T x_t, dW = sum_t da_t^T h_{t-1}, db = sum_t sum_batch da_t.

With a mask (T, B) (False from a sequence's length on), a masked step keeps the state
(h_t, c_t) = (h_{t-1}, c_{t-1}): its da is 0 and gh_t, gc_t pass to step t-1 unchanged.
"""

import numpy as np

from micrornn.bptt.shared import _arrays, _as, _check_shape, _float_dtype, _sigmoid, _skipped

GATES = ("i", "f", "g", "o")


def _check_args(x, U, W, b, h0, c0):
    """Validate one LSTM layer's arguments; return (T, B, I, H)."""
    _check_shape("U", U, ("4H", "I"))
    if U.shape[0] % 4:
        raise ValueError(f"U: expected 4*hidden_size rows (gates i, f, g, o), got {U.shape[0]}")
    H4, I = U.shape
    H = H4 // 4
    _check_shape("W", W, (H4, H))
    if b is not None:
        _check_shape("b", b, (H4,))
    _check_shape("x", x, ("T", "B", I))
    T, B = x.shape[:2]
    for name, s in (("h0", h0), ("c0", c0)):
        if s is not None:
            _check_shape(name, s, (B, H))
    return T, B, I, H


def step_equations(a, c_prev, sigmoid, tanh):
    """One step written once for any array type (ndarrays, or engine Tensors for the fused layer's
    replay): (h_t, c_t) from the pre-activations a (B, 4H) and c_{t-1}."""
    H = a.shape[-1] // 4
    i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
    c = f * c_prev + i * g  # c_t = f * c_{t-1} + i * g
    return o * tanh(c), c  # h_t = o * tanh(c_t)


def gate_slopes(gates):
    """d(activation)/d(pre-activation) of every gate, from the activations: sig' = s(1-s), tanh' = 1-g^2."""
    H = gates.shape[-1] // 4
    slopes = gates * (1 - gates)  # sigmoid blocks i, f, o
    g = gates[..., 2 * H:3 * H]
    slopes[..., 2 * H:3 * H] = 1 - g * g  # tanh block g
    return slopes


def lstm_layer_forward(x, U, W, b, h0, c0, mask=None):
    """Run one LSTM layer over x (T, B, I): (hs, cs, gates), each step's h, c and activated i f g o;
    mask (T, B) False where a step is padding (the state is kept)."""
    x, U, W, b, h0, c0 = _arrays(x, U, W, b, h0, c0)
    T, B, I, H = _check_args(x, U, W, b, h0, c0)
    dtype = _float_dtype(x, U, W, b, h0, c0)
    x, U, W, b, h0, c0 = (_as(a, dtype) for a in (x, U, W, b, h0, c0))

    gates = (x.reshape(-1, I) @ U.T).reshape(T, B, 4 * H)  # input projections of every step at once
    if b is not None:
        gates += b
    hs, cs = np.empty((T, B, H), dtype=dtype), np.empty((T, B, H), dtype=dtype)
    h_prev = np.zeros((B, H), dtype=dtype) if h0 is None else h0
    c_prev = np.zeros((B, H), dtype=dtype) if c0 is None else c0
    W_T, ah = np.ascontiguousarray(W.T), np.empty((B, 4 * H), dtype=dtype)  # BLAS runs faster on a copy of W.T
    for t in range(T):
        a = gates[t]  # a_t, activated in place
        a += np.matmul(h_prev, W_T, out=ah)
        o, c = activate_cell(a, H, c_prev, cs[t])
        np.tanh(c, out=hs[t])
        hs[t] *= o  # h_t = o * tanh(c_t)
        skip = _skipped(mask, t)
        if skip is not None:  # a padded step keeps the state
            hs[t][skip], c[skip] = h_prev[skip], c_prev[skip]
        h_prev, c_prev = hs[t], c
    return hs, cs, gates


def lstm_layer_backward(dhs, dcs, x, hs, cs, gates, h0, c0, U, W, return_hidden=False, mask=None):
    """BPTT through one LSTM layer: (dx, dU, dW, db, dh0, dc0), plus (gh, gc, da) if return_hidden.

    dhs, dcs (T, B, H): dL/dh_t and dL/dc_t from outside the layer (dcs may be None: zeros);
    gh, gc: the total dL/dh_t, dL/dc_t; da (T, B, 4H): dL/d(pre-activation) of gates i f g o.
    """
    dhs, dcs, x, hs, cs, gates, h0, c0, U, W = _arrays(dhs, dcs, x, hs, cs, gates, h0, c0, U, W)
    T, B, I, H = _check_args(x, U, W, None, h0, c0)
    for name, arr in (("hs", hs), ("cs", cs), ("dhs", dhs), ("dcs", dcs)):
        if arr is not None:
            _check_shape(name, arr, (T, B, H))
    _check_shape("gates", gates, (T, B, 4 * H))
    dtype = _float_dtype(dhs, dcs, x, hs, cs, gates, h0, c0, U, W)
    dhs, dcs, x, hs, cs, gates, h0, c0, U, W = (
        _as(a, dtype) for a in (dhs, dcs, x, hs, cs, gates, h0, c0, U, W))
    h0 = np.zeros((B, H), dtype=dtype) if h0 is None else h0
    c0 = np.zeros((B, H), dtype=dtype) if c0 is None else c0

    tanh_cs = np.tanh(cs)
    h_prevs = np.concatenate([h0[None], hs[:-1]])  # h_{t-1} of every step
    da = np.empty_like(gates)
    gh_all = np.empty_like(hs) if return_hidden else None
    gc_all = np.empty_like(cs) if return_hidden else None
    gh_now, gc_now = np.empty((B, H), dtype=dtype), np.empty((B, H), dtype=dtype)
    carry_h = np.zeros((B, H), dtype=dtype)  # da_{t+1} W: what reaches h_t from step t+1
    carry_c = np.zeros((B, H), dtype=dtype)  # gc_{t+1} * f_{t+1}: what reaches c_t from c_{t+1}
    for t in range(T - 1, -1, -1):  # small per-step buffers: whole-sequence temporaries cost more here
        i, f, g, o = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        c_prev, tanh_c = cs[t - 1] if t > 0 else c0, tanh_cs[t]
        gh = np.add(dhs[t], carry_h, out=gh_all[t] if return_hidden else gh_now)  # gh_t: above + through W
        skip = _skipped(mask, t)
        if skip is not None:  # a padded step: what reaches h_t, c_t goes to h_{t-1}, c_{t-1} unchanged
            passed_h = gh[skip]
            passed_c = carry_c[skip] if dcs is None else carry_c[skip] + dcs[t][skip]
        gc = np.multiply(tanh_c, tanh_c, out=gc_all[t] if return_hidden else gc_now)
        np.subtract(1, gc, out=gc)
        gc *= o
        gc *= gh
        gc += carry_c  # gc_t = gh_t * o * (1 - tanh(c_t)^2) + gc_{t+1} f_{t+1}
        if dcs is not None:
            gc += dcs[t]
        d = da[t]
        np.multiply(gc, g, out=d[:, :H])  # dL/di = gc * g
        np.multiply(gc, c_prev, out=d[:, H:2 * H])  # dL/df = gc * c_{t-1}
        np.multiply(gc, i, out=d[:, 2 * H:3 * H])  # dL/dg = gc * i
        np.multiply(gh, tanh_c, out=d[:, 3 * H:])  # dL/do = gh * tanh(c_t)
        d *= gate_slopes(gates[t])  # through each gate's activation: da_t
        if skip is not None:
            d[skip], gc[skip] = 0, passed_c
        np.matmul(d, W, out=carry_h)  # back in time through W
        np.multiply(gc, f, out=carry_c)  # back in time along the cell line, through f alone
        if skip is not None:
            carry_h[skip], carry_c[skip] = passed_h, passed_c

    flat = da.reshape(-1, 4 * H)
    dU = flat.T @ x.reshape(-1, I)  # dU = sum_t da_t^T x_t
    dW = flat.T @ h_prevs.reshape(-1, H)  # dW = sum_t da_t^T h_{t-1}
    db = flat.sum(axis=0)  # db = sum_t sum_batch da_t
    dx = (flat @ U).reshape(T, B, I)  # down the layer: dL/dx_t = da_t U
    grads = (dx, dU, dW, db, carry_h, carry_c)  # after the loop the carries are dL/dh_0, dL/dc_0
    return grads + ((gh_all, gc_all, da),) if return_hidden else grads


def activate_cell(a, H, c_prev, c):
    """Activate the pre-activations a (B, 4H) in place (i, f, o sigmoid, g tanh) and write the cell
    c_t = f * c_{t-1} + i * g into c; return (o, c)."""
    _sigmoid(a[:, :2 * H], out=a[:, :2 * H])  # i, f
    np.tanh(a[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])  # g
    _sigmoid(a[:, 3 * H:], out=a[:, 3 * H:])  # o
    i, f, g = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H]
    np.multiply(f, c_prev, out=c)
    c += i * g  # c_t = f * c_{t-1} + i * g
    return a[:, 3 * H:], c
