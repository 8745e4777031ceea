"""The textbook pictures of an RNN: unrolled in time (x_t -> h_t -> o_t -> L_t) and folded (one cell, a loop)."""
from __future__ import annotations

import math

import graphviz

from micrornn.viz.cells import cell_prefix, input_size_of, kind_of, stack_parts, step_edges
from micrornn.viz.flow import LogColors, as_norms

_FONT = {"fontname": "Helvetica"}
_ROW_STYLE = {"x": {"shape": "circle", "style": "filled", "fillcolor": "#e8f1e4", "color": "#4a7c3a"},
              "h": {"shape": "circle", "style": "filled", "fillcolor": "#eeeeee", "color": "#333333"},
              "c": {"shape": "circle", "style": "filled,bold", "fillcolor": "#d9f0d3", "color": "#1b7837"},
              "s": {"shape": "circle", "style": "filled", "fillcolor": "#e4ecf7", "color": "#3a5a8c"},
              "o": {"shape": "circle", "style": "filled", "fillcolor": "#fdf0d5", "color": "#9c6b00"},
              "L": {"shape": "circle", "style": "filled", "fillcolor": "#f9dcdc", "color": "#9c1f1f"}}
_WEIGHT_EDGE = {"fontcolor": "#1f4e9c", "color": "#555555"}
_CELL_PATH = {"color": "#1b7837", "fontcolor": "#1b7837", "penwidth": "2.5"}  # the LSTM's c_{t-1} -> c_t
_CELL_OUT = {"color": "#333333", "fontcolor": "#333333", "style": "solid"}  # the LSTM's c_t -> h_t (o ⊙ tanh)
_GATES = {"lstm": ("i, f, g", "o"), "gru": ("r, z, n", None)}  # built-in cells: which gates an edge feeds
_OUT_OF_LOSS = {"style": "dashed", "color": "#aaaaaa", "fontcolor": "#999999"}  # L_t with t < T under loss="last"


class _Layer:
    """What the picture draws for one layer: its cell's state entries, their step edges, its names."""

    def __init__(self, model, cell, index, layers, below_size, input_size, what="draw_unrolled"):
        self.cell, self.index, self.layers = cell, index, layers
        self.kind = kind_of(cell)
        width = input_size_of(cell, below_size, input_size if index == 0 else None, what)
        self.step = step_edges(cell, width, what)
        self.prefix = cell_prefix(model, cell)
        # rows bottom to top: the other entries under h (the LSTM's c_t under h_t)
        self.entries = [k for k in range(1, len(self.step.names))] + [0]

    def row(self, k) -> str:
        """Node-name stem of entry k ("h0", "c0", "s2_l0")."""
        name = self.step.names[k]
        return f"{name}_l{self.index}" if name[-1:].isdigit() else f"{name}{self.index}"

    def text(self, k, t) -> str:
        """HTML text of entry k at step t (with the layer as a superscript when there are several)."""
        sup = f"<SUP>({self.index})</SUP>" if self.layers > 1 else ""
        return f"{_html_escape(self.step.names[k])}<SUB>{t}</SUB>{sup}"

    def style(self, k) -> dict:
        """Row style of entry k: h grey, the LSTM's c green, other entries blue."""
        if k == 0:
            return _ROW_STYLE["h"]
        return _ROW_STYLE["c"] if self.kind == "lstm" and self.step.names[k] == "c" else _ROW_STYLE["s"]

    def label(self, params, target, source) -> str:
        """Edge label: the cell's own parameter names (layer superscript when there are several layers),
        and for the built-in gated cells the gates the edge feeds."""
        sup = f"<SUP>({self.index})</SUP>" if self.layers > 1 else ""
        text = ", ".join(f"{_html_escape(p)}{sup}" for p in params)
        into = _GATES.get(self.kind)
        if into and text:
            gates = into[0] if (self.kind == "gru" or self.step.names[target] == "c") else into[1]
            text += f" ({gates})" if gates else ""
        if self.kind == "gru" and source == ("prev", 0):
            text += "; z ⊙ h"
        return f"<{text}>" if text else ""


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


