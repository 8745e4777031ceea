"""Gradients as Tensors: ``grad`` (optionally recording the backward pass itself, so the gradient
can be differentiated again, any number of times) and the Hessian-vector product ``hvp``.

With ``create_graph=False`` the backward runs the fast ndarray VJPs of the primitive table, exactly
like ``Tensor.backward``; with ``create_graph=True`` it runs each primitive's ``dvjp``, the same rule
written with Tensor ops, so every step of the backward becomes a graph node. Those nodes carry the
scope of the forward node they differentiate (an RNN's StepScope), so ``viz.draw_graph`` of a
gradient shows BPTT in the same time-step clusters as the forward pass.
"""
from __future__ import annotations

import numpy as np

from micrornn.engine.backward import ArrayGrads, state, topological_order, walk
from micrornn.engine.ops import add_gradient, formed
from micrornn.engine.tensor import Tensor, _leaf, as_tensor, scope


def grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None) -> tuple:
    """d(sum_k <grad_outputs[k], outputs[k]>)/d(inputs) as a tuple of Tensors, one per input.

    outputs, inputs: a Tensor or a sequence of Tensors; grad_outputs: None (each output must then
    have one element), or one array/Tensor per output. Leaves' ``.grad`` is left alone. An input the
    outputs do not depend on gets zeros. create_graph=True records the backward so the result can
    be differentiated again; retain_graph (default: create_graph) keeps the forward graph's saved
    arrays for another backward through it.
    """
    outputs, inputs = _sequence(outputs, "outputs"), _sequence(inputs, "inputs")
    for k, t in enumerate(inputs):
        if not t.requires_grad:
            raise ValueError(f"grad: input {k} (shape {t.shape}) does not require grad; make it with "
                             "requires_grad=True (or use it outside no_grad()) to differentiate with respect to it")
    seeds = _seeds(outputs, grad_outputs, create_graph)
    retain = create_graph if retain_graph is None else bool(retain_graph)
    order, relevant = _relevant_order(outputs, inputs)
    wanted, found = set(inputs), {}

    def take(node, g, owned):
        if node in wanted:  # an ndarray is copied unless it is a leaf's buffer this backward owns
            as_is = create_graph or (owned and node._op is None and g.flags.writeable)
            found[node] = g if as_is else np.array(g)
    grads = TensorGrads() if create_graph else ArrayGrads()
    walk(order, list(zip(outputs, seeds)), grads, take, wanted, relevant, retain)
    return tuple(_result(found.get(t), t, create_graph) for t in inputs)


def hvp(fn, inputs, v) -> tuple:
    """(fn(*inputs), H v): the Hessian of the scalar fn at inputs times v, by reverse over reverse.

    inputs: a Tensor or a sequence of Tensors, v the same structure (arrays or Tensors). Inputs
    that require grad are used as they are (so fn may also reach them through a closure, e.g. a
    model's parameters); the others are replaced by leaf copies that do.
    """
    single = isinstance(inputs, Tensor)
    xs = [x if x.requires_grad else _leaf(_float_data(x, k), True)
          for k, x in enumerate(map(as_tensor, _sequence(inputs, "inputs")))]
    vs = [as_tensor(t).data for t in ([v] if single else list(v))]
    if len(vs) != len(xs) or any(a.shape != x.shape for a, x in zip(vs, xs)):
        raise ValueError(f"hvp: v must match the inputs' shapes {[x.shape for x in xs]}, "
                         f"got {[a.shape for a in vs]}")
    value = fn(*xs)
    if not isinstance(value, Tensor) or value.size != 1:
        raise ValueError(f"hvp: fn must return a one-element Tensor (a loss), got "
                         f"{getattr(value, 'shape', type(value).__name__)}")
    gs = grad(value, xs, create_graph=True)
    directional = None  # <grad fn, v>, whose gradient is H v
    for g, a in zip(gs, vs):
        if g.requires_grad:
            term = (g * a.astype(g.dtype, copy=False)).sum()
            directional = term if directional is None else directional + term
    if directional is None:  # fn is linear (or constant) in its inputs: H = 0
        products = tuple(_leaf(np.zeros_like(x.data)) for x in xs)
    else:
        products = grad(directional, xs)
    return value.detach(), (products[0] if single else products)


# ---- gradients as Tensors: what the walker holds with create_graph=True ---------------------------

