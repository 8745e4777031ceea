"""The primitive table: each op's forward and its vector-Jacobian product (VJP) side by side.

A forward takes NumPy arrays (and keyword attributes) and returns ``(out, saved)``; ``saved`` is
what the VJP needs. A VJP takes the output gradient ``g``, ``saved`` and ``needs`` (one bool per
input: does that input want a gradient?) and returns one gradient per input (None where not
needed). A gradient may have the output's broadcast shape: the engine sums it back to the input's
shape in one place (``unbroadcast``). Two lazy gradient kinds let the engine accumulate cheaply:
``IndexGrad`` (a slice or gather's gradient, added in place into one buffer) and ``ProductGrad``
(a weight gradient ``a^T g``, batched with the other uses of the same weight before it is formed).
"""
from __future__ import annotations

import numpy as np

PRIMITIVES: dict[str, "Primitive"] = {}


class Primitive:
    """A named op: forward(*arrays, **attrs) -> (out, saved); vjp(g, saved, needs) -> grads.

    ``fresh`` (a bool, or one per input) promises that the VJP returns newly allocated arrays that
    nothing else holds, so the engine may accumulate into them in place.
    """

    __slots__ = ("name", "forward", "vjp", "fresh")

    def __init__(self, name, forward, vjp, fresh=False):
        self.name, self.forward, self.vjp, self.fresh = name, forward, vjp, fresh

    def __repr__(self):
        return f"Primitive({self.name!r})"


def defprimitive(name, forward, vjp, fresh=False) -> Primitive:
    """Register a primitive in the table and return it."""
    prim = PRIMITIVES[name] = Primitive(name, forward, vjp, fresh)
    return prim


class IndexGrad:
    """Gradient of ``a[index]``: zeros of a's shape with ``values`` added at ``index``."""

    __slots__ = ("index", "values", "advanced")

    def __init__(self, index, values):
        self.index, self.values = index, values
        self.advanced = _is_advanced(index)

    def add_into(self, buf):
        """buf[index] += values, summing repeated indices of a gather."""
        if not self.advanced:
            buf[self.index] += self.values
        elif type(self.index) is np.ndarray and self.index.dtype.kind in "iu" and buf.ndim > 1:
            _scatter_add_rows(buf, self.index, self.values)
        else:
            np.add.at(buf, self.index, self.values)


def _scatter_add_rows(buf, rows, values):
    """buf[rows] += values with repeated rows summed: sort, sum runs (np.add.at is slow on rows)."""
    rows = rows.reshape(-1)
    if not rows.size:  # an empty gather adds nothing (and reduceat needs at least one run)
        return
    if rows.min() < 0:
        rows = np.where(rows < 0, rows + buf.shape[0], rows)  # -1 and n-1 are the same row
    values = values.reshape((rows.size,) + buf.shape[1:])
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    buf[ordered[starts]] += np.add.reduceat(values[order], starts, axis=0)


class ProductGrad:
    """Gradient ``a^T g`` of a 2-D matrix ``b`` in ``a @ b``, formed lazily (rows of a and g)."""

    __slots__ = ("a", "g")

    def __init__(self, a, g):
        self.a, self.g = a, g