def _layers(model, input_size=None, what="draw_unrolled") -> tuple:
    """(head or None, [_Layer per layer]) of any model whose cells follow the cell protocol."""
    rnn, head, cells = stack_parts(model)
    layers, below = [], getattr(rnn, "input_size", None) if rnn is not cells[0] else None
    for l, cell in enumerate(cells):
        layers.append(_Layer(model, cell, l, len(cells), below, input_size, what))
        below = getattr(cell, "hidden_size", None)
    return head, layers


def draw_unrolled(model, steps=None, *, max_steps=None, hidden_grads=None, folded=False, title=None, loss=None,
                  input_size=None):
    """The unrolled network of any cell: per step x_t -> (h_t, c_t, ...) -> o_t -> L_t; stacked layers as rows.

    Each state entry of the cell (h_t, and c_t or whatever else its state holds) gets its own row, and
    only the dependencies one step of the cell really has are drawn, each labelled with the cell's
    own parameters that scale it (read from the engine graph of one step; see ``viz.cells``).
    hidden_grads (see ``as_norms``, e.g. from ``gradient_flow``) annotates and colours each h_t with
    ||dL/dh_t||; the number of steps (default 4 without gradients) and the loss kind ("sum":
    L = sum_t L_t, or "last": L = L_T, the other L_t drawn dashed as not in the loss) are then taken
    from it, and a different steps= or loss= is refused. max_steps collapses the middle; the colour
    scale spans only the drawn h_t. input_size: the width of x_t when the first cell has no
    ``input_size`` attribute. folded=True draws the folded view instead."""
    if folded:
        return draw_folded(model, title=title, input_size=input_size)
    head, layers = _layers(model, input_size)
    norms = as_norms(hidden_grads) if hidden_grads is not None else None
    steps, loss = _steps_and_loss(norms, steps, loss, len(layers))
    columns = _kept_steps(steps, max_steps)
    drawn = set(columns)
    norms = {k: v for k, v in (norms or {}).items() if k[1] in drawn}
    colors = LogColors(norms.values()) if norms else None

    g = graphviz.Digraph("unrolled", graph_attr={"rankdir": "BT", "newrank": "true", "nodesep": "0.35",
                                                  "ordering": "out",  # keeps each row in time order (c_0 first)
                                                  "ranksep": "0.45", "labelloc": "b", "fontsize": "11", **_FONT},
                         node_attr={"fontsize": "12", "fixedsize": "false", "margin": "0.02", **_FONT},
                         edge_attr={"fontsize": "11", "arrowsize": "0.7", **_FONT})
    rows = ["x"] + [layer.row(k) for layer in layers for k in layer.entries] + (["o", "L"] if head is not None else [])
    _add_rows(g, rows, layers, columns, steps, loss, norms, colors)
    previous = None
    for t in columns:
        col = "gap" if t is None else t
        if t is None:  # keep the gap column aligned
            for lower, upper in zip(rows, rows[1:]):
                g.edge(f"{lower}_gap", f"{upper}_gap", style="invis")
        else:
            _step_edges(g, layers, t, head, loss, steps)
        dashed = {"style": "dashed"} if col == "gap" or previous == "gap" else {}
        for layer in layers:
            _time_edges(g, layer, 0 if previous is None else previous, col, dashed)
        if previous is not None:
            g.edge(f"x_{previous}", f"x_{col}", style="invis")
        previous = col
    if head is not None:
        label = "<L = Σ<SUB>t</SUB> L<SUB>t</SUB>>" if loss == "sum" else "<L = L<SUB>T</SUB>>"
        g.node("loss", label=label, shape="box", style="rounded,bold", margin="0.15,0.06")
        for t in columns:
            if t is not None and (loss == "sum" or t == steps):
                g.edge(f"L_{t}", "loss", color="#aaaaaa", arrowsize="0.5")
    caption = title if title is not None else _caption(steps, layers, head, loss)
    if colors is not None:  # the colour bar goes under the caption, in the graph's own label
        what = "‖∂L/∂h<SUB>t</SUB>‖" if loss == "sum" else "‖∂L<SUB>T</SUB>/∂h<SUB>t</SUB>‖ (last step's loss only)"
        bar = colors.legend(f"{what} in each h<SUB>t</SUB>")[1:-1]
        lines = "".join(f"<TR><TD>{_html_escape(line)}</TD></TR>" for line in caption.split("\n"))
        caption = f'<<TABLE BORDER="0">{lines}<TR><TD>{bar}</TD></TR></TABLE>>'
    g.attr(label=caption)
    return g


