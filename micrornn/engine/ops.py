"""The primitive table: each op's forward and its vector-Jacobian product (VJP) side by side.

A forward takes NumPy arrays (and keyword attributes) and returns ``(out, saved)``; ``saved`` is
what the VJP needs. A VJP takes the output gradient ``g``, ``saved`` and ``needs`` (one bool per
input: does that input want a gradient?) and returns one gradient per input (None where not
needed). A gradient may have the output's broadcast shape: the engine sums it back to the input's
shape in one place (``unbroadcast``). Two lazy gradient kinds let the engine accumulate cheaply:
``IndexGrad`` (a slice or gather's gradient, added in place into one buffer) and ``ProductGrad``
(a weight gradient ``a^T g``, batched with the other uses of the same weight before it is formed).

Beside each VJP sit two rules for higher-order and forward mode (micrornn.engine.transforms, micrornn.engine.forward):
``dvjp(g, out, xs, saved, needs)``, the same VJP written with Tensor ops on the Tensors ``g``, the
output ``out`` and the inputs ``xs``, used only by ``grad(..., create_graph=True)`` so that the
gradient is itself a graph (any order works: those ops have rules too); and
``jvp(ts, saved, out)``, the Jacobian-vector product: the output's tangent from the inputs'
tangents ``ts`` (ndarrays, None for an input without a tangent) and the output array ``out``.
"""
from __future__ import annotations

import numpy as np

PRIMITIVES: dict[str, "Primitive"] = {}


class Primitive:
    """A named op: forward(*arrays, **attrs) -> (out, saved); vjp(g, saved, needs) -> grads.

    ``fresh`` (a bool, or one per input) promises that the VJP returns newly allocated arrays that
    nothing else holds, so the engine may accumulate into them in place. ``dvjp`` and ``jvp`` are
    the optional higher-order and forward-mode rules described at the top of this module.
    """

    __slots__ = ("name", "forward", "vjp", "fresh", "dvjp", "jvp")

    def __init__(self, name, forward, vjp, fresh=False, dvjp=None, jvp=None):
        self.name, self.forward, self.vjp, self.fresh = name, forward, vjp, fresh
        self.dvjp, self.jvp = dvjp, jvp

    def __repr__(self):
        return f"Primitive({self.name!r})"


def defprimitive(name, forward, vjp, fresh=False, dvjp=None, jvp=None) -> Primitive:
    """Register a primitive in the table and return it."""
    prim = PRIMITIVES[name] = Primitive(name, forward, vjp, fresh, dvjp, jvp)
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
    if type(index) is int or type(index) is slice:  # the common basic indices, decided at once
        return False
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


def sum_to(g, shape: tuple):
    """``unbroadcast`` for a Tensor: the same sums, recorded in the graph (create_graph mode)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if ones:
        g = g.sum(axis=ones, keepdims=True)
    return g if g.shape == shape else g.reshape(shape)


def _apply(prim, *inputs, **attrs):
    """Record ``prim`` on Tensor inputs (for the dvjp rules; the Tensor layer sits above this table)."""
    return inputs[0].apply(prim, *inputs, **attrs)


def _total(*terms):
    """The sum of the terms that are not None (None when all are): a JVP's contributions."""
    present = [t for t in terms if t is not None]
    if not present:
        return None
    total = present[0]
    for t in present[1:]:
        total = total + t
    return total


# ---- elementwise binary ----------------------------------------------------------------------

def add_fwd(a, b):
    return a + b, None


def add_vjp(g, saved, needs):
    # d(a+b)/da = 1, d(a+b)/db = 1
    return g, g


def add_dvjp(g, out, xs, saved, needs):
    # d(a+b)/da = 1, d(a+b)/db = 1
    return g, g


def add_jvp(ts, saved, out):
    # d(a+b) = da + db
    return _total(*ts)


def sub_fwd(a, b):
    return a - b, None


def sub_vjp(g, saved, needs):
    # d(a-b)/da = 1, d(a-b)/db = -1
    return g, (-g if needs[1] else None)


def sub_dvjp(g, out, xs, saved, needs):
    # d(a-b)/da = 1, d(a-b)/db = -1
    return g, (-g if needs[1] else None)


