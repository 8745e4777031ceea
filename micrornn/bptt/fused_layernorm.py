"""Fused layer primitives for the layer-norm LSTM and GRU: forward and VJP are ``bptt.lstm_ln`` and
``bptt.gru_ln``; for higher order (create_graph) the steps are replayed through Tensor ops and
differentiated, as ``fused`` does for the plain cells.

LSTM_LN_LAYER(x, U, W, b, gain_x, gain_h, gain_c, bias_c, h0, c0, mask=) -> (T, B, 2H), [h_t c_t];
GRU_LN_LAYER(x, U, W, b, b_hn, gain_x, gain_h, h0, mask=) -> (T, B, H). x is floats (T, B, I); biases
and initial states are always tensors (a layer without bias passes zeros). mask (T, B): a False
step keeps the state. Forward mode (jvp) has no rule here: the engine refuses it by name.
"""
from __future__ import annotations

import numpy as np

from micrornn.bptt import gru_ln, lstm_ln
from micrornn.bptt.fused import _at_step
from micrornn.bptt.layernorm import block_norm
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


LSTM_LN_LAYER = defprimitive("lstm_ln_layer", lstm_ln_layer_fwd, lstm_ln_layer_vjp, fresh=True, dvjp=lstm_ln_layer_dvjp)
GRU_LN_LAYER = defprimitive("gru_ln_layer", gru_ln_layer_fwd, gru_ln_layer_vjp, fresh=True, dvjp=gru_ln_layer_dvjp)