def _add_rows(g, rows, layers, columns, steps, loss, norms, colors) -> None:
    """One rank per row; every state entry starts from its initial value at t = 0 (h_0, c_0, ...)."""
    entry = {layer.row(k): (layer, k) for layer in layers for k in layer.entries}
    for row in rows:
        with g.subgraph(name=f"row_{row}") as r:
            r.attr(rank="same")
            if row in entry:
                layer, k = entry[row]
                side = f"layer {layer.index} " if layer.layers > 1 and k == 0 else ""
                r.node(f"{row}_0", label=f"<{side}{layer.text(k, 0)}>", shape="plaintext", group="c0")
            for t in columns:
                if t is None:
                    r.node(f"{row}_gap", label="⋯", shape="plaintext", fontsize="18")
                elif row in entry:
                    r.node(f"{row}_{t}", **_entry_node(*entry[row], t, norms, colors))
                else:
                    attrs = {"label": f"<{row}<SUB>{t}</SUB>>", "group": f"c{t}", **_ROW_STYLE[row]}
                    if row == "L" and loss == "last" and t != steps:
                        attrs.update(_OUT_OF_LOSS, fillcolor="#ffffff", tooltip="not in the loss (loss = L_T)")
                    r.node(f"{row}_{t}", **attrs)


def _step_edges(g, layers, t, head, loss, steps) -> None:
    """The edges inside step t: the input (or the layer below) into each entry, entries into each
    other, and the head."""
    for layer in layers:
        below = "x" if layer.index == 0 else layers[layer.index - 1].row(0)
        for (source, k), params in layer.step.edges.items():
            target = f"{layer.row(k)}_{t}"
            if source == "x":
                g.edge(f"{below}_{t}", target, label=layer.label(params, k, source), **_WEIGHT_EDGE)
            elif source[0] == "new":
                attrs = dict(_WEIGHT_EDGE)
                label = layer.label(params, k, source)
                if layer.kind == "lstm":  # h_t = o ⊙ tanh(c_t): not the cell-state path
                    attrs, label = dict(_CELL_OUT), "<o ⊙ tanh>"
                g.edge(f"{layer.row(source[1])}_{t}", target, label=label, **attrs)
    if head is not None:
        top = layers[-1].row(0)
        g.edge(f"{top}_{t}", f"o_{t}", label="<V>", **_WEIGHT_EDGE)
        g.edge(f"o_{t}", f"L_{t}", **(_OUT_OF_LOSS if loss == "last" and t != steps else {}))


def _time_edges(g, layer, before, col, dashed) -> None:
    """The edges from the previous drawn step (or t = 0) into step col, one per real dependency."""
    rank = {k: i for i, k in enumerate(layer.entries)}
    for (source, k), params in layer.step.edges.items():
        if source == "x" or source[0] != "prev":
            continue
        j = source[1]
        attrs = dict(_WEIGHT_EDGE, **dashed)
        label = layer.label(params, k, source)
        if rank[j] > rank[k]:  # runs down a row (h_{t-1} -> c_t): leave the layout to the other edges
            attrs["constraint"] = "false"
        if layer.kind == "lstm" and j == k and layer.step.names[k] == "c":
            attrs, label = dict(_CELL_PATH, **dashed), "<⊙ f>"
        g.edge(f"{layer.row(j)}_{before}", f"{layer.row(k)}_{col}", label=label, **attrs)