def sub_jvp(ts, saved, out):
    # d(a-b) = da - db
    ta, tb = ts
    return _total(ta, None if tb is None else -tb)


def mul_fwd(a, b):
    return a * b, (a, b)


def mul_vjp(g, saved, needs):
    # d(ab)/da = b, d(ab)/db = a
    a, b = saved
    return (g * b if needs[0] else None), (g * a if needs[1] else None)


def mul_dvjp(g, out, xs, saved, needs):
    # d(ab)/da = b, d(ab)/db = a
    a, b = xs
    return (g * b if needs[0] else None), (g * a if needs[1] else None)


def mul_jvp(ts, saved, out):
    # d(ab) = da b + a db
    (ta, tb), (a, b) = ts, saved
    return _total(None if ta is None else ta * b, None if tb is None else a * tb)


def div_fwd(a, b):
    return a / b, (a, b)


def div_vjp(g, saved, needs):
    # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
    a, b = saved
    return (g / b if needs[0] else None), (-g * a / (b * b) if needs[1] else None)


def div_dvjp(g, out, xs, saved, needs):
    # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -(a/b)/b
    b = xs[1]
    return (g / b if needs[0] else None), (-(g * out) / b if needs[1] else None)


def div_jvp(ts, saved, out):
    # d(a/b) = da/b - (a/b) db/b
    (ta, tb), b = ts, saved[1]
    return _total(None if ta is None else ta / b, None if tb is None else -tb * out / b)


def pow_fwd(a, b):
    out = a ** b
    return out, (a, b, out)


def pow_vjp(g, saved, needs):
    # d(a^b)/da = b a^(b-1), d(a^b)/db = a^b log(a)
    a, b, out = saved
    ga = g * _pow_slope(a, b) if needs[0] else None
    gb = g * out * np.log(a) if needs[1] else None
    return ga, gb


