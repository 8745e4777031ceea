"""Primitives that run a whole recurrent layer (the fused path): forward and VJP are the
hand-derived routines of ``micrornn.bptt``. They join the same table as the ops in ``ops.py``.

For higher order (create_graph) a layer's backward is written once more with Tensor ops, one time
step at a time, so the recorded gradient graph is BPTT itself; its forward-mode rule is the tangent
recursion of real-time recurrent learning.

RNN_LAYER(x, U, W, b, h0) -> (T, B, H); LSTM_LAYER(x, U, W, b, h0, c0) -> (T, B, 2H) with h_t in
[..., :H] and c_t in [..., H:]; GRU_LAYER(x, U, W, b, b_hn, h0) -> (T, B, H). Biases and initial
states are always tensors here (a layer without bias passes zeros). RNN_LAYER also takes index
inputs x (T, B) for one-hot rows.

Every layer takes ``mask=`` (T, B) booleans (None: every step is real): a False step keeps the
state (h_t = h_{t-1}), the way ``lengths`` pads a batch; the bptt routines honour it both ways.

LINEAR_CROSS_ENTROPY(h, V[, c], targets=, reduction=) is the head and the loss of a sequence model
in one node: the softmax cross-entropy of h V^T + c against integer targets, summed or averaged.
"""
from __future__ import annotations

import numpy as np

from micrornn.engine import ops
from micrornn.engine.backward import state
from micrornn.bptt import gru, lstm, vanilla
from micrornn.bptt.shared import _skipped, softmax_cross_entropy_inplace
from micrornn.engine.ops import defprimitive
from micrornn.engine.tensor import Tensor, _leaf, apply, scope, where


def rnn_layer_fwd(x, U, W, b, h0, nonlinearity="tanh", mask=None):
    # x: floats (T, B, I), or indices (T, B) read as one-hot rows (one gather of [U^T + b] rows);
    # a zero h0, the usual start, adds nothing: the products with it are skipped both ways
    hs = vanilla.layer_forward(x, U, W, b, h0 if h0.any() else None, nonlinearity, mask)  # nn.RNN checked shapes
    return hs, (x, hs, h0, U, W, nonlinearity, mask)


def rnn_layer_vjp(g, saved, needs):
    # BPTT: delta_t = act'(h_t) * (g_t + delta_{t+1} W); dU = sum delta^T x, dW = sum delta^T h_{t-1}, ...
    x, hs, h0, U, W, nonlinearity, mask = saved
    dx, dU, dW, db, dh0 = vanilla.layer_backward(g, x, hs, h0 if h0.any() else None, U, W, nonlinearity,
                                                 need_dx=needs[0] or state.anomaly, need_dh0=needs[4], mask=mask)
    # (detect_anomaly locates a bad time step in dx, so it gets one even when nobody else asks)
    return dx, dU, dW, db, dh0


def _input_rows(x, U):
    """The layer input as (T*B, I) rows: index inputs become their one-hot rows (ndarray or Tensor)."""
    data = x if isinstance(x, np.ndarray) else x.data
    if data.dtype.kind not in "iu":
        return x.reshape(data.shape[0] * data.shape[1], -1)
    rows = vanilla._one_hot_rows(data, U.shape[1], U.dtype)
    return _leaf(rows) if data is not x else rows


def _at_step(scope, step):
    """The forward layer's StepScope with its step set (other scopes are kept as they are)."""
    return scope._replace(step=step) if "step" in getattr(scope, "_fields", ()) else scope


def rnn_layer_dvjp(g, out, xs, saved, needs):
    # the same BPTT on Tensors: delta_t = act'(h_t) * (g_t + delta_{t+1} W), then the weight sums
    x, U, W, b, h0 = xs
    nonlinearity, mask, (T, B, H), layer_scope = saved[-2], saved[-1], out.shape, out.scope
    if mask is not None:  # padded steps: the steps replayed with the state kept, then differentiated
        return _replayed_vjp(_rnn_step(nonlinearity), g, out, xs, needs, mask)
    deltas, carry = [None] * T, None  # carry = delta_{t+1} W, what reaches h_t from step t+1
    for t in range(T - 1, -1, -1):
        with scope(_at_step(layer_scope, t + 1)):
            h = out[t]
            slope = 1 - h * h if nonlinearity == "tanh" else (h.data > 0).astype(h.dtype)  # act'(pre_t)
            deltas[t] = (g[t] if carry is None else g[t] + carry) * slope
            carry = deltas[t] @ W
    flat = apply(ops.STACK, *deltas, axis=0).reshape(T * B, H)
    dx = (flat @ U).reshape(x.shape) if needs[0] else None  # dL/dx_t = delta_t U
    dU = flat.T @ _input_rows(x, U) if needs[1] else None  # dL/dU = sum_t delta_t^T x_t
    dW = None
    if needs[2]:  # dL/dW = sum_t delta_t^T h_{t-1}, with h_0 before h_1..h_{T-1}
        previous = apply(ops.CONCATENATE, h0.reshape(1, B, H), out[:T - 1], axis=0)
        dW = flat.T @ previous.reshape(T * B, H)
    db = flat.sum(axis=0) if needs[3] else None  # dL/db = sum_t sum_batch delta_t
    return dx, dU, dW, db, carry  # dL/dh0 = delta_1 W


