"""Primitives that run a whole recurrent layer (the fused path): forward and VJP are the
hand-derived routines of ``micrornn.bptt``. They join the same table as the ops in ``ops.py``.

RNN_LAYER(x, U, W, b, h0) -> (T, B, H); LSTM_LAYER(x, U, W, b, h0, c0) -> (T, B, 2H) with h_t in
[..., :H] and c_t in [..., H:]; GRU_LAYER(x, U, W, b, b_hn, h0) -> (T, B, H). Biases and initial
states are always tensors here (a layer without bias passes zeros). RNN_LAYER also takes index
inputs x (T, B) for one-hot rows.

LINEAR_CROSS_ENTROPY(h, V[, c], targets=, reduction=) is the head and the loss of a sequence model
in one node: the softmax cross-entropy of h V^T + c against integer targets, summed or averaged.
"""
from __future__ import annotations

import numpy as np

from micrornn.bptt import gru, lstm, vanilla
from micrornn.bptt.shared import softmax_cross_entropy_inplace
from micrornn.autograd import state
from micrornn.ops import defprimitive


def rnn_layer_fwd(x, U, W, b, h0, nonlinearity="tanh"):
    # x: floats (T, B, I), or indices (T, B) read as one-hot rows (one gather of [U^T + b] rows)
    # (a zero h0, the usual start, adds nothing: the products with it are skipped both ways)
    hs = vanilla.layer_forward(x, U, W, b, h0 if h0.any() else None, nonlinearity)  # nn.RNN checked the shapes
    return hs, (x, hs, h0, U, W, nonlinearity)


def rnn_layer_vjp(g, saved, needs):
    # BPTT: delta_t = act'(h_t) * (g_t + delta_{t+1} W); dU = sum delta^T x, dW = sum delta^T h_{t-1}, ...
    x, hs, h0, U, W, nonlinearity = saved
    dx, dU, dW, db, dh0 = vanilla.layer_backward(g, x, hs, h0 if h0.any() else None, U, W, nonlinearity,
                                                 need_dx=needs[0] or state.anomaly, need_dh0=needs[4])
    # (detect_anomaly locates a bad time step in dx, so it gets one even when nobody else asks)
    return dx, dU, dW, db, dh0


RNN_LAYER = defprimitive("rnn_layer", rnn_layer_fwd, rnn_layer_vjp, fresh=True)


def lstm_layer_fwd(x, U, W, b, h0, c0):
    hs, cs, gates = lstm.lstm_layer_forward(x, U, W, b, h0, c0)
    return np.concatenate([hs, cs], axis=2), (x, hs, cs, gates, h0, c0, U, W)


def lstm_layer_vjp(g, saved, needs):
    # gh_t = g_h,t + da_{t+1} W;  gc_t = g_c,t + gh_t o tanh'(c_t) + gc_{t+1} f_{t+1};  dU = sum da^T x, ...
    x, hs, cs, gates, h0, c0, U, W = saved
    H = hs.shape[2]
    return lstm.lstm_layer_backward(g[..., :H], g[..., H:], x, hs, cs, gates, h0, c0, U, W)


def gru_layer_fwd(x, U, W, b, b_hn, h0):
    hs, gates, hns = gru.gru_layer_forward(x, U, W, b, b_hn, h0)
    return hs, (x, hs, gates, hns, h0, U, W)


def gru_layer_vjp(g, saved, needs):
    # gh_{t-1} = g_{t-1} + [dar, daz, dan*r] W + gh_t z;  dU = sum [dar, daz, dan]^T x, ...
    x, hs, gates, hns, h0, U, W = saved
    return gru.gru_layer_backward(g, x, hs, gates, hns, h0, U, W)


LSTM_LAYER = defprimitive("lstm_layer", lstm_layer_fwd, lstm_layer_vjp, fresh=True)
GRU_LAYER = defprimitive("gru_layer", gru_layer_fwd, gru_layer_vjp, fresh=True)


def linear_cross_entropy_fwd(h, V, c=None, targets=None, reduction="sum"):
    # L = s * sum_n [logsumexp(o_n) - o_n[y_n]],  o_n = h_n V^T + c,  s = 1 (sum) or 1/N (mean)
    flat = h.reshape(-1, h.shape[-1])
    logits = flat @ V.T
    if c is not None:
        logits += c
    loss, d_logits = softmax_cross_entropy_inplace(logits, targets)  # d_logits = softmax(o) - onehot(y)
    scale = 1.0 / len(targets) if reduction == "mean" and len(targets) else 1.0
    return np.asarray(loss * scale, dtype=logits.dtype), (flat, h.shape, V, d_logits, scale)


def linear_cross_entropy_vjp(g, saved, needs):
    # D = g s (softmax(o) - onehot(y)):  dh = D V,  dV = D^T h,  dc = sum_n D_n
    flat, shape, V, d_logits, scale = saved
    factor = float(g) * scale
    d = d_logits if factor == 1.0 else d_logits * factor
    dh = (d @ V).reshape(shape) if needs[0] else None
    dV = d.T @ flat if needs[1] else None
    dc = d.sum(axis=0) if len(needs) > 2 and needs[2] else None
    return (dh, dV) if len(needs) == 2 else (dh, dV, dc)


LINEAR_CROSS_ENTROPY = defprimitive("linear_cross_entropy", linear_cross_entropy_fwd, linear_cross_entropy_vjp,
                                    fresh=True)