def _pow_slope(a, b):
    """d(a^b)/da = b a^(b-1), and 0 where b = 0 (a^0 is a constant, even at a = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # 0^(b-1) may be inf where b = 0
        return np.where(b == 0, 0, b * a ** (b - 1))


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


def pow_jvp(ts, saved, out):
    # d(a^b) = b a^(b-1) da + a^b log(a) db
    (ta, tb), (a, b, _) = ts, saved
    return _total(None if ta is None else ta * _pow_slope(a, b), None if tb is None else tb * out * np.log(a))


# ---- elementwise unary -----------------------------------------------------------------------

def neg_fwd(a):
    return -a, None


def neg_vjp(g, saved, needs):
    # d(-a)/da = -1
    return (-g,)


def neg_dvjp(g, out, xs, saved, needs):
    # d(-a)/da = -1
    return (-g,)


def neg_jvp(ts, saved, out):
    # d(-a) = -da
    return -ts[0]


def exp_fwd(a):
    out = np.exp(a)
    return out, out


def exp_vjp(g, out, needs):
    # d(e^a)/da = e^a
    return (g * out,)


def exp_dvjp(g, out, xs, saved, needs):
    # d(e^a)/da = e^a
    return (g * out,)


def exp_jvp(ts, saved, out):
    # d(e^a) = e^a da
    return ts[0] * out


def log_fwd(a):
    return np.log(a), a


def log_vjp(g, a, needs):
    # d(log a)/da = 1/a
    return (g / a,)


def log_dvjp(g, out, xs, saved, needs):
    # d(log a)/da = 1/a
    return (g / xs[0],)


def log_jvp(ts, saved, out):
    # d(log a) = da/a
    return ts[0] / saved


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


def tanh_jvp(ts, saved, out):
    # d(tanh a) = (1 - tanh(a)^2) da
    return ts[0] * (1 - out * out)


def sigmoid_fwd(a):
    a = a if a.dtype.kind == "f" else a.astype(np.float64)  # integer or bool input: float64 result
    e = np.exp(-np.abs(a))  # never overflows: sigmoid(a) = 1/(1+e^-a) for a>=0, e^a/(1+e^a) for a<0
    out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
    return out, out


def sigmoid_vjp(g, out, needs):
    # d(sigmoid a)/da = s (1 - s)
    return (g * out * (1 - out),)


def sigmoid_dvjp(g, out, xs, saved, needs):
    # d(sigmoid a)/da = s (1 - s)
    return (g * (out * (1 - out)),)


def sigmoid_jvp(ts, saved, out):
    # d(sigmoid a) = s (1 - s) da
    return ts[0] * out * (1 - out)


def relu_fwd(a, out=None):
    out = np.maximum(a, 0, out=out)
    return out, out


def relu_vjp(g, out, needs):
    # d(relu a)/da = 1 where a > 0, else 0
    return (g * (out > 0),)


def relu_dvjp(g, out, xs, saved, needs):
    # d(relu a)/da = 1 where a > 0, else 0 (a constant mask)
    return (g * (out.data > 0).astype(g.dtype),)


def relu_jvp(ts, saved, out):
    # d(relu a) = [a > 0] da
    return ts[0] * (out > 0)


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


def _swap_last(t):
    """A Tensor with its last two axes swapped."""
    axes = list(range(t.ndim))
    axes[-2], axes[-1] = axes[-1], axes[-2]
    return t.transpose(axes)


def matmul_dvjp(g, out, xs, saved, needs):
    # d(A@B)/dA = G B^T, d(A@B)/dB = A^T G; a 1-d operand gets a unit axis, dropped again after
    a, b = xs
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    if vector_b:
        b, g = b.reshape(-1, 1), g.reshape(g.shape + (1,))
    if vector_a:
        a, g = a.reshape(1, -1), g.reshape(g.shape[:-1] + (1,) + g.shape[-1:])
    ga = g @ _swap_last(b) if needs[0] else None
    gb = _swap_last(a) @ g if needs[1] else None
    if ga is not None and vector_a:
        ga = ga.reshape(ga.shape[:-2] + ga.shape[-1:])
    if gb is not None and vector_b:
        gb = gb.reshape(gb.shape[:-1])
    return ga, gb


def matmul_jvp(ts, saved, out):
    # d(A@B) = dA B + A dB
    (ta, tb), (a, b) = ts, saved
    return _total(None if ta is None else ta @ b, None if tb is None else a @ tb)


def matmul_add_fwd(a, b, c):
    out, saved = matmul_fwd(a, b)
    try:
        out += c  # one buffer for the product and the sum; refuses an addend that would grow it
    except ValueError:
        raise ValueError(f"the addend {c.shape} does not broadcast to the product's shape {out.shape}") from None
    return out, saved


def matmul_add_vjp(g, saved, needs):
    # d(A@B + C) = the matmul rule for A and B, and dC = G
    ga, gb = matmul_vjp(g, saved, needs)
    return ga, gb, g


def matmul_add_dvjp(g, out, xs, saved, needs):
    # d(A@B + C) = the matmul rule for A and B, and dC = G
    ga, gb = matmul_dvjp(g, out, xs[:2], saved, needs[:2])
    return ga, gb, g


def matmul_add_jvp(ts, saved, out):
    # d(A@B + C) = dA B + A dB + dC
    return _total(matmul_jvp(ts[:2], saved, out), ts[2])


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


def _kept_shape(shape, axis) -> tuple:
    """``shape`` with the reduced axes kept as size 1."""
    axes = range(len(shape)) if axis is None else ((axis,) if isinstance(axis, int) else axis)
    reduced = {a % len(shape) for a in axes} if shape else set()
    return tuple(1 if i in reduced else n for i, n in enumerate(shape))


def sum_dvjp(g, out, xs, saved, needs):
    # d(sum a)/da_i = 1: g broadcast back over the summed axes
    shape, axis, _ = saved
    return (_apply(BROADCAST_TO, g.reshape(_kept_shape(shape, axis)), shape=shape),)


def sum_jvp(ts, saved, out):
    # d(sum a) = sum da
    _, axis, keepdims = saved
    return ts[0].sum(axis=axis, keepdims=keepdims)


def max_fwd(a, axis=None, keepdims=False):
    out = a.max(axis=axis, keepdims=keepdims)
    return out, (a, out, axis, keepdims)


def max_vjp(g, saved, needs):
    # d(max a)/da_i = 1 at the maximum (split evenly between ties), 0 elsewhere
    a, out, axis, keepdims = saved
    hit = a == _expand(out, a.shape, axis, keepdims)
    count = hit.sum(axis=axis, keepdims=True).astype(a.dtype)
    return (_expand(g, a.shape, axis, keepdims) * hit / count,)


def _max_share(a, out, axis, keepdims):
    """1/count at the maxima of each reduced group, 0 elsewhere (a constant: max is piecewise linear)."""
    hit = a == _expand(out, a.shape, axis, keepdims)
    return hit / hit.sum(axis=axis, keepdims=True).astype(a.dtype)


def max_dvjp(g, out, xs, saved, needs):
    # d(max a)/da_i = 1/count at the maxima, 0 elsewhere
    a, out_data, axis, keepdims = saved
    share = _max_share(a, out_data, axis, keepdims).astype(g.dtype, copy=False)
    return (g.reshape(_kept_shape(a.shape, axis)) * share,)


def max_jvp(ts, saved, out):
    # d(max a) = mean of da over the maxima
    a, _, axis, keepdims = saved
    return (ts[0] * _max_share(a, out, axis, keepdims)).sum(axis=axis, keepdims=True).reshape(out.shape)


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


# ---- shape ops -------------------------------------------------------------------------------

def reshape_fwd(a, shape):
    return a.reshape(shape), a.shape


def reshape_vjp(g, in_shape, needs):
    # reshape moves no values: the gradient is reshaped back
    return (g.reshape(in_shape),)


def reshape_dvjp(g, out, xs, in_shape, needs):
    # reshape moves no values: the gradient is reshaped back
    return (g.reshape(in_shape),)


def reshape_jvp(ts, saved, out):
    # d(reshape a) = reshape da
    return ts[0].reshape(out.shape)


def transpose_fwd(a, axes=None):
    return a.transpose(axes), axes


def transpose_vjp(g, axes, needs):
    # transpose permutes values: the gradient takes the inverse permutation
    return (g.transpose(None if axes is None else np.argsort(axes)),)


def transpose_dvjp(g, out, xs, axes, needs):
    # transpose permutes values: the gradient takes the inverse permutation
    return (g.transpose() if axes is None else g.transpose(tuple(int(i) for i in np.argsort(axes))),)


def transpose_jvp(ts, axes, out):
    # d(transpose a) = transpose da
    return ts[0].transpose(axes)


def getitem_fwd(a, index):
    return a[index], index


def getitem_vjp(g, index, needs):
    # d(a[index])/da scatters g back into index (repeated gather indices add up)
    return (IndexGrad(index, g),)


def getitem_dvjp(g, out, xs, index, needs):
    # d(a[index])/da scatters g back into index: a scatter_add node, whose own VJP gathers again
    return (_apply(SCATTER_ADD, g, shape=xs[0].shape, index=index),)


def getitem_jvp(ts, index, out):
    # d(a[index]) = da[index]
    return ts[0][index]


def stack_fwd(*arrays, axis=0, out=None):
    if out is not None and axis == 0 and _already_stacked(arrays, out):
        return out, (len(arrays), axis)  # the inputs were written into `out` by their own ops
    return np.stack(arrays, axis=axis, out=out), (len(arrays), axis)


def _already_stacked(arrays, out) -> bool:
    """True when arrays[i] is the memory of out[i] for every i: each a view of out's buffer with a
    row's shape and strides, the first at out[0] and the last at out[-1] (``out=`` is for callers
    that wrote each input into its row, like nn.recurrent.unroll; only the ends' addresses are read,
    as reading every address cost more than the rest of the check)."""
    if not arrays or len(arrays) != len(out) or out.ndim == 0:
        return False
    base = out if out.base is None else out.base
    shape, strides, dtype = out.shape[1:], out.strides[1:], out.dtype
    if not all(a.base is base and a.shape == shape and a.strides == strides and a.dtype == dtype for a in arrays):
        return False
    start = _address(out)
    return (_address(arrays[0]) == start
            and _address(arrays[-1]) == start + (len(arrays) - 1) * out.strides[0])


def _address(array) -> int:
    """Where an array's data starts in memory."""
    return array.__array_interface__["data"][0]


