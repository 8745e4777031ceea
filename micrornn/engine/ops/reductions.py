"""Reductions: sum, max and logsumexp, with broadcast_to (the gradient of sum, as a Tensor op)."""
from __future__ import annotations

import numpy as np

from micrornn.engine.ops.core import defprimitive, record, unbroadcast

def _kept_shape(shape, axis) -> tuple:
    """``shape`` with the reduced axes kept as size 1."""
    axes = range(len(shape)) if axis is None else ((axis,) if isinstance(axis, int) else axis)
    reduced = {a % len(shape) for a in axes} if shape else set()
    return tuple(1 if i in reduced else n for i, n in enumerate(shape))

def sum_fwd(a, axis=None, keepdims=False):
    return a.sum(axis=axis, keepdims=keepdims), (a.shape, axis)

def sum_vjp(g, saved, needs):
    # d(sum a)/da_i = 1: the gradient is broadcast back over the summed axes
    shape, axis = saved
    return (np.broadcast_to(g.reshape(_kept_shape(shape, axis)), shape),)

def sum_dvjp(g, out, xs, saved, needs):
    # d(sum a)/da_i = 1: g broadcast back over the summed axes (a broadcast_to node)
    shape, axis = saved
    return (record(BROADCAST_TO, g.reshape(_kept_shape(shape, axis)), shape=shape),)

def broadcast_to_fwd(a, shape):
    return np.broadcast_to(a, shape).copy(), a.shape

def broadcast_to_vjp(g, in_shape, needs):
    # broadcasting copies a: its gradient sums over the copies
    return (unbroadcast(g, in_shape),)

def max_fwd(a, axis=None, keepdims=False):
    out = a.max(axis=axis, keepdims=keepdims)
    return out, (a, out, axis)

def _max_share(a, out, axis):
    """1/count at the maxima of each reduced group, 0 elsewhere (a constant: max is piecewise linear)."""
    hit = a == out.reshape(_kept_shape(a.shape, axis))
    return hit / hit.sum(axis=axis, keepdims=True).astype(a.dtype)

def max_vjp(g, saved, needs):
    # d(max a)/da_i = 1/count at the maxima (ties split evenly), 0 elsewhere
    a, out, axis = saved
    return (g.reshape(_kept_shape(a.shape, axis)) * _max_share(a, out, axis).astype(g.dtype, copy=False),)

def max_jvp(ts, saved, out):
    # d(max a) = mean of da over the maxima
    a, _, axis = saved
    return (ts[0] * _max_share(a, out, axis)).sum(axis=axis, keepdims=True).reshape(out.shape)

def logsumexp_fwd(a, axis=-1, keepdims=False):
    peak = a.max(axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0)  # an all -inf row keeps logsumexp = -inf, not nan
    e = np.exp(a - peak)  # shifted so the largest term is exp(0): no overflow at logits of 1000
    total = e.sum(axis=axis, keepdims=True)
    out = np.log(total) + peak
    return (out if keepdims else np.squeeze(out, axis)), (e / total, axis, keepdims)

def logsumexp_vjp(g, saved, needs):
    # d log(sum_j e^a_j)/da_i = softmax(a)_i
    softmax, axis, keepdims = saved
    return ((g if keepdims else np.expand_dims(g, axis)) * softmax,)

def logsumexp_dvjp(g, out, xs, saved, needs):
    # d logsumexp(a)/da_i = softmax(a)_i = exp(a_i - logsumexp(a)), on Tensors so it is differentiable
    a, (_, axis, keepdims) = xs[0], saved
    kept = _kept_shape(a.shape, axis)
    softmax = (a - (out if keepdims else out.reshape(kept))).exp()
    return ((g if keepdims else g.reshape(kept)) * softmax,)

def logsumexp_jvp(ts, saved, out):
    # d logsumexp(a) = sum_i softmax(a)_i da_i
    softmax, axis, _ = saved
    return (ts[0] * softmax).sum(axis=axis, keepdims=True).reshape(out.shape)

SUM = defprimitive("sum", sum_fwd, sum_vjp, dvjp=sum_dvjp, linear=True)
BROADCAST_TO = defprimitive("broadcast_to", broadcast_to_fwd, broadcast_to_vjp, linear=True, shared="saved")
MAX = defprimitive("max", max_fwd, max_vjp, fresh=True, shared="saved", jvp=max_jvp)
LOGSUMEXP = defprimitive("logsumexp", logsumexp_fwd, logsumexp_vjp, fresh=True, dvjp=logsumexp_dvjp,
                         jvp=logsumexp_jvp)
