"""Record backpropagation one node at a time: every value, every gradient sent along every edge.

The HTML stepper (``viz.html``) plays this record back. The forward values are the engine's own
arrays; the backward is the engine's own walker (``engine.backward.walk``) with gradient buffers
that also write down what each op sends along each edge; each node's total is then checked
against the sum of what was sent to it before anything is shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from micrornn.nn.module import Module, Parameter
from micrornn.nn.rnn import StepScope
from micrornn.engine.backward import ArrayGrads, store_grad, topological_order, walk as walk_backward
from micrornn.engine.ops import IndexGrad, ProductGrad, unbroadcast
from micrornn.engine.tensor import Tensor
from micrornn.check.divergence import sequence_loss
from micrornn.viz.flow import walk
from micrornn.viz.graph import _folded_views


@dataclass
class Trace:
    """nodes: {svg id: info}; events: forward then backward steps; focus: the h_t fed by two paths;
    extra["root"]: the loss tensor (its graph can still be drawn)."""

    nodes: dict
    events: list
    focus: dict | None
    loss: float
    root: str
    extra: dict = field(default_factory=dict)


def node_ids(root) -> dict:
    """{id(tensor): DOT node name} exactly as ``draw_graph(root)`` names its nodes ("n<walk index>")."""
    return {id(n): f"n{i}" for i, n in enumerate(walk([root]))}


def _creation(node) -> int:
    """The engine's creation number (inputs are always numbered before their outputs)."""
    return node._id


def _as_array(pg, shape) -> np.ndarray:
    """A VJP result (ndarray, lazy product or scatter) as a dense array of the parent's shape."""
    if isinstance(pg, ProductGrad):  # a^T g of a shared 2-D weight
        return (pg.a.T @ pg.g).reshape(shape)
    if isinstance(pg, IndexGrad):    # scatter g back into the gathered positions
        buf = np.zeros(shape)
        pg.add_into(buf)
        return buf
    return np.array(unbroadcast(np.asarray(pg), shape), dtype=float)


def _where(node) -> tuple:
    """(layer, step) from a node's StepScope, or (None, None)."""
    scope = getattr(node, "scope", None)
    return (scope.layer, scope.step) if isinstance(scope, StepScope) else (None, None)


def _group(phase, layer, step) -> str:
    """The time-step block an event belongs to, as shown on the page."""
    if layer is None:
        return f"{phase}: head and loss"
    return f"{phase}: layer {layer}, " + ("all steps at once" if step is None else f"step {step}")


def _label(node, names) -> str:
    """Short text for a node: parameter name, input, or op and state name."""
    if isinstance(node, Parameter):
        return names.get(id(node), "parameter")
    if node.is_leaf:
        return node.name or "input"
    return node.op_name + (f" {node.name}" if node.name else "")


def trace_backprop(model: Module, x, targets, focus=(0, 1)) -> Trace:
    """Run the model's summed loss on (x, targets) (``model.loss``, else ``check.divergence.sequence_loss``) and
    record its forward and backward.

    focus: (layer, step) of the early h_t whose two incoming gradient paths the page highlights.
    """
    loss = sequence_loss(model, x, targets)
    nodes = walk([loss])
    ids, names = node_ids(loss), {id(p): n for n, p in model.named_parameters()}
    folded = _folded_views(nodes, [loss])  # U^T, W^T, V^T are drawn as part of U, W, V
    ops = sorted((n for n in nodes if not n.is_leaf and id(n) not in folded), key=_creation)

    info = {}
    for n in nodes:
        if id(n) in folded:
            continue
        layer, step = _where(n)
        kind = "param" if isinstance(n, Parameter) else ("input" if n.is_leaf else "op")
        info[ids[id(n)]] = {"label": _label(n, names), "kind": kind, "shape": list(n.shape), "layer": layer,
                            "step": step, "value": np.asarray(n.data, dtype=float).tolist(), "grad": None}

    events = [{"phase": "forward", "node": ids[id(n)], "group": _group("forward", *_where(n)), "sends": []}
              for n in ops]
    totals, sent = _walk_recorded(loss)
    for n, edges in sent:
        if id(n) in folded:
            continue  # the parameter's gradient is shown through the view's users below
        sends = []
        for parent, contribution in edges:
            target = folded.get(id(parent))
            shown = contribution.T if target is not None else contribution  # d/dP of P^T is (d/dP^T)^T
            sends.append({"to": ids[id(target if target is not None else parent)], "value": shown.tolist()})
        events.append({"phase": "backward", "node": ids[id(n)], "group": _group("backward", *_where(n)),
                       "sends": sends})
    for n in nodes:
        if id(n) not in folded and id(n) in totals:
            info[ids[id(n)]]["grad"] = totals[id(n)].tolist()
    return Trace(info, events, _focus(nodes, ids, focus), float(loss.item()), ids[id(loss)], {"root": loss})


class _RecordedGrads(ArrayGrads):
    """The engine's gradient buffers, also writing down every (sender, [(parent, dense share)])."""

    __slots__ = ("sent",)

    def __init__(self):
        super().__init__()
        self.sent = []

    def vjp(self, node, g):
        self.sent.append((node, []))  # the shares that follow are this node's
        return super().vjp(node, g)

    def add(self, node, g, fresh=False):
        if self.sent:
            self.sent[-1][1].append((node, _as_array(g, node.shape)))
        super().add(node, g, fresh)


def _walk_recorded(loss):
    """Back-propagate from loss with the engine's walker, recording each edge's share; return
    ({id(node): its total gradient}, [(node, [(parent, share)])] in backward order).

    Leaves accumulate ``.grad`` as after any backward. Each total is checked against the sum of
    the shares sent to it, so the page never shows numbers the shares do not add up to."""
    order, grads, totals = topological_order(loss), _RecordedGrads(), {}

    def take(node, g, owned):
        totals[id(node)] = np.array(g, dtype=float)
        if node._op is None:
            store_grad(node, g, False)
    walk_backward(order, [(loss, np.ones_like(loss.data))], grads, take, keep=set(order))
    received = {}
    for _, edges in grads.sent:
        for parent, share in edges:
            received[id(parent)] = received.get(id(parent), 0.0) + share
    for n in order:
        if n is not loss and id(n) in totals and not np.allclose(received.get(id(n), 0.0), totals[id(n)],
                                                                rtol=1e-10, atol=1e-12):
            raise RuntimeError(f"trace_backprop: the shares sent to {n.op_name or 'a leaf'} {n.shape} do not "
                               "add up to its gradient")
    return totals, grads.sent


def _focus(nodes, ids, focus) -> dict | None:
    """The h_t at (layer, step) and the nodes whose gradients flow into it (its two paths)."""
    layer, step = focus
    for n in nodes:
        if isinstance(n, Tensor) and _where(n) == (layer, step) and n.name == f"h{step}":
            users = [m for m in nodes if any(p is n for p in m.parents)]
            return {"node": ids[id(n)], "layer": layer, "step": step,
                    "from": [ids[id(m)] for m in sorted(users, key=_creation, reverse=True)]}
    return None