def _html_escape(text) -> str:
    """Escape text for an HTML-like graphviz label."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _entry_node(layer, k, t, norms, colors) -> dict:
    """Label and style of state entry k of a layer at step t; h_t carries its gradient norm when given."""
    text, style = layer.text(k, t), dict(layer.style(k))
    norm = norms.get((layer.index, t)) if k == 0 else None
    if norm is not None:
        style.update(colors.attrs(norm), shape="box")
        style["style"] = "filled,rounded"
        text = (f'<TABLE BORDER="0" CELLPADDING="2" CELLSPACING="0"><TR><TD>{text}</TD></TR>'
                f'<TR><TD><FONT POINT-SIZE="10">{norm:.1e}</FONT></TD></TR></TABLE>')
    return {"label": f"<{text}>", "group": f"c{t}", **style}


def _caption(steps, layers, head, loss="sum") -> str:
    """Bottom caption: which parameters the edge labels are (and, for the built-in gated cells, the gates)."""
    base = layers[0].prefix[:-1]
    if len(layers) > 1 and all(layer.step.params == layers[0].step.params and layer.prefix == f"{base}{layer.index}"
                               for layer in layers):  # rnn.cells.0, rnn.cells.1, ...: one line for all
        where = f"{', '.join(p + '⁽ˡ⁾' for p in layers[0].step.params)} = {base}l (layer l)"
    else:
        where = "; ".join(f"{', '.join(layer.step.params)} = {layer.prefix}"
                          + (f" (layer {layer.index})" if len(layers) > 1 else "") for layer in layers)
    shared = f"{where}; V, c = head" if head is not None else where
    text = f"unrolled over {steps} steps: {shared} — the same weights at every step"
    kind = layers[0].kind
    if kind == "lstm":
        text += ("\nLSTM: the cell state c_t (green) runs apart from h_t; c_{t-1} → c_t is scaled only by the "
                 "forget gate f (c_t = f ⊙ c_{t-1} + i ⊙ g)")
    elif kind == "gru":
        text += "\nGRU: h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}; U and W feed the gates r, z and the candidate n"
    gates = tuple(getattr(layers[0].cell, "gate_names", ()) or ())
    if kind is None and gates:
        text += f"\n{type(layers[0].cell).__name__} gates: {', '.join(gates)}"
    if head is not None and loss == "last" and steps > 1:
        text += "\nL = L_T: the dashed L_1 … L_{T-1} are not in the loss"
    return text


def draw_folded(model, title=None, input_size=None):
    """The folded view: one cell per layer, each state entry with its loops (a one-step delay)."""
    head, layers = _layers(model, input_size, "draw_folded")
    g = graphviz.Digraph("folded", graph_attr={"rankdir": "BT", "ranksep": "0.45", "labelloc": "b",
                                               "fontsize": "11", **_FONT},
                         node_attr={"fontsize": "12", **_FONT}, edge_attr={"fontsize": "11", "arrowsize": "0.7", **_FONT})
    g.node("x", label="<x<SUB>t</SUB>>", **_ROW_STYLE["x"])
    below = "x"
    for layer in layers:
        for k in layer.entries:
            g.node(layer.row(k), label=f"<{layer.text(k, 't')}>", **layer.style(k))
        rank = {k: i for i, k in enumerate(layer.entries)}
        for (source, k), params in layer.step.edges.items():
            target, label = layer.row(k), layer.label(params, k, source)
            if source == "x":
                g.edge(below, target, label=label, **_WEIGHT_EDGE)
            elif source[0] == "new":
                attrs = dict(_CELL_OUT) if layer.kind == "lstm" else dict(_WEIGHT_EDGE)
                g.edge(layer.row(source[1]), target, label="<o ⊙ tanh>" if layer.kind == "lstm" else label, **attrs)
            else:
                j = source[1]
                name_j, name_k = layer.step.names[j], layer.step.names[k]
                delay = f"{name_j}<SUB>t-1</SUB> → {name_k}<SUB>t</SUB>"
                if layer.kind == "lstm" and j == k and name_k == "c":
                    g.edge(target, target, label=f"<⊙ f ({delay})>", headport="e", tailport="s", **_CELL_PATH)
                elif j == k:
                    text = label[1:-1] + " " if label else ""
                    g.edge(target, target, label=f"<{text}({delay})>", headport="e", tailport="n", **_WEIGHT_EDGE)
                else:  # another entry of the previous step, dashed: a one-step delay
                    text = label[1:-1] + " " if label else ""
                    g.edge(layer.row(j), target, label=f"<{text}({delay})>",
                           constraint="false" if rank[j] > rank[k] else "true", style="dashed", **_WEIGHT_EDGE)
        below = layer.row(0)
    if head is not None:
        g.node("o", label="<o<SUB>t</SUB>>", **_ROW_STYLE["o"])
        g.node("L", label="<L<SUB>t</SUB>>", **_ROW_STYLE["L"])
        g.edge(below, "o", label="<V>", **_WEIGHT_EDGE)
        g.edge("o", "L")
    g.attr(label=title if title is not None else "folded: one cell per layer, its state fed back with a one-step delay")
    return g
