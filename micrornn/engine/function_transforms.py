"""Function transforms in the style of JAX and torch.func, built on grad, jvp and hvp.

    value_and_grad(fn, argnums=0)(*args)  -> (fn(*args), d fn / d args[argnums])
    jacobian(fn, inputs, mode="reverse")  -> d outputs / d inputs, one backward per output element
                                             ("reverse") or one jvp per input element ("forward")
    hessian(fn, inputs)                   -> d^2 fn / d inputs^2, one Hessian-vector product per column
    vmap(fn, in_axes=0, out_axes=0)       -> fn mapped over a batch axis (a loop over the examples,
                                             stacked; differentiable); with value_and_grad it gives
                                             per-example gradients

An argument may be a Tensor, an array, or a dict/list/tuple of them (a "tree", e.g. a module's
parameters by name), and gradients come back in the same shape of tree. The results are new Tensors
that record nothing: these are transforms of functions, not of a graph that already exists.
"""
from __future__ import annotations

import numpy as np

from micrornn.engine.forward import jvp
from micrornn.engine.tensor import Tensor, _leaf, as_tensor, stack
from micrornn.engine.transforms import grad, hvp

__all__ = ["value_and_grad", "jacobian", "hessian", "vmap", "tree_leaves", "tree_rebuild"]


# ---- trees: a Tensor/array, or dicts, lists and tuples of them ---------------------------------------

def tree_leaves(tree) -> list:
    """The Tensors and arrays of a tree, in order (dicts in key order)."""
    if isinstance(tree, dict):
        return [leaf for key in tree for leaf in tree_leaves(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in tree_leaves(item)]
    return [tree]


def tree_rebuild(tree, leaves):
    """A tree of the same shape as ``tree`` holding ``leaves`` (an iterable, consumed in order)."""
    leaves = iter(leaves)

    def build(node):
        if isinstance(node, dict):
            return {key: build(node[key]) for key in node}
        if isinstance(node, (list, tuple)):
            return type(node)(build(item) for item in node)
        return next(leaves)
    return build(tree)


def _fresh_leaves(tree, where):
    """The tree with each leaf replaced by a new float leaf Tensor that requires grad (data shared)."""
    fresh = []
    for k, x in enumerate(tree_leaves(tree)):
        t = as_tensor(x)
        if t.dtype.kind != "f":
            raise TypeError(f"{where}: leaf {k} has dtype {t.dtype}; only floating-point inputs can be "
                            "differentiated (convert with astype(np.float64))")
        fresh.append(_leaf(t.data, True))
    return tree_rebuild(tree, fresh)


def _scalar(value, where) -> Tensor:
    """``value`` checked to be a one-element Tensor."""
    if not isinstance(value, Tensor) or value.size != 1:
        raise ValueError(f"{where}: fn must return a one-element Tensor (a loss), got a "
                         f"{type(value).__name__} of shape {getattr(value, 'shape', None)}")
    return value


# ---- value_and_grad ----------------------------------------------------------------------------------

def value_and_grad(fn, argnums=0):
    """A function returning (fn(*args), gradient of fn with respect to args[argnums]).

    argnums: an int (one gradient, shaped like that argument's tree) or a tuple of ints (a tuple of
    gradients). fn must return a one-element Tensor. The arguments are not modified; an argument
    that fn ignores gets zeros.
    """
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)

    def value_and_grad_fn(*args, **kwargs):
        args = list(args)
        for i in nums:
            if not -len(args) <= i < len(args):
                raise ValueError(f"value_and_grad: argnums {i} is out of range for {len(args)} arguments")
            args[i] = _fresh_leaves(args[i], "value_and_grad")
        value = _scalar(fn(*args, **kwargs), "value_and_grad")
        wrt = [leaf for i in nums for leaf in tree_leaves(args[i])]
        found = grad(value, wrt) if value.requires_grad else [_leaf(np.zeros_like(t.data)) for t in wrt]
        found, grads = iter(found), []
        for i in nums:
            grads.append(tree_rebuild(args[i], (next(found) for _ in tree_leaves(args[i]))))
        return value.detach(), grads[0] if single else tuple(grads)
    return value_and_grad_fn


# ---- jacobian and hessian ----------------------------------------------------------------------------

def _inputs(inputs):
    """(single, list of constant float Tensors) from a Tensor/array or a sequence of them."""
    single = isinstance(inputs, (Tensor, np.ndarray))
    xs = [as_tensor(x) for x in ([inputs] if single else list(inputs))]
    for k, x in enumerate(xs):
        if x.dtype.kind != "f":
            raise TypeError(f"jacobian: input {k} has dtype {x.dtype}; only floating-point inputs can be "
                            "differentiated")
    return single, xs


def _outputs(outputs):
    """(single, list of Tensors) from fn's result."""
    single = isinstance(outputs, Tensor)
    outs = [outputs] if single else list(outputs) if isinstance(outputs, (tuple, list)) else None
    if outs is None or not all(isinstance(o, Tensor) for o in outs):
        raise TypeError(f"jacobian: fn must return a Tensor or a tuple of Tensors, got {type(outputs).__name__}")
    return single, outs


