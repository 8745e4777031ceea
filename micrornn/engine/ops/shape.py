"""Shape primitives: reshape, transpose, indexing, stack, concatenate and scatter_add (getitem's
gradient as a Tensor op). They move values without changing them: each is linear."""
from __future__ import annotations

import numpy as np

from micrornn.engine.ops.core import IndexGrad, defprimitive, record, unbroadcast

def reshape_fwd(a, shape):
    return a.reshape(shape), a.shape

def reshape_vjp(g, in_shape, needs):
    # reshape moves no values: the gradient is reshaped back
    return (g.reshape(in_shape),)

def transpose_fwd(a, axes=None):
    return a.transpose(axes), axes

def transpose_vjp(g, axes, needs):
    # transpose permutes values: the gradient takes the inverse permutation
    return (g.transpose() if axes is None else g.transpose(tuple(int(i) for i in np.argsort(axes))),)

def getitem_fwd(a, index):
    return a[index], index

def getitem_vjp(g, index, needs):
    # d(a[index])/da scatters g back into index (repeated gather indices add up), lazily: see add_gradient
    return (IndexGrad(index, g),)

def stack_fwd(*arrays, axis=0, out=None):
    if out is not None and axis == 0 and _already_stacked(arrays, out):
        return out, (len(arrays), axis)  # the inputs were written into `out` by their own ops
    return np.stack(arrays, axis=axis, out=out), (len(arrays), axis)

def _already_stacked(arrays, out) -> bool:
    """True when arrays[i] is out[i] for every i, as when nn.recurrent.unroll wrote each h_t into its row of
    ``out`` (views of out's buffer with a row's shape and strides; only the ends' addresses are read: fast)."""
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

def concatenate_fwd(*arrays, axis=0):
    ends = np.cumsum([a.shape[axis] for a in arrays])
    return np.concatenate(arrays, axis=axis), (ends, axis)

def concatenate_vjp(g, saved, needs):
    # each input gets its own block of g along the joined axis
    ends, axis = saved
    lead, starts = (slice(None),) * axis, [0, *ends[:-1]]
    return tuple(g[lead + (slice(int(s), int(e)),)] if need else None for s, e, need in zip(starts, ends, needs))

def scatter_add_fwd(*values, shape, index):
    indices = index if len(values) > 1 else [index]  # several values: one index each
    out = np.zeros(shape, dtype=values[0].dtype)
    for v, i in zip(values, indices):
        IndexGrad(i, v).add_into(out)
    return out, indices

def scatter_add_vjp(g, indices, needs):
    # out = zeros with values_k added at index_k: d out/d values_k gathers g at index_k
    return tuple(g[i] if need else None for i, need in zip(indices, needs))

RESHAPE = defprimitive("reshape", reshape_fwd, reshape_vjp, linear=True, shared="saved")
TRANSPOSE = defprimitive("transpose", transpose_fwd, transpose_vjp, linear=True, shared="saved")
GETITEM = defprimitive("getitem", getitem_fwd, getitem_vjp, linear=True, shared="saved")
STACK = defprimitive("stack", stack_fwd, stack_vjp, linear=True, shared="saved")
CONCATENATE = defprimitive("concatenate", concatenate_fwd, concatenate_vjp, linear=True, shared="saved")
SCATTER_ADD = defprimitive("scatter_add", scatter_add_fwd, scatter_add_vjp, linear=True, shared="saved")


# ---- summing gradient Tensors (create_graph): index gradients are formed once, not once per use --

class _Pieces:
    """A node's gradient so far under create_graph: a dense Tensor (or None) plus index gradients."""

    __slots__ = ("dense", "pieces", "shape")

    def __init__(self, dense, shape):
        self.dense, self.pieces, self.shape = dense, [], shape

def add_gradient(current, g, shape: tuple):
    """current + g for the gradient Tensors of a node of ``shape`` (``current`` may be None).

    g is summed back to ``shape``. Index gradients are only collected: T steps reading x[t] would
    otherwise make T dense scatters of x's shape, O(T^2) memory; ``formed`` joins them in one node.
    """
    if type(g) is IndexGrad:
        if type(current) is not _Pieces:
            current = _Pieces(current, shape)
        current.pieces.append(g)
        return current
    g = unbroadcast(g, shape)
    if type(current) is _Pieces:
        current.dense = g if current.dense is None else current.dense + g
        return current
    return g if current is None else current + g

def formed(g):
    """A gradient from ``add_gradient`` as one Tensor: the index pieces become one scatter_add node."""
    if type(g) is not _Pieces:
        return g
    values = [p.values for p in reversed(g.pieces)]  # back in forward order (the walker meets them last first)
    index = [p.index for p in reversed(g.pieces)] if len(values) > 1 else g.pieces[0].index
    scattered = record(SCATTER_ADD, *values, shape=g.shape, index=index)
    return scattered if g.dense is None else g.dense + scattered
