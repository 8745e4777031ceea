"""The textbook pictures of an RNN: unrolled in time (x_t -> h_t -> o_t -> L_t) and folded (one cell, a loop)."""
from __future__ import annotations

import math

import graphviz

from micrornn.viz.flow import LogColors, as_norms

_FONT = {"fontname": "Helvetica"}
_ROW_STYLE = {"x": {"shape": "circle", "style": "filled", "fillcolor": "#e8f1e4", "color": "#4a7c3a"},
              "h": {"shape": "circle", "style": "filled", "fillcolor": "#eeeeee", "color": "#333333"},
              "c": {"shape": "circle", "style": "filled,bold", "fillcolor": "#d9f0d3", "color": "#1b7837"},
              "o": {"shape": "circle", "style": "filled", "fillcolor": "#fdf0d5", "color": "#9c6b00"},
              "L": {"shape": "circle", "style": "filled", "fillcolor": "#f9dcdc", "color": "#9c1f1f"}}
_WEIGHT_EDGE = {"fontcolor": "#1f4e9c", "color": "#555555"}
_CELL_PATH = {"color": "#1b7837", "fontcolor": "#1b7837", "penwidth": "2.5"}  # the LSTM's c_{t-1} -> c_t
_GATES = {"lstm": ("i, f, g", "o"), "gru": ("r, z, n", None)}  # which gates an edge feeds


def _parts(model):
    """(rnn, head or None) of a SequenceModel or a bare RNN."""
    rnn = getattr(model, "rnn", model)
    if not hasattr(rnn, "cells"):
        raise TypeError(f"expected a SequenceModel or an RNN, got {type(model).__name__}")
    return rnn, getattr(model, "head", None)


def _weight(letter, layer, layers, gates=None) -> str:
    """HTML label of a weight, with the layer (0-based, as in rnn.cells.<l>) as a superscript when
    there are several layers, and the gates it feeds (gated cells)."""
    sup = f"<SUP>({layer})</SUP>" if layers > 1 else ""
    return f"<{letter}{sup}{f' ({gates})' if gates else ''}>"


def _c(t, layer, layers) -> str:
    """HTML text of the LSTM cell state c_t."""
    return _h(t, layer, layers).replace("h", "c", 1)


def _h(t, layer, layers) -> str:
    """HTML text of h_t (with the layer, 0-based, as a superscript when there are several layers)."""
    sup = f"<SUP>({layer})</SUP>" if layers > 1 else ""
    return f"h<SUB>{t}</SUB>{sup}"


