"""Reverse-mode traversal: iterative topological order, gradient accumulation, engine state."""
from __future__ import annotations

import numpy as np

from micrornn.ops import IndexGrad, ProductGrad, unbroadcast

_RELEASED = object()  # marks a node whose saved arrays were freed by a backward


class _State:
    """Global engine switches: graph recording, naming scope, anomaly detection."""

    __slots__ = ("grad_enabled", "scope", "anomaly", "check_forward", "check_backward")

    def __init__(self):
        self.grad_enabled, self.scope, self.anomaly = True, None, False
        self.check_forward = self.check_backward = None


state = _State()


def topological_order(root) -> list:
    """Nodes that need a gradient, each before all of its inputs.

    Every tensor gets an increasing creation number, and an op's inputs always exist before its
    output, so sorting the reachable nodes by that number (newest first) is a topological order:
    no recursion, no per-node bookkeeping beyond one set.
    """
    seen, stack = {root}, [root]
    while stack:
        node = stack.pop()
        if node._op is None:
            continue
        if node._saved is _RELEASED:
            raise RuntimeError(
                f"backward: the graph through '{node._op.name}' (output shape {node.shape}) was already "
                "back-propagated and its saved arrays freed; pass retain_graph=True to the first backward "
                "to go through it twice")
        for parent in node._parents:
            if parent.requires_grad and parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return sorted(seen, key=_creation_number, reverse=True)


def _creation_number(node) -> int:
    """The order in which the tensor was created."""
    return node._id


class _Grads:
    """Per-node gradient buffers for one backward; adds in place only into buffers it allocated."""

    __slots__ = ("dense", "owned", "pending")

    def __init__(self):
        self.dense, self.owned, self.pending = {}, set(), {}

    def add(self, node, g) -> None:
        """Accumulate gradient ``g`` (ndarray, IndexGrad or ProductGrad) into node's buffer."""
        if type(g) is ProductGrad:
            self.pending.setdefault(node, []).append(g)
            return
        dense = self.dense
        current = dense.get(node)
        if type(g) is IndexGrad:
            if node not in self.owned:
                buf = np.zeros(node.data.shape, dtype=node.data.dtype)
                if current is not None:
                    buf += current
                dense[node], current = buf, buf
                self.owned.add(node)
            g.add_into(current)
            return
        if g.shape != node.data.shape:
            g = unbroadcast(g, node.data.shape)
        if current is None:
            dense[node] = g
        elif node in self.owned:
            current += g
        else:  # asarray: for 0-d tensors `current + g` is a NumPy scalar, which `+=` would not update
            dense[node] = np.asarray(current + g)
            self.owned.add(node)

    def pop(self, node):
        """The node's total gradient (forming batched weight products now), and whether we own it."""
        g = self.dense.pop(node, None)
        owned = node in self.owned
        products = self.pending.pop(node, None)
        if products is not None:
            a = products[0].a if len(products) == 1 else np.concatenate([p.a for p in products])
            gg = products[0].g if len(products) == 1 else np.concatenate([p.g for p in products])
            formed = (a.T @ gg).reshape(node.data.shape)  # sum_k a_k^T g_k as one product
            g, owned = (formed, True) if g is None else (g + formed, True)
        return g, owned


def backward(root, grad=None, retain_graph=False) -> None:
    """Propagate d(root) back through the graph; leaves (and retained nodes) accumulate ``.grad``."""
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad (no input of its graph has "
                           "requires_grad=True, or it was computed under no_grad())")
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward: the tensor has shape {root.shape}; a non-scalar root needs an "
                               "explicit grad of the same shape, e.g. t.backward(np.ones(t.shape))")
        seed = np.ones_like(root.data)
    else:
        seed = np.array(getattr(grad, "data", grad), dtype=root.data.dtype)
        if seed.shape != root.data.shape:
            raise ValueError(f"backward: grad has shape {seed.shape} but the tensor has shape {root.shape}")
    order = topological_order(root)
    grads = _Grads()
    grads.dense[root] = seed
    grads.owned.add(root)
    for node in order:
        g, owned = grads.pop(node)
        if g is None:
            continue
        if node._op is None or node._retain:
            _store_grad(node, g, owned)
            if node._op is None:
                continue
        parents, needs = node._parents, node._needs
        parent_grads = node._op.vjp(g, node._saved, needs)
        if state.anomaly:
            state.check_backward(node, parent_grads)
        if not retain_graph:
            node._saved = _RELEASED
        for parent, pg, need in zip(parents, parent_grads, needs):
            if need and pg is not None:
                grads.add(parent, pg)


def _store_grad(node, g, owned) -> None:
    """Accumulate into node.grad, copying a buffer the engine does not own."""
    if g.shape != node.data.shape:
        g = np.broadcast_to(g, node.data.shape)
        owned = False
    if node.grad is None:
        node.grad = g if owned and g.flags.writeable else np.array(g)
    else:
        node.grad = np.asarray(node.grad + g)  # stays an ndarray for 0-d tensors