def stack_vjp(g, saved, needs):
    # each input gets its slice of g along the new axis
    n, axis = saved  # axis is non-negative here
    lead = (slice(None),) * axis
    return tuple(g[lead + (i,)] if need else None for i, need in zip(range(n), needs))


def stack_dvjp(g, out, xs, saved, needs):
    # each input gets its slice of g along the new axis
    n, axis = saved
    lead = (slice(None),) * axis
    return tuple(g[lead + (i,)] if need else None for i, need in zip(range(n), needs))


def stack_jvp(ts, saved, out):
    # d(stack a_i) = stack da_i (zeros for inputs without a tangent)
    axis = saved[1]
    piece = out.shape[:axis] + out.shape[axis + 1:]
    return np.stack([np.zeros(piece, out.dtype) if t is None else t for t in ts], axis=axis)


def concatenate_fwd(*arrays, axis=0):
    ends = np.cumsum([a.shape[axis] for a in arrays])
    return np.concatenate(arrays, axis=axis), (ends, axis)


def concatenate_vjp(g, saved, needs):
    # each input gets its own block of g along the joined axis
    ends, axis = saved
    return tuple(np.split(g, ends[:-1], axis=axis))


def concatenate_dvjp(g, out, xs, saved, needs):
    # each input gets its own block of g along the joined axis
    ends, axis = saved
    lead, starts = (slice(None),) * axis, [0, *ends[:-1]]
    return tuple(g[lead + (slice(int(s), int(e)),)] if need else None for s, e, need in zip(starts, ends, needs))


