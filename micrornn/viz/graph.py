"""draw_graph: any Tensor (or small Value) graph as a graphviz Digraph, grouped by RNN layer and step."""
from __future__ import annotations

import math
from collections import Counter

import graphviz
import numpy as np

from micrornn.nn.module import Module, Parameter
from micrornn.nn.rnn import StepScope
from micrornn.engine.value import Value
from micrornn.engine.tensor import Tensor
from micrornn.viz.flow import LogColors, walk

LARGE = 120  # drawn nodes above which dot is told to cut its layout search short (40 steps: 70 s -> 2 s)
NEWLINE = "\\n"  # DOT's centred line break, so each node stays one line of DOT text
GRAPH_ATTR = {"fontname": "Helvetica", "fontsize": "11", "nodesep": "0.18", "ranksep": "0.3",
              "newrank": "true", "labelloc": "t"}
NODE_ATTR = {"fontname": "Helvetica", "fontsize": "10", "shape": "box", "style": "rounded",
             "height": "0.3", "margin": "0.06,0.03"}
EDGE_ATTR = {"fontname": "Helvetica", "fontsize": "9", "arrowsize": "0.6"}
PARAM_STYLE = {"shape": "box", "style": "filled,bold", "fillcolor": "#cfe2ff", "color": "#1f4e9c"}
PARAM_EDGE = {"color": "#1f4e9c", "fontcolor": "#1f4e9c", "fontsize": "12"}
INPUT_STYLE = {"shape": "box", "style": "dashed", "color": "#777777", "fontcolor": "#444444"}
STATE_STYLE = {"style": "filled,rounded,bold", "fillcolor": "#eeeeee"}
COLLAPSED_STYLE = {"shape": "box", "style": "dashed,rounded", "color": "#555555", "margin": "0.15,0.08"}
BACKWARD_STYLE = {"style": "filled,rounded", "fillcolor": "#fde2c8", "color": "#b35806"}  # see ``forward``


