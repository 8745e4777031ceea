"""Elementwise primitives: arithmetic, the activations, the piecewise ops and the dtype cast."""
from __future__ import annotations

import numpy as np

from micrornn.engine.ops.core import defprimitive

# ---- arithmetic ------------------------------------------------------------------------------

def add_fwd(a, b):
    return a + b, None

def add_vjp(g, saved, needs):
    # d(a+b)/da = 1, d(a+b)/db = 1
    return g, g

def sub_fwd(a, b):
    return a - b, None

def sub_vjp(g, saved, needs):
    # d(a-b)/da = 1, d(a-b)/db = -1
    return g, (-g if needs[1] else None)

def neg_fwd(a):
    return -a, None

def neg_vjp(g, saved, needs):
    # d(-a)/da = -1
    return (-g,)

def mul_fwd(a, b):
    return a * b, (a, b)

def mul_vjp(g, saved, needs):
    # d(ab)/da = b, d(ab)/db = a
    a, b = saved
    return (g * b if needs[0] else None), (g * a if needs[1] else None)

def div_fwd(a, b):
    return a / b, (a, b)

def div_vjp(g, saved, needs):
    # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
    a, b = saved
    return (g / b if needs[0] else None), (-g * a / (b * b) if needs[1] else None)

def pow_fwd(a, b):
    out = a ** b
    return out, (a, b, out)

def _pow_slope(a, b):
    """d(a^b)/da = b a^(b-1), and 0 where b = 0 (a^0 is a constant, even at a = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # 0^(b-1) may be inf where b = 0
        return np.where(b == 0, 0, b * a ** (b - 1))

def pow_vjp(g, saved, needs):
    # d(a^b)/da = b a^(b-1), d(a^b)/db = a^b log(a)
    a, b, out = saved
    return (g * _pow_slope(a, b) if needs[0] else None), (g * out * np.log(a) if needs[1] else None)

def pow_dvjp(g, out, xs, saved, needs):
    # d(a^b)/da = b a^(b-1) (a constant b: exponent b-1, or 0 where b = 0), d(a^b)/db = a^b log(a)
    a, b = xs
    ga = gb = None
    if needs[0] and b.requires_grad:
        ga = g * b * a ** (b - 1)
    elif needs[0]:
        ga = g * a ** (b.data - 1 + (b.data == 0)) * b.data  # at b = 0: a^0 * 0 = 0
    if needs[1]:
        gb = g * out * a.log()
    return ga, gb


# ---- activations -----------------------------------------------------------------------------

def exp_fwd(a):
    out = np.exp(a)
    return out, out

def exp_vjp(g, out, needs):
    # d(e^a)/da = e^a
    return (g * out,)

def log_fwd(a):
    return np.log(a), a

def log_vjp(g, a, needs):
    # d(log a)/da = 1/a
    return (g / a,)

def tanh_fwd(a, out=None):
    out = np.tanh(a, out=out)  # `out`: a slot of a caller's buffer (the RNN writes h_t into its states)
    return out, out

def tanh_vjp(g, out, needs):
    # d(tanh a)/da = 1 - tanh(a)^2   (multiplied in place: the hot op of every RNN step)
    d = 1 - out * out
    d *= g
    return (d,)

def tanh_dvjp(g, out, xs, saved, needs):
    # d(tanh a)/da = 1 - tanh(a)^2
    return (g * (1 - out * out),)

def sigmoid_fwd(a):
    a = a if a.dtype.kind == "f" else a.astype(np.float64)  # integer or bool input: float64 result
    e = np.exp(-np.abs(a))  # never overflows: sigmoid(a) = 1/(1+e^-a) for a>=0, e^a/(1+e^a) for a<0
    out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
    return out, out

def sigmoid_vjp(g, out, needs):
    # d(sigmoid a)/da = s (1 - s)
    return (g * out * (1 - out),)

def relu_fwd(a, out=None):
    out = np.maximum(a, 0, out=out)
    return out, out

def relu_vjp(g, out, needs):
    # d(relu a)/da = 1 where a > 0, else 0 (a constant mask)
    return (g * (out > 0),)


# ---- piecewise: abs, maximum, minimum, where, clip --------------------------------------------

def abs_fwd(a):
    return np.abs(a), np.sign(a)

def abs_vjp(g, sign, needs):
    # d|a|/da = sign(a), a constant   (0 at a = 0, the subgradient PyTorch and NumPy users expect)
    return (g * sign,)

def _split(g, a, b, a_wins, needs):
    """g * share to a and g * (1 - share) to b: share = [a wins] + [a = b]/2, a constant array."""
    share = np.where(a == b, 0.5, a_wins).astype(g.dtype, copy=False)
    return (g * share if needs[0] else None), (g * (1 - share) if needs[1] else None)

def maximum_fwd(a, b):
    return np.maximum(a, b), (a, b)

def maximum_vjp(g, saved, needs):
    # d max(a,b)/da = [a > b] + [a = b]/2, d/db = the rest   (ties split evenly; constants)
    a, b = saved
    return _split(g, a, b, a > b, needs)

def minimum_fwd(a, b):
    return np.minimum(a, b), (a, b)

def minimum_vjp(g, saved, needs):
    # d min(a,b)/da = [a < b] + [a = b]/2, d/db = the rest   (ties split evenly; constants)
    a, b = saved
    return _split(g, a, b, a < b, needs)

def where_fwd(cond, a, b):
    return np.where(cond, a, b), cond

def where_vjp(g, cond, needs):
    # d where(c,a,b)/da = [c], d/db = [not c]; the boolean condition gets no gradient (np.where serves Tensors)
    return (None, (np.where(cond, g, 0) if needs[1] else None),
            (np.where(cond, 0, g) if needs[2] else None))

def clip_fwd(a, lo=None, hi=None):
    return np.clip(a, lo, hi), (a, lo, hi)

def _inside(a, lo, hi):
    """[lo <= a <= hi] as a float array of a's dtype (a missing bound is no bound)."""
    return ((a >= (-np.inf if lo is None else lo)) & (a <= (np.inf if hi is None else hi))).astype(a.dtype)

