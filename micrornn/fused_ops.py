"""Primitives that run a whole recurrent layer (the fused path): forward and VJP are the
hand-derived routines of ``micrornn.bptt``. They join the same table as the ops in ``ops.py``.

RNN_LAYER(x, U, W, b, h0) -> (T, B, H); LSTM_LAYER(x, U, W, b, h0, c0) -> (T, B, 2H) with h_t in
[..., :H] and c_t in [..., H:]; GRU_LAYER(x, U, W, b, b_hn, h0) -> (T, B, H). Biases and initial
states are always tensors here (a layer without bias passes zeros).
"""
from __future__ import annotations

import numpy as np

from micrornn import bptt
from micrornn.bptt import gru, lstm
from micrornn.ops import defprimitive


def rnn_layer_fwd(x, U, W, b, h0, nonlinearity="tanh"):
    hs = bptt.rnn_layer_forward(x, U, W, b, h0, nonlinearity)
    return hs, (x, hs, h0, U, W, nonlinearity)


def rnn_layer_vjp(g, saved, needs):
    # BPTT: delta_t = act'(h_t) * (g_t + delta_{t+1} W); dU = sum delta^T x, dW = sum delta^T h_{t-1}, ...
    x, hs, h0, U, W, nonlinearity = saved
    dx, dU, dW, db, dh0 = bptt.rnn_layer_backward(g, x, hs, h0, U, W, nonlinearity)
    return dx, dU, dW, db, dh0


RNN_LAYER = defprimitive("rnn_layer", rnn_layer_fwd, rnn_layer_vjp)


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