class TensorGrads:
    """create_graph gradients: Tensors added with Tensor ops, sent through each primitive's ``dvjp``
    (its VJP written with Tensor ops), so every step of the backward is itself a graph node."""

    def __init__(self):
        self.grads, self.scope = {}, state.scope  # the scope of the op being differentiated

    def add(self, node, g, fresh=False) -> None:
        """grads[node] += g (summed back to node's shape), as a graph node once there are two."""
        with scope(self.scope):  # the sums are part of that op's backward (its time step)
            self.grads[node] = add_gradient(self.grads.get(node), g, node.shape)  # index pieces joined in pop

    def pop(self, node):
        """The node's total gradient (or None), named after it (e.g. ∂L/∂h3 in a drawing)."""
        with scope(self.scope):
            g = formed(self.grads.pop(node, None))  # one scatter_add node for all of a node's index pieces
        if g is not None and node.name and g.name is None and g._op is not None:
            g.name = f"∂L/∂{node.name}"
        return g, False

    def vjp(self, node, g) -> tuple:
        """The primitive's dvjp, recorded in the forward node's scope (step t's cluster for step t)."""
        rule = node._op.dvjp
        if rule is None:
            raise NotImplementedError(
                f"grad(create_graph=True): primitive '{node._op.name}' has no differentiable VJP; register "
                "one with defprimitive(..., dvjp=...) (its VJP written with Tensor ops)")
        self.scope = node._scope
        with scope(node._scope):
            return rule(g, node, node._parents, node._saved, node._needs)


# ---- helpers ------------------------------------------------------------------------------------

def _float_data(x: Tensor, k: int) -> np.ndarray:
    """x's data as floats: integers are promoted to float64 (H v of an integer input is not an
    integer), anything else that is not floating point is refused."""
    if x.dtype.kind == "f":
        return x.data
    if x.dtype.kind in "iu":
        return x.data.astype(np.float64)
    raise TypeError(f"hvp: input {k} has dtype {x.dtype}; second derivatives need float (or integer) inputs")


def _sequence(items, what) -> list:
    """A Tensor or a sequence of Tensors as a non-empty list of Tensors."""
    items = [items] if isinstance(items, Tensor) else list(items)
    if not items:
        raise ValueError(f"grad: {what} is empty")
    for k, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: {what}[{k}] is a {type(t).__name__}, expected a Tensor")
    return items


def _seeds(outputs, grad_outputs, create_graph) -> list:
    """One starting gradient per output: ones for one-element outputs, else grad_outputs[k]."""
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, (Tensor, np.ndarray)) or np.isscalar(grad_outputs):
        grad_outputs = [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    seeds = []
    for k, (out, seed) in enumerate(zip(outputs, grad_outputs)):
        if not out.requires_grad:
            raise ValueError(f"grad: output {k} does not require grad (none of its inputs requires grad, "
                             "or it was computed under no_grad())")
        if seed is None:
            if out.size != 1:
                raise ValueError(f"grad: output {k} has shape {out.shape}; a non-scalar output needs "
                                 "grad_outputs of the same shape, e.g. grad_outputs=[np.ones(out.shape)]")
            seed = np.ones_like(out.data)
        kind = (seed.data if isinstance(seed, Tensor) else np.asarray(seed)).dtype.kind
        if kind not in "fiub":
            raise TypeError(f"grad: grad_outputs[{k}] has dtype {np.asarray(getattr(seed, 'data', seed)).dtype}; "
                            f"a seed must hold real numbers (it is cast to output {k}'s dtype {out.dtype})")
        if not isinstance(seed, Tensor):
            seed = np.array(seed, dtype=out.dtype)
        elif seed.dtype != out.dtype:  # a cotangent lives in its output's dtype, as in backward(grad)
            seed = seed.astype(out.dtype) if create_graph else np.array(seed.data, dtype=out.dtype)
        if seed.shape != out.shape:
            raise ValueError(f"grad: grad_outputs[{k}] has shape {seed.shape} but output {k} has shape {out.shape}")
        if create_graph:
            seed = seed if isinstance(seed, Tensor) else _leaf(seed)
        elif isinstance(seed, Tensor):
            seed = np.array(seed.data, dtype=out.dtype)
        seeds.append(seed)
    return seeds


def _relevant_order(outputs, inputs):
    """Nodes between the outputs and the inputs, newest first, and the set of them."""
    nodes = {}
    for out in outputs:
        nodes.update(dict.fromkeys(topological_order(out)))
    order = sorted(nodes, key=lambda n: n._id, reverse=True)
    relevant = set(t for t in inputs if t in nodes)
    for node in reversed(order):  # oldest first: a node leads to an input when a parent does
        if node._op is not None and any(p in relevant for p in node._parents):
            relevant.add(node)
    return [n for n in order if n in relevant], relevant


def _result(g, like: Tensor, create_graph: bool) -> Tensor:
    """The gradient found for an input as a Tensor of its shape and dtype (zeros when unreached)."""
    if g is None:
        return _leaf(np.zeros_like(like.data))
    return g if isinstance(g, Tensor) else _leaf(g.astype(like.dtype, copy=False))