def concatenate_jvp(ts, saved, out):
    # d(concatenate a_i) = concatenate da_i (zeros for inputs without a tangent)
    ends, axis = saved
    sizes = np.diff([0, *ends])
    return np.concatenate([np.zeros(out.shape[:axis] + (int(n),) + out.shape[axis + 1:], out.dtype)
                           if t is None else t for t, n in zip(ts, sizes)], axis=axis)


# ---- piecewise ops: abs, maximum, minimum, where, clip (tensor-API issue) ----------------------

def abs_fwd(a):
    return np.abs(a), np.sign(a)


def abs_vjp(g, sign, needs):
    # d|a|/da = sign(a)   (0 at a = 0, the subgradient PyTorch and NumPy users expect)
    return (g * sign,)


def abs_dvjp(g, out, xs, sign, needs):
    # d|a|/da = sign(a), a constant (|a| is piecewise linear)
    return (g * sign.astype(g.dtype, copy=False),)


def abs_jvp(ts, sign, out):
    # d|a| = sign(a) da
    return ts[0] * sign


def maximum_fwd(a, b):
    return np.maximum(a, b), (a, b)


def maximum_vjp(g, saved, needs):
    # d max(a,b)/da = [a > b] + [a = b]/2, d/db = [b > a] + [a = b]/2   (ties split evenly)
    a, b = saved
    share = np.where(a == b, 0.5, a > b).astype(g.dtype, copy=False)
    return (g * share if needs[0] else None), (g * (1 - share) if needs[1] else None)


def _pick_share(a, b, pick_a):
    """[a wins] + [a = b]/2 as a constant array: the share of the gradient that goes to a."""
    return np.where(a == b, 0.5, pick_a)


def maximum_dvjp(g, out, xs, saved, needs):
    # d max(a,b)/da = [a > b] + [a = b]/2, d/db = the rest (constants: max is piecewise linear)
    a, b = saved
    share = _pick_share(a, b, a > b).astype(g.dtype, copy=False)
    return (g * share if needs[0] else None), (g * (1 - share) if needs[1] else None)


def maximum_jvp(ts, saved, out):
    # d max(a,b) = share da + (1 - share) db
    (ta, tb), (a, b) = ts, saved
    share = _pick_share(a, b, a > b)
    return _total(None if ta is None else ta * share, None if tb is None else tb * (1 - share))


def minimum_fwd(a, b):
    return np.minimum(a, b), (a, b)


def minimum_vjp(g, saved, needs):
    # d min(a,b)/da = [a < b] + [a = b]/2, d/db = [b < a] + [a = b]/2   (ties split evenly)
    a, b = saved
    share = np.where(a == b, 0.5, a < b).astype(g.dtype, copy=False)
    return (g * share if needs[0] else None), (g * (1 - share) if needs[1] else None)