def draw_graph(root, names=None, *, show_data=False, show_grad=False, max_steps=None,
               fold_transposes=True, expand_gathers=False, rankdir="TB", title=None,
               forward=None) -> graphviz.Digraph:
    """Draw the graph that produced ``root`` (a Tensor, a Value, or a list of them).

    names: a Module, a {name: parameter} dict or a {prefix: Module} dict, to label parameters by their
    dotted names (a model whose recurrent layer and head are separate modules: {"rnn": rec, "head": head}).
    show_data / show_grad: add ||data|| / ||grad|| to each label (grad colours non-parameter nodes
    on a log scale, e.g. h_t after ``retain_hidden_grads`` and a backward).
    max_steps: draw only the first ceil(K/2) and last floor(K/2) time steps of each RNN layer; the
    steps between become one labelled node per layer. fold_transposes: draw ``P.T`` of a parameter
    as part of P ("used transposed"), so P has a direct edge to every step that uses it.
    With index inputs an RNN layer picks rows of U^T + b instead of multiplying by a one-hot x_t;
    that gather is drawn as one node "U x_t + b" unless expand_gathers=True.
    Time-step clusters of a layer are always laid out in time order (invisible edges chain them).
    Layout time in `dot` grows quickly with the number of clustered steps: 2 layers x 40 steps take
    about 2 s, 100 steps over a minute; max_steps keeps both the picture and the time small.
    forward: when root is a gradient recorded by ``micrornn.grad(..., create_graph=True)``, the loss
    it differentiates; nodes outside the loss's graph (the backward pass itself) are filled orange.
    """
    roots = list(root) if isinstance(root, (list, tuple)) else [root]
    bad = [r for r in roots if not isinstance(r, (Tensor, Value))]
    if bad or not roots:
        raise TypeError(f"draw_graph: root must be a Tensor, a Value, or a list of them, "
                        f"got {type(bad[0]).__name__ if bad else 'an empty list'}")
    nodes = walk(roots)
    index = {id(n): i for i, n in enumerate(nodes)}
    param_names = _param_names(names)
    folded = _folded_views(nodes, roots) if fold_transposes else {}
    merged, gathers = ({}, {}) if expand_gathers else _input_gathers(nodes, folded)
    hidden = _hidden_steps(nodes, max_steps)

    def draw_id(node):
        node = merged.get(id(node), node)
        node = folded.get(id(node), node)
        scope = getattr(node, "scope", None)
        if id(node) in hidden:
            return f"collapsed_l{scope.layer}"
        return f"n{index[id(node)]}"

    drawn = [n for n in reversed(nodes) if id(n) not in folded and id(n) not in hidden and id(n) not in merged]
    graded = [_norm(n.grad) for n in drawn if show_grad and _has_grad(n) and not isinstance(n, Parameter)]
    colors = LogColors(graded) if graded else None

    clusters = {}  # cluster key -> list of (id, label, attrs); key None is the top level
    firsts = {}  # step or gap cluster key -> (creation number, id) of its earliest node
    root_ids = {id(r) for r in roots}
    transposed = {id(p) for p in folded.values()}
    in_forward = {id(n) for n in walk([forward])} if forward is not None else None
    for n in drawn:
        attrs = _style(n, id(n) in root_ids)
        if in_forward is not None and id(n) not in in_forward and _op(n) is not None:
            attrs.update(BACKWARD_STYLE)
        label = _label(n, param_names, show_data, show_grad)
        if id(n) in gathers:
            label = gathers[id(n)] + " " + _shape_text(n.shape) + NEWLINE + "(x_t as indices: a row gather)"
        if id(n) in transposed:
            first, sep, rest = label.partition(NEWLINE)
            label = first + " (used transposed)" + sep + rest
        if colors is not None and _has_grad(n) and not isinstance(n, Parameter):
            attrs.update(colors.attrs(_norm(n.grad)))
        key = _cluster_key(getattr(n, "scope", None))
        clusters.setdefault(key, []).append((draw_id(n), label, attrs))
        if key and key[0] == "step":
            firsts[key] = min(firsts.get(key, (math.inf, None)), (_created(n, index), draw_id(n)))
    for layer, (first, last, count, n_nodes) in _collapsed_ranges(nodes, hidden).items():
        label = NEWLINE.join([f"steps {first} to {last}", f"{count} steps, {n_nodes} nodes", "not drawn"])
        clusters.setdefault(("gap", layer, first), []).append((f"collapsed_l{layer}", label, dict(COLLAPSED_STYLE)))
        firsts[("gap", layer, first)] = (0, f"collapsed_l{layer}")

    edges = Counter()
    for n in nodes:
        if id(n) in folded:
            continue
        dst = draw_id(n)
        for p in n.parents:
            src, source = draw_id(p), folded.get(id(p), p)
            if src != dst:
                edges[(src, dst, isinstance(source, Parameter))] += 1

    graph_attr = dict(GRAPH_ATTR, rankdir=rankdir)
    if len(drawn) > LARGE:  # dot's x-placement (network simplex) dominates on big clustered graphs
        graph_attr["nslimit"] = "1"
    g = graphviz.Digraph("micrornn", graph_attr=graph_attr, node_attr=NODE_ATTR, edge_attr=EDGE_ATTR)
    if title:
        g.attr(label=title)
    _emit_clusters(g, clusters)
    _chain_steps(g, firsts)
    for (src, dst, from_param), count in edges.items():
        attrs = dict(PARAM_EDGE) if from_param else {}
        if count > 1:
            attrs["label"] = f"×{count}"
        g.edge(src, dst, **attrs)
    if colors is not None:
        g.node("grad_legend", label=colors.legend("‖∂L/∂·‖"), shape="plaintext")
    return g


# ---- graph analysis -------------------------------------------------------------------------

def _param_names(names) -> dict:
    """{id(parameter): dotted name} from a Module, a {name: parameter} dict, or a {prefix: Module} dict
    (``names={"rnn": rec, "head": head}`` names a Recurrent and a separate head: rnn.cell.W, head.weight)."""
    if names is None:
        return {}
    if isinstance(names, Module):
        return {id(p): name for name, p in names.named_parameters()}
    if not isinstance(names, dict):
        raise TypeError(f"draw_graph: names must be a Module or a dict of parameters or modules, got "
                        f"{type(names).__name__}")
    found = {}
    for key, value in names.items():
        if isinstance(value, Module):
            found.update({id(p): f"{key}.{name}" for name, p in value.named_parameters()})
        else:
            found[id(value)] = key
    return found


