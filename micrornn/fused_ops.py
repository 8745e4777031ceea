"""Primitives that run a whole recurrent layer (the fused path): forward and VJP are the
hand-derived routines of ``micrornn.bptt``. They join the same table as the ops in ``ops.py``.
"""
from __future__ import annotations

from micrornn import bptt
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