def minimum_dvjp(g, out, xs, saved, needs):
    # d min(a,b)/da = [a < b] + [a = b]/2, d/db = the rest
    a, b = saved
    share = _pick_share(a, b, a < b).astype(g.dtype, copy=False)
    return (g * share if needs[0] else None), (g * (1 - share) if needs[1] else None)


def minimum_jvp(ts, saved, out):
    # d min(a,b) = share da + (1 - share) db
    (ta, tb), (a, b) = ts, saved
    share = _pick_share(a, b, a < b)
    return _total(None if ta is None else ta * share, None if tb is None else tb * (1 - share))


def where_fwd(cond, a, b):
    return np.where(cond, a, b), cond


def where_vjp(g, cond, needs):
    # d where(c,a,b)/da = [c], d/db = [not c]; the boolean condition gets no gradient
    return (None, (np.where(cond, g, 0) if needs[1] else None),
            (np.where(cond, 0, g) if needs[2] else None))


def where_dvjp(g, out, xs, cond, needs):
    # d where(c,a,b)/da = [c], d/db = [not c] (constant masks)
    mask = np.asarray(cond, dtype=bool)
    return (None, (g * mask.astype(g.dtype) if needs[1] else None),
            (g * (~mask).astype(g.dtype) if needs[2] else None))


def where_jvp(ts, cond, out):
    # d where(c,a,b) = where(c, da, db)
    _, ta, tb = ts
    return np.where(cond, 0 if ta is None else ta, 0 if tb is None else tb)


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


def _inside(a, lo, hi):
    """[lo <= a <= hi] as a float array of a's dtype (a missing bound is no bound)."""
    inside = np.ones(a.shape, dtype=bool)
    if lo is not None:
        inside &= a >= lo
    if hi is not None:
        inside &= a <= hi
    return inside.astype(a.dtype)


def clip_dvjp(g, out, xs, saved, needs):
    # d clip(a, lo, hi)/da = [lo <= a <= hi], a constant mask
    return (g * _inside(*saved).astype(g.dtype, copy=False),)


def clip_jvp(ts, saved, out):
    # d clip(a, lo, hi) = [lo <= a <= hi] da
    return ts[0] * _inside(*saved)


# ---- ops that only the rules above create (the gradients of sum and getitem, as Tensors) --------

def broadcast_to_fwd(a, shape):
    return np.broadcast_to(a, shape).copy(), a.shape


def broadcast_to_vjp(g, in_shape, needs):
    # broadcasting copies a: its gradient sums over the copies
    return (unbroadcast(g, in_shape),)


def broadcast_to_dvjp(g, out, xs, in_shape, needs):
    # broadcasting copies a: its gradient sums over the copies
    return (sum_to(g, in_shape),)


def broadcast_to_jvp(ts, in_shape, out):
    # d(broadcast a) = broadcast da
    return np.broadcast_to(ts[0], out.shape)


def scatter_add_fwd(values, shape, index):
    out = np.zeros(shape, dtype=values.dtype)
    IndexGrad(index, values).add_into(out)
    return out, index


def scatter_add_vjp(g, index, needs):
    # out = zeros with values added at index: d out/d values gathers g at index
    return (g[index],)


def scatter_add_dvjp(g, out, xs, index, needs):
    # d out/d values gathers g at index
    return (g[index],)


def scatter_add_jvp(ts, index, out):
    # d(scatter values) = scatter d(values)
    return scatter_add_fwd(ts[0], out.shape, index)[0]