def _folded_views(nodes, roots) -> dict:
    """{id(view): parameter} for unnamed transposes taken directly of a parameter."""
    root_ids = {id(r) for r in roots}
    return {id(n): n.parents[0] for n in nodes
            if getattr(n, "op_name", None) == "transpose" and len(n.parents) == 1
            and isinstance(n.parents[0], Parameter) and n.name is None and id(n) not in root_ids}


def _input_gathers(nodes, folded) -> tuple:
    """Row gathers of U^T (+ b) by index inputs, drawn as "U x_t (+ b)".

    Returns ({id(add node): gather} for the "U^T + b" tables folded into their gather, and
    {id(gather): label text})."""
    merged, labels = {}, {}
    for n in nodes:
        scope, parents = getattr(n, "scope", None), getattr(n, "parents", ())
        if (getattr(n, "op_name", None) != "getitem" or not isinstance(scope, StepScope) or scope.step is not None
                or len(parents) != 1 or parents[0].ndim != 2 or n.ndim != 3):
            continue
        table = parents[0]
        if id(table) in folded:
            labels[id(n)] = "U x_t"
        elif (getattr(table, "op_name", None) == "add" and len(table.parents) == 2
              and id(table.parents[0]) in folded and isinstance(table.parents[1], Parameter)):
            merged[id(table)] = n
            labels[id(n)] = "U x_t + b"
    return merged, labels


def _created(node, index) -> float:
    """Creation order of a node: the engine's creation number for Tensors, else reverse walk order."""
    number = getattr(node, "_id", None)
    return number if isinstance(number, int) else -index[id(node)]


def _hidden_steps(nodes, max_steps) -> set:
    """ids of the nodes whose time step falls in the collapsed middle of their layer."""
    if max_steps is None:
        return set()
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"draw_graph: max_steps must be a positive integer, got {max_steps!r}")
    last = {}
    for n in nodes:
        s = getattr(n, "scope", None)
        if isinstance(s, StepScope) and s.step is not None:
            last[s.layer] = max(last.get(s.layer, 0), s.step)
    head, tail = math.ceil(max_steps / 2), max_steps // 2
    hidden = set()
    for n in nodes:
        s = getattr(n, "scope", None)
        if isinstance(s, StepScope) and s.step is not None and head < s.step <= last[s.layer] - tail:
            hidden.add(id(n))
    return hidden


def _collapsed_ranges(nodes, hidden) -> dict:
    """{layer: (first hidden step, last hidden step, step count, node count)}."""
    steps, counts = {}, Counter()
    for n in nodes:
        if id(n) in hidden:
            steps.setdefault(n.scope.layer, set()).add(n.scope.step)
            counts[n.scope.layer] += 1
    return {layer: (min(s), max(s), len(s), counts[layer]) for layer, s in sorted(steps.items())}


def _cluster_key(scope):
    """The cluster a node belongs to: None (top level), (layer, l), (step, l, t) or (scope, text)."""
    if scope is None:
        return None
    if isinstance(scope, StepScope):
        return ("layer", scope.layer) if scope.step is None else ("step", scope.layer, scope.step)
    return ("scope", str(scope))