def _kept_steps(steps, max_steps) -> list:
    """Steps to draw, with None standing for the collapsed middle."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if max_steps is None or steps <= max_steps:
        return list(range(1, steps + 1))
    head, tail = math.ceil(max_steps / 2), max_steps // 2
    return list(range(1, head + 1)) + [None] + list(range(steps - tail + 1, steps + 1))


def _steps_and_loss(norms, steps, loss, layers):
    """(steps, loss) for the picture: taken from the gradient norms when given, and checked
    against what the caller asked for, so the picture never shows steps or a loss the data lacks."""
    if loss not in (None, "sum", "last"):
        raise ValueError(f"draw_unrolled: loss must be 'sum' or 'last', got {loss!r}")
    if norms is None:
        return (4 if steps is None else steps), (loss or "sum")
    if not norms:
        raise ValueError("draw_unrolled: hidden_grads holds no gradients")
    bad_layers = sorted({l for l, _ in norms if not 0 <= l < layers})
    if bad_layers:
        raise ValueError(f"draw_unrolled: hidden_grads has layer(s) {bad_layers} but the model has "
                         f"{layers} layer(s) (0..{layers - 1})")
    if steps is not None and steps != norms.steps:
        raise ValueError(f"draw_unrolled: hidden_grads are for a {norms.steps}-step sequence but steps={steps}; "
                         "leave steps out (it is taken from the gradients) or pass the same number")
    if loss is not None and norms.loss is not None and loss != norms.loss:
        raise ValueError(f"draw_unrolled: hidden_grads come from loss={norms.loss!r} but loss={loss!r}; "
                         "leave loss out (it is taken from the gradients) or pass the same kind")
    return norms.steps, (loss or norms.loss or "sum")


def draw_unrolled(model, steps=None, *, max_steps=None, hidden_grads=None, folded=False, title=None, loss=None):
    """The unrolled network: per step x_t -> h_t -> o_t -> L_t, h_{t-1} -> h_t (W), x_t -> h_t (U),
    h_t -> o_t (V); stacked layers as rows (layer l is rnn.cells.l, drawn as h_t^(l)).

    hidden_grads (see ``as_norms``, e.g. from ``gradient_flow``) annotates and colours each h_t with
    ||dL/dh_t||; the number of steps (default 4 without gradients) and the loss kind ("sum":
    L = sum_t L_t, or "last": L = L_T) are then taken from it, and a different steps= or loss= is
    refused. max_steps collapses the middle; the colour scale spans only the drawn h_t.
    folded=True draws the folded view instead."""
    if folded:
        return draw_folded(model, title=title)
    rnn, head = _parts(model)
    layers = rnn.num_layers
    norms = as_norms(hidden_grads) if hidden_grads is not None else None
    steps, loss = _steps_and_loss(norms, steps, loss, layers)
    columns = _kept_steps(steps, max_steps)
    drawn = set(columns)
    norms = {k: v for k, v in (norms or {}).items() if k[1] in drawn}
    colors = LogColors(norms.values()) if norms else None

    g = graphviz.Digraph("unrolled", graph_attr={"rankdir": "BT", "newrank": "true", "nodesep": "0.35",
                                                  "ranksep": "0.45", "labelloc": "b", "fontsize": "11", **_FONT},
                         node_attr={"fontsize": "12", "fixedsize": "false", "margin": "0.02", **_FONT},
                         edge_attr={"fontsize": "11", "arrowsize": "0.7", **_FONT})
    kind = getattr(rnn, "cell_kind", "rnn")
    into, into_h = _GATES.get(kind, (None, None))
    rows = ["x"] + [r for l in range(layers) for r in ([f"c{l}"] if kind == "lstm" else []) + [f"h{l}"]]
    rows += ["o", "L"] if head is not None else []
    for row in rows:
        with g.subgraph(name=f"row_{row}") as r:
            r.attr(rank="same")
            if row[0] == "h":  # c_0 = 0 adds nothing (c_1 = i ⊙ g), so the c row starts at c_1
                layer = int(row[1:])
                side = f"layer {layer} " if layers > 1 else ""
                r.node(f"{row}_0", label=f"<{side}{_h(0, layer, layers)}>", shape="plaintext")
            for t in columns:
                if t is None:
                    r.node(f"{row}_gap", label="⋯", shape="plaintext", fontsize="18")
                    continue
                r.node(f"{row}_{t}", **_row_node(row, t, layers, norms, colors))

    previous = None
    for t in columns:
        col = "gap" if t is None else t
        if t is None:  # keep the gap column aligned
            for lower, upper in zip(rows, rows[1:]):
                g.edge(f"{lower}_gap", f"{upper}_gap", style="invis")
        else:
            for l in range(layers):
                below = "x" if l == 0 else f"h{l - 1}"
                if kind == "lstm":  # the input feeds the gates i, f, g (into c_t) and o (into h_t)
                    g.edge(f"{below}_{t}", f"c{l}_{t}", label=_weight("U", l, layers, into), **_WEIGHT_EDGE)
                    g.edge(f"c{l}_{t}", f"h{l}_{t}", xlabel="<o ⊙ tanh>", **_CELL_PATH)
                g.edge(f"{below}_{t}", f"h{l}_{t}", label=_weight("U", l, layers, into_h if kind == "lstm" else into),
                       **_WEIGHT_EDGE)
            if head is not None:
                g.edge(f"h{layers - 1}_{t}", f"o_{t}", label="<V>", **_WEIGHT_EDGE)
                g.edge(f"o_{t}", f"L_{t}")
        for l in range(layers):
            before = 0 if previous is None else previous
            src = f"h{l}_{before}"
            style = {"style": "dashed"} if col == "gap" or previous == "gap" else {}
            if kind == "lstm" and previous is not None:
                g.edge(f"c{l}_{before}", f"c{l}_{col}", xlabel="<⊙ f>", **_CELL_PATH, **style)
            if kind == "lstm":
                g.edge(src, f"c{l}_{col}", label=_weight("W", l, layers, into), constraint="false",
                       **_WEIGHT_EDGE, **style)  # runs down a row: leave the layout to the other edges
            label = _weight("W", l, layers, into_h if kind == "lstm" else into)
            if kind == "gru":
                label = label[:-1] + "; z ⊙ h>"
            g.edge(src, f"h{l}_{col}", label=label, **_WEIGHT_EDGE, **style)
        if previous is not None:
            g.edge(f"x_{previous}", f"x_{col}", style="invis")
        previous = col
    if head is not None:
        label = "<L = Σ<SUB>t</SUB> L<SUB>t</SUB>>" if loss == "sum" else "<L = L<SUB>T</SUB>>"
        g.node("loss", label=label, shape="box", style="rounded,bold", margin="0.15,0.06")
        for t in columns:
            if t is not None and (loss == "sum" or t == steps):
                g.edge(f"L_{t}", "loss", color="#aaaaaa", arrowsize="0.5")
    caption = title if title is not None else _caption(steps, layers, head, kind)
    if colors is not None:  # the colour bar goes under the caption, in the graph's own label
        what = "‖∂L/∂h<SUB>t</SUB>‖" if loss == "sum" else "‖∂L<SUB>T</SUB>/∂h<SUB>t</SUB>‖ (last step's loss only)"
        bar = colors.legend(f"{what} in each h<SUB>t</SUB>")[1:-1]
        caption = f'<<TABLE BORDER="0"><TR><TD>{_html_escape(caption)}</TD></TR><TR><TD>{bar}</TD></TR></TABLE>>'
    g.attr(label=caption)
    return g


def _html_escape(text) -> str:
    """Escape text for an HTML-like graphviz label."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _row_node(row, t, layers, norms, colors) -> dict:
    """Label and style of the node for row (x, h<l>, c<l>, o, L) at step t."""
    if row[0] == "c":
        return {"label": f"<{_c(t, int(row[1:]), layers)}>", "group": f"c{t}", **_ROW_STYLE["c"]}
    if row.startswith("h"):
        layer = int(row[1:])
        text, style = _h(t, layer, layers), dict(_ROW_STYLE["h"])
        norm = norms.get((layer, t))
        if norm is not None:
            style.update(colors.attrs(norm), shape="box")
            style["style"] = "filled,rounded"
            text += f'<BR/><FONT POINT-SIZE="10">{norm:.1e}</FONT>'
        return {"label": f"<{text}>", "group": f"c{t}", **style}
    return {"label": f"<{row}<SUB>{t}</SUB>>", "group": f"c{t}", **_ROW_STYLE[row]}