ADD = defprimitive("add", add_fwd, add_vjp, dvjp=add_dvjp, jvp=add_jvp)
SUB = defprimitive("sub", sub_fwd, sub_vjp, dvjp=sub_dvjp, jvp=sub_jvp)
MUL = defprimitive("mul", mul_fwd, mul_vjp, fresh=True, dvjp=mul_dvjp, jvp=mul_jvp)
DIV = defprimitive("div", div_fwd, div_vjp, fresh=True, dvjp=div_dvjp, jvp=div_jvp)
POW = defprimitive("pow", pow_fwd, pow_vjp, fresh=True, dvjp=pow_dvjp, jvp=pow_jvp)
NEG = defprimitive("neg", neg_fwd, neg_vjp, fresh=True, dvjp=neg_dvjp, jvp=neg_jvp)
EXP = defprimitive("exp", exp_fwd, exp_vjp, fresh=True, dvjp=exp_dvjp, jvp=exp_jvp)
LOG = defprimitive("log", log_fwd, log_vjp, fresh=True, dvjp=log_dvjp, jvp=log_jvp)
TANH = defprimitive("tanh", tanh_fwd, tanh_vjp, fresh=True, dvjp=tanh_dvjp, jvp=tanh_jvp)
SIGMOID = defprimitive("sigmoid", sigmoid_fwd, sigmoid_vjp, fresh=True, dvjp=sigmoid_dvjp, jvp=sigmoid_jvp)
RELU = defprimitive("relu", relu_fwd, relu_vjp, fresh=True, dvjp=relu_dvjp, jvp=relu_jvp)
MATMUL = defprimitive("matmul", matmul_fwd, matmul_vjp, fresh=True, dvjp=matmul_dvjp, jvp=matmul_jvp)
MATMUL_ADD = defprimitive("matmul_add", matmul_add_fwd, matmul_add_vjp, fresh=(True, True, False),
                          dvjp=matmul_add_dvjp, jvp=matmul_add_jvp)
SUM = defprimitive("sum", sum_fwd, sum_vjp, dvjp=sum_dvjp, jvp=sum_jvp)
MAX = defprimitive("max", max_fwd, max_vjp, fresh=True, dvjp=max_dvjp, jvp=max_jvp)
LOGSUMEXP = defprimitive("logsumexp", logsumexp_fwd, logsumexp_vjp, fresh=True,
                         dvjp=logsumexp_dvjp, jvp=logsumexp_jvp)
RESHAPE = defprimitive("reshape", reshape_fwd, reshape_vjp, dvjp=reshape_dvjp, jvp=reshape_jvp)
TRANSPOSE = defprimitive("transpose", transpose_fwd, transpose_vjp, dvjp=transpose_dvjp, jvp=transpose_jvp)
GETITEM = defprimitive("getitem", getitem_fwd, getitem_vjp, dvjp=getitem_dvjp, jvp=getitem_jvp)
STACK = defprimitive("stack", stack_fwd, stack_vjp, dvjp=stack_dvjp, jvp=stack_jvp)
CONCATENATE = defprimitive("concatenate", concatenate_fwd, concatenate_vjp,
                           dvjp=concatenate_dvjp, jvp=concatenate_jvp)
BROADCAST_TO = defprimitive("broadcast_to", broadcast_to_fwd, broadcast_to_vjp,
                            dvjp=broadcast_to_dvjp, jvp=broadcast_to_jvp)
SCATTER_ADD = defprimitive("scatter_add", scatter_add_fwd, scatter_add_vjp,
                           dvjp=scatter_add_dvjp, jvp=scatter_add_jvp)
ABS = defprimitive("abs", abs_fwd, abs_vjp, fresh=True,
                   dvjp=abs_dvjp, jvp=abs_jvp)
MAXIMUM = defprimitive("maximum", maximum_fwd, maximum_vjp, fresh=True,
                       dvjp=maximum_dvjp, jvp=maximum_jvp)
MINIMUM = defprimitive("minimum", minimum_fwd, minimum_vjp, fresh=True,
                       dvjp=minimum_dvjp, jvp=minimum_jvp)
WHERE = defprimitive("where", where_fwd, where_vjp, fresh=True,
                     dvjp=where_dvjp, jvp=where_jvp)
CLIP = defprimitive("clip", clip_fwd, clip_vjp, fresh=True,
                    dvjp=clip_dvjp, jvp=clip_jvp)


# ---- dtype cast (tensor-API issue) -------------------------------------------------------------

def astype_fwd(a, dtype):
    return a.astype(dtype), a.dtype


def astype_vjp(g, in_dtype, needs):
    # a cast moves no values: the gradient is cast back to the input's dtype
    return (g.astype(in_dtype),)


def astype_dvjp(g, out, xs, in_dtype, needs):
    # a cast moves no values: the gradient is cast back to the input's dtype
    return (g.astype(in_dtype),)


def astype_jvp(ts, in_dtype, out):
    # d(cast a) = cast da
    return ts[0].astype(out.dtype)


ASTYPE = defprimitive("astype", astype_fwd, astype_vjp, fresh=True, dvjp=astype_dvjp, jvp=astype_jvp)