def _emit_clusters(g, clusters) -> None:
    """Add nodes to g: step (and collapsed-gap) clusters nested inside their layer cluster; other
    scope labels each in a cluster of their own."""
    def add_nodes(sub, items):
        for node_id, label, attrs in items:
            sub.node(node_id, label=label, **attrs)

    add_nodes(g, clusters.get(None, []))
    layered = [k for k in clusters if k and k[0] in ("layer", "step", "gap")]
    for layer in sorted({k[1] for k in layered}):
        with g.subgraph(name=f"cluster_l{layer}") as lc:
            lc.attr(label=f"layer {layer}", style="rounded", color="#888888", fontcolor="#333333")
            add_nodes(lc, clusters.get(("layer", layer), []))
            for key in sorted((k for k in layered if k[0] != "layer" and k[1] == layer), key=lambda k: k[2]):
                kind, _, step = key
                name = f"cluster_l{layer}_t{step}" if kind == "step" else f"cluster_l{layer}_gap"
                with lc.subgraph(name=name) as sc:
                    if kind == "step":
                        sc.attr(label=f"step {step}", style="rounded,filled", fillcolor="#f6f6f6", color="#bbbbbb")
                    else:
                        sc.attr(label="collapsed", style="rounded,dashed", color="#999999", fontcolor="#555555")
                    add_nodes(sc, clusters[key])
    others = sorted(k[1] for k in clusters if k and k[0] == "scope")
    for i, text in enumerate(others):
        with g.subgraph(name=f"cluster_s{i}") as sc:
            sc.attr(label=text, style="rounded", color="#888888")
            add_nodes(sc, clusters[("scope", text)])


def _chain_steps(g, firsts) -> None:
    """Invisible edges from each step cluster's earliest node to the next step's, so that dot lays
    the steps of a layer out in time order whatever edges the cell itself has between them."""
    by_layer = {}
    for kind, layer, step in firsts:
        by_layer.setdefault(layer, []).append((step, kind))
    for layer, keys in by_layer.items():
        ordered = [firsts[(kind, layer, step)][1] for step, kind in sorted(keys)]
        for a, b in zip(ordered, ordered[1:]):
            g.edge(a, b, style="invis")


# ---- labels and styles ----------------------------------------------------------------------

def _has_grad(n) -> bool:
    """True when a Tensor has a gradient array (Values always carry a float grad)."""
    return getattr(n, "grad", None) is not None and not isinstance(n.grad, float)


def _norm(a) -> float:
    """Euclidean norm of an array (absolute value of a scalar)."""
    return float(np.linalg.norm(np.ravel(a)))


def _op(n):
    """The creating op's name, or None for a leaf (Tensor.op_name or Value.op)."""
    return getattr(n, "op_name", None) or getattr(n, "op", None) or None


def _shape_text(shape) -> str:
    """(2, 3) as '(2, 3)'; a 0-d shape as 'scalar'."""
    return "scalar" if shape == () else str(tuple(shape))


def _label(n, param_names, show_data, show_grad) -> str:
    """Label lines: op, name and shape (tensors) or value (Values), optional norms."""
    if not hasattr(n, "shape"):  # a scalar Value
        lines = [_op(n)] if _op(n) else []
        lines.append(f"data {n.data:.4g}")
        if show_grad:
            lines.append(f"grad {n.grad:.4g}")
        return NEWLINE.join(lines)
    name = param_names.get(id(n)) or n.name
    if isinstance(n, Parameter):  # a parameter the names= modules do not hold says so
        lines = [name or ("parameter (not in names=)" if param_names else "parameter")]
    elif n.is_leaf:
        value = f"{n.data.item():.4g}" if n.data.size == 1 else "input"
        lines = [name or (value if not n.requires_grad else "leaf")]
    else:
        lines = [n.op_name] + ([name] if name else [])
    lines[-1] += " " + _shape_text(n.shape)
    if show_data:
        lines.append(f"‖data‖ = {_norm(n.data):.3g}")
    if show_grad and n.grad is not None:
        what = "grad" if isinstance(n, Parameter) or not name else f"∂L/∂{name}"
        lines.append(f"‖{what}‖ = {_norm(n.grad):.2e}")
    return NEWLINE.join(lines)


def _style(n, is_root) -> dict:
    """Graphviz attributes: parameters, inputs/constants, named states, ops; roots doubled."""
    if isinstance(n, Parameter):
        attrs = dict(PARAM_STYLE)
    elif _op(n) is None:
        attrs = dict(INPUT_STYLE)
    elif getattr(n, "name", None):
        attrs = dict(STATE_STYLE)
    else:
        attrs = {}
    if is_root:
        attrs["peripheries"] = "2"
    return attrs
