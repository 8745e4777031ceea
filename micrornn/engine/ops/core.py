"""The table's machinery: Primitive, defprimitive, the lazy gradient kinds and the one unbroadcast."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

PRIMITIVES: dict[str, Primitive] = {}

# What a shared reverse rule reads in place of ``saved`` when it runs on Tensors (create_graph).
_ON_TENSORS = {"saved": lambda out, xs, saved: saved, "input": lambda out, xs, saved: xs[0],
               "inputs": lambda out, xs, saved: xs, "output": lambda out, xs, saved: out}

class Primitive:
    """A named op: forward(*arrays, **attrs) -> (out, saved); vjp(g, saved, needs) -> grads.

    ``fresh`` (a bool, or one per input) promises that the VJP returns newly allocated arrays that
    nothing else holds, so the engine may accumulate into them in place. The higher-order and
    forward-mode rules (dvjp, jvp; shared, linear, elementwise) are described in the package docstring.
    """

    __slots__ = ("name", "forward", "vjp", "fresh", "dvjp", "jvp", "linear", "elementwise")

    def __init__(self, name: str, forward: Callable, vjp: Callable, fresh=False, dvjp=None, jvp=None,
                 linear: bool = False, shared: str | None = None, elementwise: bool = False):
        if shared is not None:
            if shared not in _ON_TENSORS:
                raise ValueError(f"defprimitive {name!r}: shared must be one of {sorted(_ON_TENSORS)}, got {shared!r}")
            if dvjp is not None:
                raise ValueError(f"defprimitive {name!r}: give dvjp or shared, not both")
            dvjp = _shared_rule(vjp, _ON_TENSORS[shared])
        self.name, self.forward, self.vjp, self.fresh = name, forward, vjp, fresh
        self.dvjp, self.jvp, self.linear, self.elementwise = dvjp, jvp, linear, elementwise

    def has_jvp(self) -> bool:
        """Whether forward mode can go through this op."""
        return self.jvp is not None or self.linear or self.elementwise

    def tangent(self, tangents, inputs, saved, out, attrs):
        """The output's tangent from the inputs' (None where an input has none)."""
        if self.jvp is not None:
            return self.jvp(tangents, saved, out)
        if self.elementwise:  # a diagonal Jacobian is its own transpose: J t is the VJP applied to t
            only = [tuple(k == i for k in range(len(tangents))) for i in range(len(tangents))]
            return total(*(self.vjp(t, saved, only[i])[i] for i, t in enumerate(tangents) if t is not None))
        zeros = [np.broadcast_to(np.zeros((), x.dtype), x.shape) if t is None else t
                 for t, x in zip(tangents, inputs)]
        attrs = {k: v for k, v in attrs.items() if k != "out"}  # out= names the value's buffer, not the tangent's
        return self.forward(*zeros, **attrs)[0]  # d op(x) = op(dx) for a linear op

    def __repr__(self):
        return f"Primitive({self.name!r})"

def _shared_rule(vjp: Callable, reads: Callable) -> Callable:
    """The VJP run on Tensors, reading the output or the inputs in place of saved arrays."""
    return lambda g, out, xs, saved, needs: vjp(g, reads(out, xs, saved), needs)

def defprimitive(name: str, forward: Callable, vjp: Callable, fresh=False, dvjp=None, jvp=None, *,
                 linear: bool = False, shared: str | None = None, elementwise: bool = False) -> Primitive:
    """Register a primitive in the table and return it."""
    prim = PRIMITIVES[name] = Primitive(name, forward, vjp, fresh, dvjp, jvp, linear, shared, elementwise)
    return prim

def record(prim: Primitive, *inputs, **attrs):
    """Record ``prim`` on Tensor inputs (for the dvjp rules; the Tensor layer sits above this table)."""
    return inputs[0].apply(prim, *inputs, **attrs)

def total(*terms):
    """The sum of the terms that are not None (None when all are): a JVP's contributions."""
    present = [t for t in terms if t is not None]
    if not present:
        return None
    result = present[0]
    for t in present[1:]:
        result = result + t
    return result

def unbroadcast(grad, shape: tuple):
    """Sum a broadcast gradient (ndarray or Tensor) back to ``shape``: leading axes, then axes of size 1."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if ones:
        grad = grad.sum(axis=ones, keepdims=True)
    return grad if grad.shape == shape else grad.reshape(shape)

class ProductGrad:
    """Gradient ``a^T g`` of a 2-D matrix ``b`` in ``a @ b``, formed lazily (rows of a and g)."""

    __slots__ = ("a", "g")

    def __init__(self, a, g):
        self.a, self.g = a, g

class IndexGrad:
    """Gradient of ``a[index]``: zeros of a's shape with ``values`` added at ``index``.

    ``values`` is an ndarray in a first-order backward (added in place into one buffer) or a Tensor
    under create_graph (collected by ``add_gradient``, formed as one scatter_add node by ``formed``).
    """

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

def _is_advanced(index) -> bool:
    """True when an index triggers NumPy advanced indexing (arrays, lists, masks)."""
    if type(index) is int or type(index) is slice:  # the common basic indices, decided at once
        return False
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, (np.ndarray, list)) for i in items)