def _caption(steps, layers, head, kind="rnn") -> str:
    """Bottom caption: which parameters the letters stand for (and, for gated cells, the gates)."""
    where = "U⁽ˡ⁾, W⁽ˡ⁾, b⁽ˡ⁾ = rnn.cells.l (layer l)" if layers > 1 else "U, W, b = rnn.cells.0"
    shared = f"{where}; V, c = head" if head is not None else where
    text = f"unrolled over {steps} steps: {shared} — the same weights at every step"
    if kind == "lstm":
        text += ("\nLSTM: the cell state c_t (green) runs apart from h_t; c_{t-1} → c_t is scaled only by the "
                 "forget gate f (c_t = f ⊙ c_{t-1} + i ⊙ g)")
    elif kind == "gru":
        text += "\nGRU: h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}; U and W feed the gates r, z and the candidate n"
    return text


def draw_folded(model, title=None):
    """The folded view: one cell per layer with its recurrent loop W (a one-step delay)."""
    rnn, head = _parts(model)
    layers = rnn.num_layers
    g = graphviz.Digraph("folded", graph_attr={"rankdir": "BT", "ranksep": "0.45", "labelloc": "b",
                                               "fontsize": "11", **_FONT},
                         node_attr={"fontsize": "12", **_FONT}, edge_attr={"fontsize": "11", "arrowsize": "0.7", **_FONT})
    g.node("x", label="<x<SUB>t</SUB>>", **_ROW_STYLE["x"])
    kind = getattr(rnn, "cell_kind", "rnn")
    into, into_h = _GATES.get(kind, (None, None))
    below = "x"
    for l in range(layers):
        node = f"h{l}"
        g.node(node, label=f"<{_h('t', l, layers)}>", **_ROW_STYLE["h"])
        w = _weight("W", l, layers, into_h if kind == "lstm" else into)[1:-1]
        if kind == "lstm":  # the cell state: its own loop, scaled by f
            cell = f"c{l}"
            g.node(cell, label=f"<{_c('t', l, layers)}>", **_ROW_STYLE["c"])
            g.edge(below, cell, label=_weight("U", l, layers, into), **_WEIGHT_EDGE)
            g.edge(cell, cell, label="<⊙ f (c<SUB>t-1</SUB> → c<SUB>t</SUB>)>", headport="e", tailport="s",
                   **_CELL_PATH)
            g.edge(node, cell, label=_weight("W", l, layers, into), constraint="false", **_WEIGHT_EDGE)
            g.edge(cell, node, label="<o ⊙ tanh>", **_CELL_PATH)
        g.edge(below, node, label=_weight("U", l, layers, into_h if kind == "lstm" else into), **_WEIGHT_EDGE)
        g.edge(node, node, label=f"<{w} (h<SUB>t-1</SUB> → h<SUB>t</SUB>)>", headport="e", tailport="n",
               **_WEIGHT_EDGE)
        below = node
    if head is not None:
        g.node("o", label="<o<SUB>t</SUB>>", **_ROW_STYLE["o"])
        g.node("L", label="<L<SUB>t</SUB>>", **_ROW_STYLE["L"])
        g.edge(below, "o", label="<V>", **_WEIGHT_EDGE)
        g.edge("o", "L")
    g.attr(label=title if title is not None else "folded: one cell per layer, its state fed back through W")
    return g
