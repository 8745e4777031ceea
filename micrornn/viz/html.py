"""One self-contained HTML page that steps through the forward and backward pass of a small RNN.

    html = to_html()                          # a 3-step, 1-layer SequenceModel on random data
    write_html("bptt.html", steps=4)          # or to_html(model, x, targets) for your own

The graph is the engine's own (``draw_graph`` as SVG); the numbers come from ``trace_backprop``.
No server and no network: the SVG, the numbers, the style and the script are all in the file.
"""
from __future__ import annotations

import html as html_text
import json
import re
from pathlib import Path

import graphviz
import numpy as np

from micrornn.nn import SequenceModel
from micrornn.viz.cells import check_first_step, kind_of, stack_parts
from micrornn.viz.graph import draw_graph
from micrornn.viz.render import GraphvizNotFoundError, write_atomically
from micrornn.viz.trace import trace_backprop

STATIC = Path(__file__).with_name("static")


def demo_problem(steps=3, hidden_size=3, input_size=2, output_size=3, seed=0):
    """A small SequenceModel and random (x, targets) of ``steps`` steps, batch 1."""
    for name, value in (("steps", steps), ("hidden_size", hidden_size), ("input_size", input_size),
                        ("output_size", output_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"to_html: {name} must be a positive integer, got {value!r}")
    rng = np.random.default_rng(seed)
    model = SequenceModel(input_size, hidden_size, output_size, rng=rng)
    x = rng.standard_normal((steps, 1, input_size))
    targets = rng.integers(0, output_size, size=(steps, 1))
    return model, x, targets


def _svg(graph) -> str:
    """The graph as inline SVG (no XML prolog), or GraphvizNotFoundError."""
    try:
        svg = graph.pipe(format="svg").decode("utf-8")
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFoundError("to_html needs the Graphviz program 'dot' to lay out the graph; install the "
                                    "system package (apt-get install graphviz or brew install graphviz)") from None
    return svg[svg.index("<svg"):]


def _focus_labels(trace, layers) -> list:
    """Words for the two paths into the focused h_t, in the order they arrive."""
    focus, nodes = trace.focus, trace.nodes
    labels = []
    for src in focus["from"]:
        n = {**nodes[src], "label": html_text.escape(nodes[src]["label"])}  # the page shows these as HTML
        if n["step"] == focus["step"] + 1 and n["layer"] == focus["layer"]:
            labels.append(f"from step {focus['step'] + 1}: back through W, via h{focus['step'] + 1} "
                          f"(the {n['label']} of step {n['step']})")
        elif focus["layer"] < layers - 1:
            labels.append(f"from the layer above: layer {focus['layer'] + 1} reads h{focus['step']} as its input "
                          f"(via the {n['label']} node)")
        else:
            labels.append(f"from this step's own output: o{focus['step']} → L{focus['step']}, "
                          f"via the {n['label']} node")
    return labels


STEPPER_LIMITS = {"steps": 10, "hidden_size": 32, "input_size": 32, "output_size": 32, "batch_size": 4,
                  "layers": 3}  # every node's numbers are in the page: at the limits about 3 MB, under 2 s


def check_stepper_problem(model, x) -> int:
    """The number of steps of x, after refusing in one line what the stepper cannot show: a
    nonlinearity that is not named ("tanh" or "relu"), NaN or Inf in x, sizes beyond STEPPER_LIMITS."""
    rnn, head = getattr(model, "rnn", model), getattr(model, "head", None)  # any small model: read what it has
    act = getattr(rnn, "nonlinearity", "tanh")
    if not isinstance(act, str):
        raise TypeError(f"to_html: the stepper names the cell's nonlinearity and needs \"tanh\" or \"relu\", got "
                        f"{getattr(act, '__name__', type(act).__name__)!r}")
    data = np.asarray(getattr(x, "data", x))
    if data.ndim != 3:
        raise ValueError(f"to_html: x must have shape (steps, batch, input_size), got {data.shape}")
    if data.dtype.kind in "fc" and not np.isfinite(data).all():
        raise ValueError("to_html: x holds NaN or Inf; the stepper shows finite numbers only")
    sizes = {"steps": data.shape[0], "batch_size": data.shape[1], "input_size": data.shape[2],
             "hidden_size": getattr(rnn, "hidden_size", None), "output_size": getattr(head, "out_features", None),
             "layers": getattr(rnn, "num_layers", 1)}
    for name, value in sizes.items():
        if isinstance(value, int) and value > STEPPER_LIMITS[name]:
            raise ValueError(f"to_html: {name} {value} is more than the stepper's {STEPPER_LIMITS[name]} (every "
                             f"node's numbers are written into the page)")
    return data.shape[0]


def to_html(model=None, x=None, targets=None, *, steps=3, hidden_size=3, seed=0, focus_step=1, title=None) -> str:
    """The stepper page as a string. Without model/x/targets, builds ``demo_problem(steps, ...)``.

    model: any small unrolled model (a SequenceModel, or a module around nn.Recurrent(cell) whose forward
    returns per-step logits; keep it small, one layer best: every node's numbers are shown);
    focus_step: for the vanilla cell, the early h_t whose two incoming gradient paths are highlighted.
    """
    if model is None:
        model, x, targets = demo_problem(steps, hidden_size, seed=seed)
    elif x is None or targets is None:
        raise ValueError("to_html: pass x and targets together with model")
    rnn, _, cells = stack_parts(model)
    layers = int(getattr(rnn, "num_layers", 1) or 1)
    if getattr(rnn, "fused", False):
        raise ValueError("to_html: a fused RNN records no per-step nodes; build the model with fused=False")
    vanilla = kind_of(cells[0]) == "rnn"
    T = check_stepper_problem(model, x)
    if not 1 <= focus_step < T:
        raise ValueError(f"to_html: focus_step must be a step with a successor, 1..{T - 1}, got {focus_step} "
                         f"(a {T}-step sequence)")
    check_first_step(model, x, "to_html")
    trace = trace_backprop(model, x, targets, focus=(0, focus_step))
    if not vanilla:  # the two-path panel explains the vanilla cell's h_t
        trace.focus = None
    if trace.focus is not None:
        trace.focus["labels"] = _focus_labels(trace, layers)
    graph = draw_graph(trace.extra["root"], names=model, fold_transposes=True)
    title = title or f"Backpropagation through time, one node at a time ({T} steps)"
    data = _rounded({"nodes": trace.nodes, "events": trace.events, "focus": trace.focus, "loss": trace.loss})
    payload = _script_json(data)
    rows = "\n".join(
        f'<tr data-node="{i}"><td>{html_text.escape(n["label"])}</td><td>{_where(n, layers)}</td><td class="matrix value"></td>'
        f'<td class="matrix grad"></td></tr>'
        for i, n in _table_order(trace))
    page = (STATIC / "page.html").read_text(encoding="utf-8")
    replacements = {"{{TITLE}}": html_text.escape(title), "{{CSS}}": (STATIC / "stepper.css").read_text(encoding="utf-8"),
                    "{{SVG}}": _svg(graph), "{{ROWS}}": rows, "{{TRACE}}": payload,
                    "{{LOSS}}": f"{trace.loss:.6g}", "{{STEPS}}": str(T),
                    "{{FOCUS}}": str(focus_step), "{{NEXT}}": str(focus_step + 1),
                    "{{CELL}}": _cell_text(cells[0], vanilla), "{{LAYERS}}": _layers_text(layers),
                    "{{JS}}": (STATIC / "stepper.js").read_text(encoding="utf-8")}
    return _fill(page, replacements)


PLACEHOLDER = re.compile(r"\{\{[A-Z]+\}\}")
SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _fill(template: str, values: dict) -> str:
    """The template with each {{NAME}} replaced by values["{{NAME}}"] in one pass: a value is never
    searched again, so a label or title that contains "{{TRACE}}" or "{{JS}}" stays text."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(0), m.group(0)), template)


def _script_json(data) -> str:
    """JSON that is safe inside <script>: <, >, & and the JS line separators written as \\u escapes,
    so no string in it can close the script element or open a comment."""
    text = json.dumps(data, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: SCRIPT_ESCAPES[m.group(0)], text)


def _cell_text(cell, vanilla) -> str:
    """What the page's introduction says the model is (HTML)."""
    if vanilla:
        act = cell.nonlinearity if isinstance(getattr(cell, "nonlinearity", None), str) else "act"
        return (f"a small RNN, h<sub>t</sub> = {act}(x<sub>t</sub>U<sup>T</sup> + h<sub>t-1</sub>W<sup>T</sup> + b), "
                "o<sub>t</sub> = h<sub>t</sub>V<sup>T</sup> + c,")
    entries = ", ".join(f"{html_text.escape(n)}<sub>t</sub>" for n in getattr(cell, "state_names", ("h",)))
    return (f"a small recurrent model with a {html_text.escape(type(cell).__name__)} cell (state {entries}) "
            "and its read-out o<sub>t</sub>,")


def _rounded(obj):
    """obj with every float rounded to 10 significant digits: the page shows 6, and the docs copy
    then stays byte-identical across machines whose BLAS round the last bits differently."""
    if isinstance(obj, float):
        return float(f"{obj:.10g}")
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def _layers_text(layers) -> str:
    """A sentence about stacked layers for the page's introduction (nothing for one layer)."""
    return "" if layers == 1 else (f" There are {layers} stacked layers: layer l + 1 reads layer l's h<sub>t</sub> "
                                   "as its input, and o<sub>t</sub> comes from the top layer.")


def _where(node, layers) -> str:
    """Where a node sits: "step t", "all steps" (a whole-layer node) or nothing (head, loss, leaves),
    after "layer l, " when there are several layers."""
    if node["layer"] is None:
        return ""
    layer = f"layer {node['layer']}, " if layers > 1 else ""
    return layer + ("all steps" if node["step"] is None else f"step {node['step']}")


def _table_order(trace):
    """Table rows: inputs and parameters first, then the ops in forward order."""
    leaves = [(i, n) for i, n in trace.nodes.items() if n["kind"] != "op"]
    ops = [(e["node"], trace.nodes[e["node"]]) for e in trace.events if e["phase"] == "forward"]
    return leaves + ops


def write_html(path, *args, **kwargs) -> Path:
    """Write ``to_html(*args, **kwargs)`` to path (a .html file); returns the Path."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"write_html: cannot write {str(path)!r}: use a .html file")
    return write_atomically(path, to_html(*args, **kwargs).encode("utf-8"))  # a failed write keeps the old page