def rnn_layer_jvp(ts, saved, out):
    # RTRL: dh_t = act'(pre_t) * (dx_t U^T + x_t dU^T + db + dh_{t-1} W^T + h_{t-1} dW^T)
    tx, tU, tW, tb, th = ts
    x, hs, h0, U, W, nonlinearity, mask = saved
    T, B, H = hs.shape
    flat_x = _input_rows(x, U)
    drive = np.zeros((T * B, H), dtype=hs.dtype)  # the input terms of every step at once
    if tx is not None:
        drive += tx.reshape(T * B, -1) @ U.T
    if tU is not None:
        drive += flat_x @ tU.T
    if tb is not None:
        drive += tb
    drive = drive.reshape(T, B, H)
    slope = 1 - hs * hs if nonlinearity == "tanh" else (hs > 0).astype(hs.dtype)
    tangents, h_prev = np.empty_like(hs), h0
    for t in range(T):
        d = drive[t]
        if th is not None:
            d = d + th @ W.T
        if tW is not None:
            d = d + h_prev @ tW.T
        new = slope[t] * d
        th = tangents[t] = new if _skipped(mask, t) is None else _kept(mask[t], new, th)
        h_prev = hs[t]
    return tangents


def _kept(keep, new, old):
    """new on the real rows of a step, old (None: zeros) on its padded ones: a padded step keeps the state."""
    return np.where(keep[:, None], new, 0 if old is None else old)


RNN_LAYER = defprimitive("rnn_layer", rnn_layer_fwd, rnn_layer_vjp, fresh=True, dvjp=rnn_layer_dvjp,
                        jvp=rnn_layer_jvp)


def lstm_layer_fwd(x, U, W, b, h0, c0, mask=None):
    hs, cs, gates = lstm.lstm_layer_forward(x, U, W, b, h0, c0, mask)
    return np.concatenate([hs, cs], axis=2), (x, hs, cs, gates, h0, c0, U, W, mask)


def lstm_layer_vjp(g, saved, needs):
    # gh_t = g_h,t + da_{t+1} W;  gc_t = g_c,t + gh_t o tanh'(c_t) + gc_{t+1} f_{t+1};  dU = sum da^T x, ...
    x, hs, cs, gates, h0, c0, U, W, mask = saved
    H = hs.shape[2]
    return lstm.lstm_layer_backward(g[..., :H], g[..., H:], x, hs, cs, gates, h0, c0, U, W, mask=mask)


def gru_layer_fwd(x, U, W, b, b_hn, h0, mask=None):
    hs, gates, hns = gru.gru_layer_forward(x, U, W, b, b_hn, h0, mask)
    return hs, (x, hs, gates, hns, h0, U, W, mask)


def gru_layer_vjp(g, saved, needs):
    # gh_{t-1} = g_{t-1} + [dar, daz, dan*r] W + gh_t z;  dU = sum [dar, daz, dan]^T x, ...
    x, hs, gates, hns, h0, U, W, mask = saved
    return gru.gru_layer_backward(g, x, hs, gates, hns, h0, U, W, mask=mask)


def _replayed_vjp(step, g, out, xs, needs, mask=None):
    """A create_graph VJP for a fused layer: run the same steps again through primitives (each in
    its time step's scope; a padded step keeps the state), then differentiate that graph with
    create_graph=True. ``step(ax, states, *xs[2:]) -> (states, output row)`` uses bptt's equations."""
    from micrornn.engine.transforms import grad  # higher sits above the primitive table
    layer_scope, wanted = out.scope, [x for x, need in zip(xs, needs) if need]
    states, outputs = (xs[-2], xs[-1]) if step is _lstm_step else xs[-1], []
    projected = _input_rows(xs[0], xs[1]) @ xs[1].T + xs[3]  # every step's x_t U^T + b at once
    projected = projected.reshape(out.shape[0], out.shape[1], -1)
    for t in range(out.shape[0]):
        with scope(_at_step(layer_scope, t + 1)):
            new, output = step(projected[t], states, *xs[2:])
            if _skipped(mask, t) is not None:
                keep = _leaf(mask[t][:, None])
                new = tuple(where(keep, n, o) for n, o in zip(new, states)) if step is _lstm_step else where(keep, new, states)
                output = apply(ops.CONCATENATE, *new, axis=1) if step is _lstm_step else new
        states = new
        outputs.append(output)
    found = iter(grad(apply(ops.STACK, *outputs, axis=0), wanted, grad_outputs=[g], create_graph=True))
    return tuple(next(found) if need else None for need in needs)