def clip_vjp(g, saved, needs):
    # d clip(a, lo, hi)/da = [lo <= a <= hi], a constant mask (the bounds are constants)
    return (g * _inside(*saved),)

def astype_fwd(a, dtype):
    return a.astype(dtype), a.dtype

def astype_vjp(g, in_dtype, needs):
    # a cast moves no values: the gradient is cast back to the input's dtype
    return (g.astype(in_dtype),)


# shared=...: the VJP above also serves Tensors, reading the inputs, the output or the saved constants;
# linear=True: the tangent is the op itself on the tangents; elementwise=True: the VJP on the tangents.
ADD = defprimitive("add", add_fwd, add_vjp, linear=True, shared="saved")
SUB = defprimitive("sub", sub_fwd, sub_vjp, linear=True, shared="saved")
NEG = defprimitive("neg", neg_fwd, neg_vjp, fresh=True, linear=True, shared="saved")
MUL = defprimitive("mul", mul_fwd, mul_vjp, fresh=True, shared="inputs", elementwise=True)
DIV = defprimitive("div", div_fwd, div_vjp, fresh=True, shared="inputs", elementwise=True)
POW = defprimitive("pow", pow_fwd, pow_vjp, fresh=True, dvjp=pow_dvjp, elementwise=True)
EXP = defprimitive("exp", exp_fwd, exp_vjp, fresh=True, shared="output", elementwise=True)
LOG = defprimitive("log", log_fwd, log_vjp, fresh=True, shared="input", elementwise=True)
TANH = defprimitive("tanh", tanh_fwd, tanh_vjp, fresh=True, dvjp=tanh_dvjp, elementwise=True)
SIGMOID = defprimitive("sigmoid", sigmoid_fwd, sigmoid_vjp, fresh=True, shared="output", elementwise=True)
RELU = defprimitive("relu", relu_fwd, relu_vjp, fresh=True, shared="saved", elementwise=True)
ABS = defprimitive("abs", abs_fwd, abs_vjp, fresh=True, shared="saved", elementwise=True)
MAXIMUM = defprimitive("maximum", maximum_fwd, maximum_vjp, fresh=True, shared="saved", elementwise=True)
MINIMUM = defprimitive("minimum", minimum_fwd, minimum_vjp, fresh=True, shared="saved", elementwise=True)
WHERE = defprimitive("where", where_fwd, where_vjp, fresh=True, shared="saved", elementwise=True)
CLIP = defprimitive("clip", clip_fwd, clip_vjp, fresh=True, shared="saved", elementwise=True)
ASTYPE = defprimitive("astype", astype_fwd, astype_vjp, fresh=True, linear=True, shared="saved")
