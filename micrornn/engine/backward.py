"""Reverse-mode traversal: iterative topological order, gradient accumulation, engine state."""
from __future__ import annotations

import contextlib
import gc
import threading

import numpy as np

from micrornn.engine import guard
from micrornn.engine.ops import IndexGrad, ProductGrad, unbroadcast

RELEASED = object()  # a node's ``_saved`` once a backward without retain_graph freed it


class _State(threading.local):
    """Engine switches, one set per thread: graph recording, naming scope, anomaly detection,
    forward mode (micrornn.jvp).

    Each thread starts with recording on, no scope and anomaly detection off, so `no_grad()` in
    an evaluation thread never stops another thread's training from recording its graph.
    """

    def __init__(self):
        self.grad_enabled, self.scope, self.anomaly = True, None, False
        self.check_forward = self.check_backward = None
        self.push_tangent = None  # set by micrornn.jvp while its function runs
        self.record = None  # set by micrornn.compile while it traces (engine/compile.py)


state = _State()


_gc_lock = threading.Lock()
_gc_pauses = {"depth": 0, "restore": False}
GC_PAUSE_NODES = 2000  # graphs at least this big run with the cyclic collector paused


@contextlib.contextmanager
def gc_paused(nodes: int = GC_PAUSE_NODES):
    """Pause Python's cyclic garbage collector while a graph of ``nodes`` nodes is built or walked.

    The engine makes no reference cycles (outputs point at inputs, never back), so the collector
    finds nothing in a graph and only spends time walking it: 5-25% of a 10,000-step unrolled RNN,
    growing with T. Small graphs are left alone; nested and concurrent pauses restore the
    collector once, when the last one ends (and only if it was on)."""
    if nodes < GC_PAUSE_NODES:
        yield
        return
    with _gc_lock:
        if _gc_pauses["depth"] == 0:
            _gc_pauses["restore"] = gc.isenabled()
            gc.disable()
        _gc_pauses["depth"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses["depth"] -= 1
            if _gc_pauses["depth"] == 0 and _gc_pauses["restore"]:
                gc.enable()


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
        if node._saved is RELEASED:
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


_FOLD_ROWS = 1024  # weight-gradient products are batched until they hold this many rows


class ArrayGrads:
    """First-order gradients as ndarrays: each node's buffer, and its primitive's ndarray VJP.

    The buffers add in place only into arrays they own: one the engine allocated in this backward
    (a sum it formed, a scatter buffer, or a VJP result its primitive declares fresh); anything else
    (the seed, a view, the g that `add` hands to both inputs) is copied before it is ever modified.
    """

    __slots__ = ("dense", "owned", "pending", "pending_rows", "anomaly")

    def __init__(self):
        self.dense, self.owned, self.pending, self.pending_rows = {}, set(), {}, {}
        self.anomaly = state.anomaly

    def vjp(self, node, g) -> tuple:
        """One gradient per input of ``node`` (None where not needed) from its output gradient g."""
        parent_grads = node._op.vjp(g, node._saved, node._needs)
        if self.anomaly:
            state.check_backward(node, parent_grads)
        return parent_grads

    def add(self, node, g, fresh=False) -> None:
        """Accumulate gradient ``g`` (ndarray, IndexGrad or ProductGrad) into node's buffer."""
        kind = type(g)
        if kind is np.ndarray:  # the common case first
            self._add_dense(node, g, fresh)
        elif kind is ProductGrad:
            self.pending.setdefault(node, []).append(g)
            rows = self.pending_rows[node] = self.pending_rows.get(node, 0) + g.a.shape[0]
            if rows >= _FOLD_ROWS:
                self._fold(node)
        elif kind is IndexGrad:
            g.add_into(self._owned_buffer(node))
        else:
            self._add_dense(node, g, fresh)

    def _add_dense(self, node, g, fresh) -> None:
        """current += g, reusing g itself as the buffer when it is fresh."""
        shape = node.data.shape
        if g.shape != shape:
            g, fresh = unbroadcast(g, shape), True  # a reduction allocates a new array
        dense, owned = self.dense, self.owned
        current = dense.get(node)
        if current is None:  # the first gradient: kept as it is (ownership is checked when first written)
            dense[node] = g
            if fresh and type(g) is np.ndarray:
                owned.add(node)
        elif node in owned and current.flags.writeable:
            current += g
        elif fresh and type(g) is np.ndarray and g.flags.writeable:
            g += current
            dense[node] = g
            owned.add(node)
        else:  # asarray: for 0-d tensors `current + g` is a NumPy scalar, which `+=` would not update
            dense[node] = np.asarray(current + g)
            owned.add(node)

    def _owned_buffer(self, node) -> np.ndarray:
        """The node's buffer, made a zero-filled array of its own first if needed."""
        current = self.dense.get(node)
        if node not in self.owned or not current.flags.writeable:
            buf = np.zeros(node.data.shape, dtype=node.data.dtype)
            if current is not None:
                buf += current
            self.dense[node], current = buf, buf
            self.owned.add(node)
        return current

    def _fold(self, node) -> None:
        """Form sum_k a_k^T g_k of the pending products as one matrix product and add it."""
        products = self.pending.pop(node)
        del self.pending_rows[node]
        if len(products) == 1:
            a, g = products[0].a, products[0].g
        else:
            products.reverse()  # backward meets the uses last to first: put them back in forward order
            a, g = _joined_rows([p.a for p in products]), _joined_rows([p.g for p in products])
        self._add_dense(node, (a.T @ g).reshape(node.data.shape), fresh=True)

    def pop(self, node):
        """The node's total gradient (or None), and whether this backward owns the array."""
        if node in self.pending:
            self._fold(node)
        g = self.dense.pop(node, None)
        if self.anomaly and g is not None:  # each share was checked when made; their sum may still overflow
            state.check_backward(node, (), g)
        return g, node in self.owned


_VIEW_CHECK_BYTES = 16384  # _joined_rows: below this many bytes per array, a copy is cheaper than two address look-ups


def _address(array) -> int:
    """Where an array's data starts in memory."""
    return array.__array_interface__["data"][0]


def _joined_rows(arrays) -> np.ndarray:
    """The rows of 2-D arrays one after another: a view when they already lie so in one buffer
    (the RNN's h_t live side by side in its states buffer), else a copy. Small rows are copied
    without looking: finding an array's address costs more than copying a few kilobytes."""
    first, base = arrays[0], arrays[0].base
    rows = sum(a.shape[0] for a in arrays)
    if (first.nbytes >= _VIEW_CHECK_BYTES and isinstance(base, np.ndarray) and base.dtype == first.dtype
            and base.flags.c_contiguous and first.flags.c_contiguous
            and all(a.base is base and a.flags.c_contiguous and a.dtype == first.dtype for a in arrays)):
        start = _address(first)
        offsets = [_address(a) - start for a in arrays]
        sizes = [a.nbytes for a in arrays]
        if all(offsets[k + 1] == offsets[k] + sizes[k] for k in range(len(arrays) - 1)):
            begin = (start - _address(base)) // first.itemsize
            return base.reshape(-1)[begin:begin + rows * first.shape[1]].reshape(rows, first.shape[1])
    return np.concatenate(arrays)


def walk(order, seeds, grads, take, keep=frozenset(), relevant=None, retain_graph=False) -> None:
    """The one backward traversal, shared by ``backward``, ``grad`` (any order) and the viz replay.

    order: the nodes, each before its inputs (``topological_order``); seeds: (node, gradient) pairs
    to start from; grads: how gradients are held, added and sent through an op (``ArrayGrads`` for
    ndarrays, a Tensor version for create_graph); take(node, g, owned) receives the total gradient
    of every leaf, of every node marked by ``retain_grad`` and of every node in ``keep``; relevant:
    when given, only these nodes receive gradients. Without retain_graph each op's saved arrays
    are freed once its gradient has been sent on, and writeable again (``engine.guard``).
    """
    add, pop, send = grads.add, grads.pop, grads.vjp
    for node, seed in seeds:
        add(node, seed, True)
    # ndarray gradients without anomaly checks: pop and vjp inline (two calls fewer per node)
    fast = type(grads) is ArrayGrads and not grads.anomaly
    if fast:
        dense_pop, pending, owned_nodes, fold = grads.dense.pop, grads.pending, grads.owned, grads._fold
    released = []  # the passed nodes' guards: their saved arrays become writeable together at the end
    try:
        for node in order:
            if fast:
                if node in pending:
                    fold(node)
                g = dense_pop(node, None)
                owned = node in owned_nodes
            else:
                g, owned = pop(node)
            op = node._op
            if g is None:
                if not retain_graph and op is not None:
                    node._saved = RELEASED
                    if node._guard is not None:
                        released.append(node._guard)
                        node._guard = None
                continue
            if op is None or node._retain or node in keep:
                take(node, g, owned)
                if op is None:
                    continue
            parent_grads = op.vjp(g, node._saved, node._needs) if fast else send(node, g)
            if not retain_graph:
                node._saved = RELEASED
                if node._guard is not None:
                    released.append(node._guard)
                    node._guard = None
            fresh, needs = op.fresh, node._needs
            for i, (parent, pg) in enumerate(zip(node._parents, parent_grads)):
                if pg is not None and needs[i] and (relevant is None or parent in relevant):
                    add(parent, pg, fresh if fresh.__class__ is bool else fresh[i])
    finally:
        if released:
            guard.release(released)


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
    with gc_paused(len(order)):
        _propagate(root, seed, order, retain_graph)


def _propagate(root, seed, order, retain_graph) -> None:
    """The walk of ``backward``: ndarray gradients, stored into ``.grad`` of leaves and retained nodes."""
    walk(order, [(root, seed)], ArrayGrads(), store_grad, retain_graph=retain_graph)


_grad_lock = threading.Lock()


def store_grad(node, g, owned) -> None:
    """Accumulate g into node.grad, copying a buffer the engine does not own."""
    if g.shape != node.data.shape:
        g = np.broadcast_to(g, node.data.shape)
        owned = False
    if g.dtype != node.data.dtype:
        g, owned = g.astype(node.data.dtype), True
    with _grad_lock:  # threads back-propagating into shared parameters: one read-modify-write at a time
        if node.grad is None:
            node.grad = g if owned and g.flags.writeable else np.array(g)
        else:
            node.grad = np.asarray(node.grad + g)  # stays an ndarray for 0-d tensors