def _rnn_step(nonlinearity):
    """One vanilla step through primitives, bptt's equation: (h, h) from ax = x_t U^T + b."""
    def step(ax, h, W, b, h0):
        h = vanilla.step_equations(ax + h @ W.T, nonlinearity, Tensor.tanh, Tensor.relu)
        return h, h
    return step


def _lstm_step(ax, states, W, b, h0, c0):
    """One LSTM step through primitives, bptt's equations: ((h, c), [h c]) from ax = x_t U^T + b."""
    h, c = lstm.step_equations(ax + states[0] @ W.T, states[1], Tensor.sigmoid, Tensor.tanh)
    return (h, c), apply(ops.CONCATENATE, h, c, axis=1)


def _gru_step(ax, h, W, b, b_hn, h0):
    """One GRU step through primitives, bptt's equations: (h, h) from ax = x_t U^T + b."""
    h = gru.step_equations(ax, h @ W.T, h, b_hn, Tensor.sigmoid, Tensor.tanh)
    return h, h


def lstm_layer_dvjp(g, out, xs, saved, needs):
    # the LSTM steps replayed through primitives and differentiated (see _replayed_vjp)
    return _replayed_vjp(_lstm_step, g, out, xs, needs, saved[-1])


def gru_layer_dvjp(g, out, xs, saved, needs):
    # the GRU steps replayed through primitives and differentiated (see _replayed_vjp)
    return _replayed_vjp(_gru_step, g, out, xs, needs, saved[-1])


def _input_tangent(tx, tU, tb, x, U, width):
    """d(x_t U^T + b) for every step at once: dx U^T + x dU^T + db, shape (T, B, width)."""
    T, B = x.shape[:2]
    drive = np.zeros((T * B, width), dtype=U.dtype)
    if tx is not None:
        drive += tx.reshape(T * B, -1) @ U.T
    if tU is not None:
        drive += x.reshape(T * B, -1) @ tU.T
    if tb is not None:
        drive += tb
    return drive.reshape(T, B, width)


def _recurrent_tangent(th, tW, h_prev, W):
    """d(h_{t-1} W^T) = dh_{t-1} W^T + h_{t-1} dW^T (0 when neither has a tangent)."""
    return _plus(None if th is None else th @ W.T, None if tW is None else h_prev @ tW.T)


def _plus(a, b):
    """a + b where None stands for zero."""
    return b if a is None else a if b is None else a + b


def lstm_layer_jvp(ts, saved, out):
    # da = dx U^T + x dU^T + db + dh W^T + h dW^T; di = i(1-i) da_i, ...; dc = df c + f dc + di g + i dg;
    # dh = do tanh(c) + o (1 - tanh(c)^2) dc
    tx, tU, tW, tb, th, tc = ts
    x, hs, cs, gates, h0, c0, U, W, mask = saved
    T, B, H = hs.shape
    drive, slopes = _input_tangent(tx, tU, tb, x, U, 4 * H), lstm.gate_slopes(gates)
    tangents, h_prev, c_prev = np.empty_like(out), h0, c0
    for t in range(T):
        da = slopes[t] * _plus(drive[t], _recurrent_tangent(th, tW, h_prev, W))
        i, f, g, o = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        di, df, dg, do = (da[:, k * H:(k + 1) * H] for k in range(4))
        new_c = _plus(df * c_prev + di * g + i * dg, None if tc is None else f * tc)
        tanh_c = np.tanh(cs[t])
        new_h = do * tanh_c + o * (1 - tanh_c * tanh_c) * new_c
        if _skipped(mask, t) is not None:
            new_h, new_c = _kept(mask[t], new_h, th), _kept(mask[t], new_c, tc)
        th, tc = new_h, new_c
        tangents[t, :, :H], tangents[t, :, H:] = th, tc
        h_prev, c_prev = hs[t], cs[t]
    return tangents