def _nest(blocks, single_out, single_in):
    """J[o][i] as a Tensor, a tuple, or a tuple of tuples, as the structure of outputs and inputs says."""
    rows = [b[0] if single_in else tuple(b) for b in blocks]
    return rows[0] if single_out else tuple(rows)


def jacobian(fn, inputs, mode: str = "reverse"):
    """d fn(*inputs) / d inputs: block [o][i] has shape outputs[o].shape + inputs[i].shape.

    mode "reverse": one backward per output element; "forward": one jvp per input element (cheaper
    when the inputs are fewer than the outputs). A single Tensor input and output give one Tensor.
    """
    if mode not in ("reverse", "forward"):
        raise ValueError(f"jacobian: mode must be 'reverse' or 'forward', got {mode!r}")
    single_in, xs = _inputs(inputs)
    if mode == "reverse":
        leaves = [_leaf(x.data, True) for x in xs]
        single_out, outs = _outputs(fn(*leaves))
        blocks = [[np.zeros(o.shape + x.shape, dtype=o.dtype) for x in xs] for o in outs]
        for o, out in enumerate(outs):
            if not out.requires_grad:
                continue  # an output that does not depend on the inputs: zeros
            for e in np.ndindex(*out.shape):
                seed = np.zeros(out.shape, dtype=out.dtype)
                seed[e] = 1.0
                for i, g in enumerate(grad(out, leaves, grad_outputs=[seed], retain_graph=True)):
                    blocks[o][i][e] = g.data
    else:
        single_out, outs = _outputs(fn(*[x.detach() for x in xs]))  # the output shapes
        blocks = [[np.zeros(o.shape + x.shape, dtype=o.dtype) for x in xs] for o in outs]
        for i, x in enumerate(xs):
            for e in np.ndindex(*x.shape):
                tangents = [np.zeros(t.shape, dtype=t.dtype) for t in xs]
                tangents[i][e] = 1.0
                _, tangent_out = jvp(fn, [t.detach() for t in xs], tangents)
                for o, dout in enumerate([tangent_out] if single_out else tangent_out):
                    blocks[o][i][(Ellipsis,) + e] = dout.data
    return _nest([[_leaf(b) for b in row] for row in blocks], single_out, single_in)


def hessian(fn, inputs):
    """d^2 fn(*inputs) / d inputs^2 for a scalar fn: block [i][j] has shape inputs[i].shape + inputs[j].shape.

    Column by column, each from one Hessian-vector product (reverse over reverse); a single Tensor
    input gives one Tensor.
    """
    single, xs = _inputs(inputs)
    blocks = [[np.zeros(a.shape + b.shape, dtype=a.dtype) for b in xs] for a in xs]
    for j, x in enumerate(xs):
        for e in np.ndindex(*x.shape):
            v = [np.zeros(t.shape, dtype=t.dtype) for t in xs]
            v[j][e] = 1.0
            _, products = hvp(fn, [_leaf(t.data, True) for t in xs], v)
            for i, column in enumerate(products):
                blocks[i][j][(Ellipsis,) + e] = column.data
    return _nest([[_leaf(b) for b in row] for row in blocks], single, single)


# ---- vmap --------------------------------------------------------------------------------------------

def vmap(fn, in_axes=0, out_axes=0):
    """fn mapped over a batch axis: slice each mapped argument at example b, call fn, stack the results.

    in_axes: an int or None for every argument, or a tuple with one per argument (None: passed whole,
    e.g. parameters). Mapped arguments may be trees; their leaves must agree on the batch size. The
    results (a Tensor or a tree of them) are stacked along out_axes. It is a loop over the examples,
    recorded like any other ops, so a vmapped function can itself be differentiated.
    """
    def mapped(*args):
        axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        if len(axes) != len(args):
            raise ValueError(f"vmap: in_axes has {len(axes)} entries for {len(args)} arguments")
        sizes = {as_tensor(leaf).shape[axis] for arg, axis in zip(args, axes) if axis is not None
                 for leaf in tree_leaves(arg)}
        if len(sizes) != 1:
            raise ValueError("vmap: the mapped arguments must share one batch size, got "
                             f"{sorted(sizes) if sizes else 'no mapped argument'}")
        results = []
        for b in range(sizes.pop()):
            sliced = [arg if axis is None else tree_rebuild(arg, (_take(leaf, axis, b) for leaf in tree_leaves(arg)))
                      for arg, axis in zip(args, axes)]
            results.append(fn(*sliced))
        columns = zip(*(tree_leaves(r) for r in results))
        return tree_rebuild(results[0], (stack(list(c), axis=out_axes) for c in columns))
    return mapped


def _take(leaf, axis, b):
    """Example b of ``leaf`` along ``axis`` (a Tensor stays in the graph; an array stays an array)."""
    index = (slice(None),) * axis + (b,)
    return leaf[index] if isinstance(leaf, Tensor) else np.asarray(leaf)[index]