def _is_advanced(index) -> bool:
    """True when an index triggers NumPy advanced indexing (arrays, lists, masks)."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, (np.ndarray, list)) for i in items)


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a broadcast gradient back to ``shape`` (leading axes, then axes of size 1)."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if ones:
        grad = grad.sum(axis=ones, keepdims=True)
    return grad.reshape(shape)


# ---- elementwise binary ----------------------------------------------------------------------

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


def pow_vjp(g, saved, needs):
    # d(a^b)/da = b a^(b-1), d(a^b)/db = a^b log(a)
    a, b, out = saved
    ga = None
    if needs[0]:
        with np.errstate(divide="ignore", invalid="ignore"):  # 0^(b-1) may be inf where b = 0
            ga = g * np.where(b == 0, 0, b * a ** (b - 1))  # a^0 is a constant, even at a = 0
    gb = g * out * np.log(a) if needs[1] else None
    return ga, gb


# ---- elementwise unary -----------------------------------------------------------------------

def neg_fwd(a):
    return -a, None


def neg_vjp(g, saved, needs):
    # d(-a)/da = -1
    return (-g,)


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
    # d(relu a)/da = 1 where a > 0, else 0
    return (g * (out > 0),)


# ---- matrix product --------------------------------------------------------------------------

def matmul_fwd(a, b):
    try:
        return a @ b, (a, b)
    except ValueError:
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("operands must have at least one axis") from None
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            inner = b.shape[-2 if b.ndim > 1 else 0]
            raise ValueError(f"inner dimensions differ ({a.shape[-1]} vs {inner})") from None
        raise ValueError("batch dimensions do not broadcast") from None


def matmul_vjp(g, saved, needs):
    # d(A@B)/dA = G B^T, d(A@B)/dB = A^T G (summed over batch axes by unbroadcast)
    a, b = saved
    if b.ndim == 1:  # b's axis first: for vector @ vector, g is 0-d and becomes (1, 1)
        b, g = b[:, None], np.expand_dims(g, -1)
    if a.ndim == 1:
        a, g = a[None, :], np.expand_dims(g, -2)
    ga = g @ np.swapaxes(b, -1, -2) if needs[0] else None
    gb = None
    if needs[1]:
        if b.ndim == 2:  # a shared weight: all rows of all batches form one product, lazily
            rows = a.size // a.shape[-1] if a.shape[-1] else int(np.prod(a.shape[:-1]))  # -1 fails on 0-size
            gb = ProductGrad(a.reshape(rows, a.shape[-1]), g.reshape(rows, g.shape[-1]))
        else:
            gb = np.swapaxes(a, -1, -2) @ g
    return ga, gb


def matmul_add_fwd(a, b, c):
    out, saved = matmul_fwd(a, b)
    if out.shape != np.broadcast_shapes(out.shape, c.shape):
        raise ValueError(f"the addend {c.shape} does not broadcast to the product's shape {out.shape}")
    out += c  # one buffer for the product and the sum
    return out, saved


def matmul_add_vjp(g, saved, needs):
    # d(A@B + C) = the matmul rule for A and B, and dC = G
    ga, gb = matmul_vjp(g, saved, needs)
    return ga, gb, g


# ---- reductions ------------------------------------------------------------------------------

def _expand(g, shape, axis, keepdims):
    """Re-insert reduced axes of g so it broadcasts against ``shape``."""
    if axis is None or keepdims:
        return g.reshape([1] * len(shape)) if axis is None and not keepdims else g
    axes = (axis,) if isinstance(axis, int) else axis
    return np.expand_dims(g, tuple(ax % len(shape) for ax in axes))


def sum_fwd(a, axis=None, keepdims=False):
    return a.sum(axis=axis, keepdims=keepdims), (a.shape, axis, keepdims)


def sum_vjp(g, saved, needs):
    # d(sum a)/da_i = 1: the gradient is broadcast back over the summed axes
    shape, axis, keepdims = saved
    return (np.broadcast_to(_expand(g, shape, axis, keepdims), shape),)


def max_fwd(a, axis=None, keepdims=False):
    out = a.max(axis=axis, keepdims=keepdims)
    return out, (a, out, axis, keepdims)


def max_vjp(g, saved, needs):
    # d(max a)/da_i = 1 at the maximum (split evenly between ties), 0 elsewhere
    a, out, axis, keepdims = saved
    hit = a == _expand(out, a.shape, axis, keepdims)
    count = hit.sum(axis=axis, keepdims=True).astype(a.dtype)
    return (_expand(g, a.shape, axis, keepdims) * hit / count,)


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


# ---- shape ops -------------------------------------------------------------------------------

def reshape_fwd(a, shape):
    return a.reshape(shape), a.shape


def reshape_vjp(g, in_shape, needs):
    # reshape moves no values: the gradient is reshaped back
    return (g.reshape(in_shape),)


def transpose_fwd(a, axes=None):
    return a.transpose(axes), axes


def transpose_vjp(g, axes, needs):
    # transpose permutes values: the gradient takes the inverse permutation
    return (g.transpose(None if axes is None else np.argsort(axes)),)


def getitem_fwd(a, index):
    return a[index], index


def getitem_vjp(g, index, needs):
    # d(a[index])/da scatters g back into index (repeated gather indices add up)
    return (IndexGrad(index, g),)


def stack_fwd(*arrays, axis=0, out=None):
    if out is not None and axis == 0 and _already_stacked(arrays, out):
        return out, (len(arrays), axis)  # the inputs were written into `out` by their own ops
    return np.stack(arrays, axis=axis, out=out), (len(arrays), axis)


def _already_stacked(arrays, out) -> bool:
    """True when arrays[i] is exactly the memory of out[i] for every i."""
    step = out.strides[0] if out.ndim else 0
    start = out.__array_interface__["data"][0]
    return len(arrays) == len(out) and all(
        a.shape == out.shape[1:] and a.strides == out.strides[1:] and a.dtype == out.dtype
        and a.__array_interface__["data"][0] == start + i * step for i, a in enumerate(arrays))


def stack_vjp(g, saved, needs):
    # each input gets its slice of g along the new axis
    n, axis = saved  # axis is non-negative here
    lead = (slice(None),) * axis
    return tuple(g[lead + (i,)] if need else None for i, need in zip(range(n), needs))


def concatenate_fwd(*arrays, axis=0):
    ends = np.cumsum([a.shape[axis] for a in arrays])
    return np.concatenate(arrays, axis=axis), (ends, axis)


def concatenate_vjp(g, saved, needs):
    # each input gets its own block of g along the joined axis
    ends, axis = saved
    return tuple(np.split(g, ends[:-1], axis=axis))


# ---- piecewise ops: abs, maximum, minimum, where, clip (tensor-API issue) ----------------------

def abs_fwd(a):
    return np.abs(a), np.sign(a)


def abs_vjp(g, sign, needs):
    # d|a|/da = sign(a)   (0 at a = 0, the subgradient PyTorch and NumPy users expect)
    return (g * sign,)


def maximum_fwd(a, b):
    return np.maximum(a, b), (a, b)


def maximum_vjp(g, saved, needs):
    # d max(a,b)/da = [a > b] + [a = b]/2, d/db = [b > a] + [a = b]/2   (ties split evenly)
    a, b = saved
    share = np.where(a == b, 0.5, a > b).astype(g.dtype, copy=False)
    return (g * share if needs[0] else None), (g * (1 - share) if needs[1] else None)


def minimum_fwd(a, b):
    return np.minimum(a, b), (a, b)


def minimum_vjp(g, saved, needs):
    # d min(a,b)/da = [a < b] + [a = b]/2, d/db = [b < a] + [a = b]/2   (ties split evenly)
    a, b = saved
    share = np.where(a == b, 0.5, a < b).astype(g.dtype, copy=False)
    return (g * share if needs[0] else None), (g * (1 - share) if needs[1] else None)


def where_fwd(cond, a, b):
    return np.where(cond, a, b), cond


def where_vjp(g, cond, needs):
    # d where(c,a,b)/da = [c], d/db = [not c]; the boolean condition gets no gradient
    return (None, (np.where(cond, g, 0) if needs[1] else None),
            (np.where(cond, 0, g) if needs[2] else None))


def clip_fwd(a, lo=None, hi=None):
    return np.clip(a, lo, hi), (a, lo, hi)


def clip_vjp(g, saved, needs):
    # d clip(a, lo, hi)/da = 1 where lo <= a <= hi, else 0 (the bounds are constants)
    a, lo, hi = saved
    inside = np.ones(a.shape, dtype=bool)
    if lo is not None:
        inside &= a >= lo
    if hi is not None:
        inside &= a <= hi
    return (g * inside,)


ADD = defprimitive("add", add_fwd, add_vjp)
SUB = defprimitive("sub", sub_fwd, sub_vjp)
MUL = defprimitive("mul", mul_fwd, mul_vjp, fresh=True)
DIV = defprimitive("div", div_fwd, div_vjp, fresh=True)
POW = defprimitive("pow", pow_fwd, pow_vjp, fresh=True)
NEG = defprimitive("neg", neg_fwd, neg_vjp, fresh=True)
EXP = defprimitive("exp", exp_fwd, exp_vjp, fresh=True)
LOG = defprimitive("log", log_fwd, log_vjp, fresh=True)
TANH = defprimitive("tanh", tanh_fwd, tanh_vjp, fresh=True)
SIGMOID = defprimitive("sigmoid", sigmoid_fwd, sigmoid_vjp, fresh=True)
RELU = defprimitive("relu", relu_fwd, relu_vjp, fresh=True)
MATMUL = defprimitive("matmul", matmul_fwd, matmul_vjp, fresh=True)
MATMUL_ADD = defprimitive("matmul_add", matmul_add_fwd, matmul_add_vjp, fresh=(True, True, False))
SUM = defprimitive("sum", sum_fwd, sum_vjp)
MAX = defprimitive("max", max_fwd, max_vjp, fresh=True)
LOGSUMEXP = defprimitive("logsumexp", logsumexp_fwd, logsumexp_vjp, fresh=True)
RESHAPE = defprimitive("reshape", reshape_fwd, reshape_vjp)
TRANSPOSE = defprimitive("transpose", transpose_fwd, transpose_vjp)
GETITEM = defprimitive("getitem", getitem_fwd, getitem_vjp)
STACK = defprimitive("stack", stack_fwd, stack_vjp)
CONCATENATE = defprimitive("concatenate", concatenate_fwd, concatenate_vjp)
ABS = defprimitive("abs", abs_fwd, abs_vjp, fresh=True)
MAXIMUM = defprimitive("maximum", maximum_fwd, maximum_vjp, fresh=True)
MINIMUM = defprimitive("minimum", minimum_fwd, minimum_vjp, fresh=True)
WHERE = defprimitive("where", where_fwd, where_vjp, fresh=True)
CLIP = defprimitive("clip", clip_fwd, clip_vjp, fresh=True)


# ---- dtype cast (tensor-API issue) -------------------------------------------------------------

def astype_fwd(a, dtype):
    return a.astype(dtype), a.dtype


def astype_vjp(g, in_dtype, needs):
    # a cast moves no values: the gradient is cast back to the input's dtype
    return (g.astype(in_dtype),)


ASTYPE = defprimitive("astype", astype_fwd, astype_vjp, fresh=True)