def gru_layer_jvp(ts, saved, out):
    # dr = r(1-r)(dax_r + dah_r), dz likewise; dn = (1-n^2)(dax_n + dr hn + r (dah_n + db_hn));
    # dh = (1 - z) dn + z dh_{t-1} + dz (h_{t-1} - n)
    tx, tU, tW, tb, tb_hn, th = ts
    x, hs, gates, hns, h0, U, W, mask = saved
    T, B, H = hs.shape
    drive, tangents, h_prev = _input_tangent(tx, tU, tb, x, U, 3 * H), np.empty_like(hs), h0
    for t in range(T):
        r, z, n = (gates[t, :, k * H:(k + 1) * H] for k in range(3))
        dah = _recurrent_tangent(th, tW, h_prev, W)
        dah = np.zeros((B, 3 * H), dtype=hs.dtype) if dah is None else dah
        dr = r * (1 - r) * (drive[t, :, :H] + dah[:, :H])
        dz = z * (1 - z) * (drive[t, :, H:2 * H] + dah[:, H:2 * H])
        dhn = _plus(dah[:, 2 * H:], tb_hn)
        dn = (1 - n * n) * (drive[t, :, 2 * H:] + dr * hns[t] + r * dhn)
        new = _plus((1 - z) * dn + dz * (h_prev - n), None if th is None else z * th)
        th = tangents[t] = new if _skipped(mask, t) is None else _kept(mask[t], new, th)
        h_prev = hs[t]
    return tangents


LSTM_LAYER = defprimitive("lstm_layer", lstm_layer_fwd, lstm_layer_vjp, fresh=True,
                          dvjp=lstm_layer_dvjp, jvp=lstm_layer_jvp)
GRU_LAYER = defprimitive("gru_layer", gru_layer_fwd, gru_layer_vjp, fresh=True,
                         dvjp=gru_layer_dvjp, jvp=gru_layer_jvp)


# ---- the head and the loss in one node --------------------------------------------------------

def linear_cross_entropy_fwd(h, V, c=None, targets=None, reduction="sum"):
    # L = s * sum_n [logsumexp(o_n) - o_n[y_n]],  o_n = h_n V^T + c,  s = 1 (sum) or 1/N (mean)
    flat = h.reshape(-1, h.shape[-1])
    logits = flat @ V.T
    if c is not None:
        logits += c
    loss, d_logits = softmax_cross_entropy_inplace(logits, targets)  # d_logits = softmax(o) - onehot(y)
    scale = 1.0 / len(targets) if reduction == "mean" and len(targets) else 1.0
    return np.asarray(loss * scale, dtype=logits.dtype), (flat, h.shape, V, d_logits, scale, targets)


def linear_cross_entropy_vjp(g, saved, needs):
    # D = g s (softmax(o) - onehot(y)):  dh = D V,  dV = D^T h,  dc = sum_n D_n
    flat, shape, V, d_logits, scale, _ = saved
    factor = float(g) * scale
    d = d_logits if factor == 1.0 else d_logits * factor
    dh = (d @ V).reshape(shape) if needs[0] else None
    dV = d.T @ flat if needs[1] else None
    dc = d.sum(axis=0) if len(needs) > 2 and needs[2] else None
    return (dh, dV) if len(needs) == 2 else (dh, dV, dc)


def linear_cross_entropy_dvjp(g, out, xs, saved, needs):
    # the same rule on Tensors: D = g s (softmax(h V^T + c) - onehot(y)), dh = D V, dV = D^T h, dc = sum D
    shape, scale, targets = saved[1], saved[4], saved[5]
    h, V = xs[0], xs[1]
    flat = h.reshape(-1, shape[-1])
    logits = flat @ V.T if len(xs) == 2 else flat @ V.T + xs[2]
    probs = (logits - logits.logsumexp(axis=-1, keepdims=True)).exp()
    d = (probs - _leaf(vanilla._one_hot_rows(targets, V.shape[0], probs.dtype))) * (g * scale)
    grads = ((d @ V).reshape(shape) if needs[0] else None, d.T @ flat if needs[1] else None)
    return grads if len(xs) == 2 else grads + (d.sum(axis=0) if needs[2] else None,)


def linear_cross_entropy_jvp(ts, saved, out):
    # dL = s sum_n (softmax(o_n) - onehot(y_n)) . do_n,  do = dh V^T + h dV^T + dc
    flat, shape, V, d_logits, scale, _ = saved
    th, tV, tc = (tuple(ts) + (None,))[:3]
    total = 0.0
    if th is not None:
        total += np.sum((d_logits @ V) * th.reshape(flat.shape))
    if tV is not None:
        total += np.sum((d_logits.T @ flat) * tV)
    if tc is not None:
        total += np.sum(d_logits.sum(axis=0) * tc)
    return np.asarray(total * scale, dtype=out.dtype)


LINEAR_CROSS_ENTROPY = defprimitive("linear_cross_entropy", linear_cross_entropy_fwd, linear_cross_entropy_vjp,
                                    fresh=True, dvjp=linear_cross_entropy_dvjp, jvp=linear_cross_entropy_jvp)
