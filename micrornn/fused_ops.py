"""Primitives that run a whole recurrent layer (the fused path): forward and VJP are the
hand-derived routines of ``micrornn.bptt``. They join the same table as the ops in ``ops.py``.

For higher order (create_graph) a layer's backward is written once more with Tensor ops, one time
step at a time, so the recorded gradient graph is BPTT itself; its forward-mode rule is the tangent
recursion of real-time recurrent learning.
"""
from __future__ import annotations

import numpy as np

from micrornn import bptt, ops
from micrornn.autograd import state
from micrornn.ops import defprimitive
from micrornn.tensor import apply


def rnn_layer_fwd(x, U, W, b, h0, nonlinearity="tanh"):
    hs = bptt.rnn_layer_forward(x, U, W, b, h0, nonlinearity)
    return hs, (x, hs, h0, U, W, nonlinearity)


def rnn_layer_vjp(g, saved, needs):
    # BPTT: delta_t = act'(h_t) * (g_t + delta_{t+1} W); dU = sum delta^T x, dW = sum delta^T h_{t-1}, ...
    x, hs, h0, U, W, nonlinearity = saved
    dx, dU, dW, db, dh0 = bptt.rnn_layer_backward(g, x, hs, h0, U, W, nonlinearity)
    return dx, dU, dW, db, dh0


def _at_step(scope, step):
    """The forward layer's StepScope with its step set (other scopes are kept as they are)."""
    return scope._replace(step=step) if getattr(scope, "_fields", None) == ("layer", "step") else scope


def rnn_layer_dvjp(g, out, xs, saved, needs):
    # the same BPTT on Tensors: delta_t = act'(h_t) * (g_t + delta_{t+1} W), then the weight sums
    x, U, W, b, h0 = xs
    nonlinearity, (T, B, H), layer_scope = saved[-1], out.shape, out.scope
    deltas, carry = [None] * T, None  # carry = delta_{t+1} W, what reaches h_t from step t+1
    for t in range(T - 1, -1, -1):
        state.scope = _at_step(layer_scope, t + 1)
        h = out[t]
        slope = 1 - h * h if nonlinearity == "tanh" else (h.data > 0).astype(h.dtype)  # act'(pre_t)
        deltas[t] = (g[t] if carry is None else g[t] + carry) * slope
        carry = deltas[t] @ W
    state.scope = layer_scope
    flat = apply(ops.STACK, *deltas, axis=0).reshape(T * B, H)
    dx = (flat @ U).reshape(x.shape) if needs[0] else None  # dL/dx_t = delta_t U
    dU = flat.T @ x.reshape(T * B, -1) if needs[1] else None  # dL/dU = sum_t delta_t^T x_t
    dW = None
    if needs[2]:  # dL/dW = sum_t delta_t^T h_{t-1}, with h_0 before h_1..h_{T-1}
        previous = apply(ops.CONCATENATE, h0.reshape(1, B, H), out[:T - 1], axis=0)
        dW = flat.T @ previous.reshape(T * B, H)
    db = flat.sum(axis=0) if needs[3] else None  # dL/db = sum_t sum_batch delta_t
    return dx, dU, dW, db, carry  # dL/dh0 = delta_1 W


def rnn_layer_jvp(ts, saved, out):
    # RTRL: dh_t = act'(pre_t) * (dx_t U^T + x_t dU^T + db + dh_{t-1} W^T + h_{t-1} dW^T)
    tx, tU, tW, tb, th = ts
    x, hs, h0, U, W, nonlinearity = saved
    T, B, H = hs.shape
    flat_x = x.reshape(T * B, -1)
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
        th = tangents[t] = slope[t] * d
        h_prev = hs[t]
    return tangents


RNN_LAYER = defprimitive("rnn_layer", rnn_layer_fwd, rnn_layer_vjp, dvjp=rnn_layer_dvjp, jvp=rnn_layer_jvp)
