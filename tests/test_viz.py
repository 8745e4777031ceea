"""Tests for micrornn.viz: DOT structure (clusters, shared parameters, sizes), gradient flow, rendering."""
import re
import shutil
import sys

import numpy as np
import pytest

import micrornn
from micrornn import bptt
from micrornn.nn import SequenceModel
from micrornn.engine.tensor import Tensor
from micrornn.viz import (GraphvizNotFoundError, as_norms, draw_folded, draw_graph, draw_unrolled,
                          gradient_flow, graph_size, plot_gradient_flow, render, retain_hidden_grads)
from micrornn.viz.flow import PALETTE, LogColors

NO_DOT = "the Graphviz 'dot' program is not installed here (.ci/run installs it)"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason=NO_DOT)


# ---- helpers ----------------------------------------------------------------------------------

def parse_dot(source):
    """{node id: (label, innermost cluster name or None)} and [(src, dst, attrs text)]."""
    nodes, edges, stack = {}, [], []
    for line in source.splitlines():
        s = line.strip()
        m = re.match(r"^subgraph (\w+) \{$", s)
        if m:
            stack.append(m.group(1))
        elif s == "}":
            if stack:
                stack.pop()
        elif "->" in s:
            m = re.match(r"^(\S+) -> (\S+)(?: \[(.*)\])?$", s)
            edges.append((m.group(1), m.group(2), m.group(3) or ""))
        else:
            m = re.match(r'^(\w+) \[label=("(?:[^"\\]|\\.)*"|<.*>)', s)
            if m and m.group(1) not in ("graph", "node", "edge"):
                nodes[m.group(1)] = (m.group(2).strip('"'), stack[-1] if stack else None)
    return nodes, edges


def model_and_loss(T=3, layers=2, hidden=3, h0=False, seed=0, **kw):
    """A small model, its summed loss on random data, and (x, y, h0)."""
    rng = np.random.default_rng(seed)
    model = SequenceModel(2, hidden, 2, num_layers=layers, rng=rng, **kw)
    x = rng.standard_normal((T, 1, 2))
    y = rng.integers(0, 2, size=(T, 1))
    h = rng.standard_normal((layers, 1, hidden)) if h0 else None
    loss, _ = model.loss(x, y, h)
    return model, loss, (x, y, h)


def step_clusters(nodes, layer):
    """Names of the time-step clusters of a layer that hold at least one node."""
    return {c for _, c in nodes.values() if c and re.fullmatch(rf"cluster_l{layer}_t\d+", c)}


# ---- structure ---------------------------------------------------------------------------------

def test_one_cluster_per_layer_and_step():
    model, loss, _ = model_and_loss(T=3, layers=2)
    source = draw_graph(loss, names=model).source
    nodes, _ = parse_dot(source)
    for layer in (0, 1):
        assert step_clusters(nodes, layer) == {f"cluster_l{layer}_t{t}" for t in (1, 2, 3)}
        assert f"subgraph cluster_l{layer} {{" in source
        h = [label for label, c in nodes.values() if label.endswith("h2 (1, 3)") and c == f"cluster_l{layer}_t2"]
        assert len(h) == 1  # h_t sits in its own step's cluster


def test_max_steps_collapses_the_middle():
    model, loss, _ = model_and_loss(T=10, layers=2)
    full, _ = parse_dot(draw_graph(loss, names=model).source)
    nodes, edges = parse_dot(draw_graph(loss, names=model, max_steps=4).source)
    for layer in (0, 1):
        assert step_clusters(nodes, layer) == {f"cluster_l{layer}_t{t}" for t in (1, 2, 9, 10)}
        label, cluster = nodes[f"collapsed_l{layer}"]
        assert cluster == f"cluster_l{layer}_gap"
        hidden = sum(c in {f"cluster_l{layer}_t{t}" for t in range(3, 9)} for _, c in full.values())
        assert "steps 3 to 8" in label and f"6 steps, {hidden} nodes" in label
    w = next(i for i, (label, _) in nodes.items() if label.startswith("rnn.cells.0.W"))
    gap_edges = [a for s, d, a in edges if s == w and d == "collapsed_l0"]
    assert len(gap_edges) == 1 and "×6" in gap_edges[0]  # one edge stands for the six hidden uses


@pytest.mark.parametrize("h0", [False, True])
def test_each_parameter_once_with_an_edge_to_every_step_using_it(h0):
    T = 4
    model, loss, _ = model_and_loss(T=T, layers=2, h0=h0)
    nodes, edges = parse_dot(draw_graph(loss, names=model).source)
    for name, p in model.named_parameters():
        ids = [i for i, (label, _) in nodes.items() if label.split(" ")[0] == name]
        assert len(ids) == 1, (name, ids)
        assert str(p.shape) in nodes[ids[0]][0]
    for layer in (0, 1):
        w = next(i for i, (label, _) in nodes.items() if label.startswith(f"rnn.cells.{layer}.W"))
        used_in = {nodes[d][1] for s, d, _ in edges if s == w}
        first = 1 if h0 else 2  # with h_0 = 0 the first step has no W h_0 term
        assert used_in == {f"cluster_l{layer}_t{t}" for t in range(first, T + 1)}


def test_node_count_grows_linearly_in_T():
    counts = []
    for T in (5, 10, 20):
        model, loss, _ = model_and_loss(T=T, layers=2)
        counts.append(graph_size(draw_graph(loss, names=model)))
    (n5, e5), (n10, e10), (n20, e20) = counts
    assert n10 - n5 > 0 and n20 - n10 == 2 * (n10 - n5)
    assert e20 - e10 == 2 * (e10 - e5)
    model, loss, _ = model_and_loss(T=100, layers=2)
    n_collapsed, _ = graph_size(draw_graph(loss, names=model, max_steps=6))
    model, loss, _ = model_and_loss(T=6, layers=2)
    n6, _ = graph_size(draw_graph(loss, names=model))
    assert n_collapsed == n6 + 2  # the six drawn steps plus one collapsed node per layer


def test_labels_carry_names_ops_and_shapes():
    model, loss, _ = model_and_loss(T=3, layers=1, hidden=5)
    nodes, _ = parse_dot(draw_graph(loss, names=model, show_data=True).source)
    labels = [label for label, _ in nodes.values()]
    assert any(label.startswith("tanh\\nh3 (1, 5)") for label in labels)
    assert any(label.startswith("rnn.cells.0.U (5, 2)") for label in labels)
    step_ops = [label for label, c in nodes.values() if c == "cluster_l0_t2" and "h2" not in label]
    assert step_ops and all(re.match(r"^\w+ \(1, 5\)", label) for label in step_ops)  # op and shape
    assert all("‖data‖ = " in label for label in labels)
    unnamed = draw_graph(loss).source  # without names parameters are still drawn, as 'parameter'
    assert "parameter (5, 5)" in unnamed


def test_fused_layers_are_single_nodes_in_their_layer_cluster():
    model, loss, _ = model_and_loss(T=5, layers=2, fused=True)
    nodes, _ = parse_dot(draw_graph(loss, names=model).source)
    fused = [c for label, c in nodes.values() if label.startswith("rnn_layer")]
    assert sorted(fused) == ["cluster_l0", "cluster_l1"]
    assert not step_clusters(nodes, 0)


def test_other_scope_labels_and_value_graphs():
    a = Tensor(np.ones(3), requires_grad=True, name="a")
    with micrornn.scope("encoder"):
        b = (a * 2.0).tanh()
    nodes, _ = parse_dot(draw_graph(b.sum()).source)
    assert sorted(c for label, c in nodes.values() if label.startswith(("mul", "tanh"))) == ["cluster_s0"] * 2
    x, y = micrornn.Value(2.0), micrornn.Value(-3.0)
    z = (x * y + x).tanh()
    z.backward()
    nodes, edges = parse_dot(draw_graph(z, show_grad=True).source)
    assert len(nodes) == 5 and len(edges) == 5  # x feeds both mul and add
    assert any(label.startswith("tanh\\ndata") and "grad 1" in label for label, _ in nodes.values())


def test_walk_is_iterative_on_deep_graphs():
    t = Tensor(np.ones(2), requires_grad=True)
    v = micrornn.Value(1.0)
    for _ in range(5000):
        t, v = t * 1.0, v + 1.0
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)  # far below the graph depth: any recursive walk would fail
    try:
        tensor_graph, value_graph = draw_graph(t), draw_graph(v)
    finally:
        sys.setrecursionlimit(limit)
    assert graph_size(tensor_graph) == (10001, 10000)  # 5000 muls, 5000 constants, one leaf
    assert graph_size(value_graph) == (10001, 10000)


def test_bad_max_steps():
    _, loss, _ = model_and_loss(T=3)
    with pytest.raises(ValueError, match="max_steps"):
        draw_graph(loss, max_steps=0)


def test_digraph_displays_inline_in_jupyter():
    _, loss, _ = model_and_loss(T=2, layers=1)
    g = draw_graph(loss)
    assert hasattr(g, "_repr_mimebundle_") or hasattr(g, "_repr_svg_")


# ---- gradient flow -----------------------------------------------------------------------------

def test_gradient_labels_match_bptt_hidden_grads():
    model, _, (x, y, _) = model_and_loss(T=6, layers=2)
    loss, norms = gradient_flow(model, x, y)
    _, _, hidden = bptt.loss_and_grads(model, x, y, return_hidden_grads=True)
    expected = as_norms(hidden)
    assert set(norms) == set(expected) == {(l, t) for l in (0, 1) for t in range(1, 7)}
    for key, value in expected.items():
        assert norms[key] == pytest.approx(value, rel=1e-9)
        assert np.linalg.norm(hidden[key[0]][key[1] - 1]) == pytest.approx(value)

    nodes, _ = parse_dot(draw_graph(loss, names=model, show_grad=True).source)
    for (layer, t), value in expected.items():
        label = next(l for l, c in nodes.values() if c == f"cluster_l{layer}_t{t}" and f"h{t} (" in l)
        assert f"‖∂L/∂h{t}‖ = {value:.2e}" in label

    source = draw_unrolled(model, 6, hidden_grads=hidden).source
    for (layer, t), value in expected.items():
        assert re.search(rf'h{layer}_{t} \[label=<[^\n]*>{value:.1e}</FONT>', source)


def test_gradient_colours_follow_magnitude_on_a_log_scale():
    colors = LogColors([1e-6, 1e-3, 1.0])
    assert colors.index(1e-6) == 0 and colors.index(1.0) == len(PALETTE) - 1
    assert colors.index(1e-4) < colors.index(1e-3) < colors.index(1e-1)
    assert 3 <= colors.index(1e-3) <= 5  # the middle of the log range, not of the linear one
    model, _, (x, y, _) = model_and_loss(T=8, layers=1, hidden=6)
    loss, norms = gradient_flow(model, x, y, loss="last")
    nodes_src = draw_graph(loss, names=model, show_grad=True).source
    biggest = max(norms, key=norms.get)
    line = next(s for s in nodes_src.splitlines() if f"‖∂L/∂h{biggest[1]}‖" in s)
    assert f'fillcolor="{PALETTE[-1]}"' in line
    assert "grad_legend" in nodes_src


def test_last_step_loss_vanishes_back_in_time():
    model, _, (x, y, _) = model_and_loss(T=30, layers=1, hidden=8)
    _, norms = gradient_flow(model, x, y, loss="last")
    assert norms[(0, 1)] < 1e-3 * norms[(0, 30)]
    with pytest.raises(ValueError, match="fused"):
        fused, _, _ = model_and_loss(T=3, fused=True)
        gradient_flow(fused, x, y)


def test_retain_hidden_grads_counts_states():
    model, loss, _ = model_and_loss(T=4, layers=2)
    assert retain_hidden_grads(loss) == 8


def test_plot_gradient_flow_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    model, _, (x, y, _) = model_and_loss(T=5, layers=2)
    _, norms = gradient_flow(model, x, y)
    path = plot_gradient_flow({"tanh": norms, "relu": norms}, tmp_path / "flow.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "micrornn\[plot\]"'):
        plot_gradient_flow({(0, 1): 1.0}, tmp_path / "flow.png")


# ---- unrolled and folded pictures -------------------------------------------------------------

def test_unrolled_picture_structure():
    model, _, _ = model_and_loss(T=4, layers=2)
    source = draw_unrolled(model, steps=4).source
    _, edges = parse_dot(source)
    labels = [a for _, _, a in edges]
    assert sum("label=<W<SUP>" in a for a in labels) == 2 * 4   # h_{t-1} -> h_t, every layer and step
    assert sum("label=<U<SUP>" in a for a in labels) == 2 * 4   # x_t -> h_t and h_t^(1) -> h_t^(2)
    assert sum("label=<V>" in a for a in labels) == 4            # h_t -> o_t
    for t in range(1, 5):
        assert (f"o_{t}", f"L_{t}", "") in edges
        assert (f"x_{t}", f"h0_{t}") in [(s, d) for s, d, _ in edges]
    single = draw_unrolled(model.rnn.__class__(2, 3), steps=2).source  # a bare RNN: no o_t, L_t
    assert "label=<W>" in single and "o_1" not in single


def test_unrolled_picture_collapses_long_sequences():
    model, _, _ = model_and_loss(T=3, layers=1)
    nodes, _ = parse_dot(draw_unrolled(model, steps=100, max_steps=6).source)
    xs = sorted(int(i[2:]) for i in nodes if re.fullmatch(r"x_\d+", i))
    assert xs == [1, 2, 3, 98, 99, 100] and "x_gap" in nodes
    with pytest.raises(ValueError, match="steps"):
        draw_unrolled(model, steps=0)


def test_folded_picture_has_one_loop_per_layer():
    model, _, _ = model_and_loss(T=3, layers=3)
    _, edges = parse_dot(draw_folded(model).source)
    loops = [(s, a) for s, d, a in edges if s == d]
    assert [s for s, _ in loops] == ["h0", "h1", "h2"] and all("W<SUP>" in a for _, a in loops)
    assert draw_unrolled(model, folded=True).source == draw_folded(model).source


# ---- rendering ---------------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("fmt,magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_render_runs_dot(tmp_path, fmt, magic):
    model, loss, _ = model_and_loss(T=3, layers=2)
    path = render(draw_graph(loss, names=model), tmp_path / f"g.{fmt}")
    assert path.read_bytes()[:len(magic)] == magic
    assert not (tmp_path / "g.dot").exists()  # the DOT text is only kept when asked or when dot is missing
    render(draw_unrolled(model, 3), tmp_path / f"u.{fmt}", keep_dot=True)
    assert (tmp_path / "u.dot").read_text().startswith("digraph")


def test_render_without_dot_program_writes_dot_and_explains(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    model, loss, _ = model_and_loss(T=3, layers=2)
    g = draw_graph(loss, names=model)
    with pytest.raises(GraphvizNotFoundError) as info:
        render(g, tmp_path / "g.png")
    message = str(info.value)
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    assert (tmp_path / "g.dot").read_text() == g.source
    assert render(g, tmp_path / "only.dot").read_text() == g.source  # .dot needs no program


def test_render_rejects_unknown_extension(tmp_path):
    _, loss, _ = model_and_loss(T=2, layers=1)
    with pytest.raises(ValueError, match="unknown extension"):
        render(draw_graph(loss), tmp_path / "g.gif")


def test_unrolled_view_of_the_last_step_loss_links_only_L_T():
    model = SequenceModel(3, 4, 3, rng=0)
    summed = draw_unrolled(model, steps=5).source
    last = draw_unrolled(model, steps=5, loss="last").source
    assert summed.count('-> loss') == 5 and "Σ" in summed
    assert last.count('-> loss') == 1 and "L_5 -> loss" in last and "L<SUB>T</SUB>" in last
    with pytest.raises(ValueError, match="loss"):
        draw_unrolled(model, steps=5, loss="mean")


def test_last_step_loss_draws_the_other_step_losses_as_not_in_the_loss():
    model = SequenceModel(3, 4, 3, rng=0)
    last = draw_unrolled(model, steps=4, loss="last").source
    for t in (1, 2, 3):
        node = re.search(rf"^\s*L_{t} \[([^\n]*)\]", last, flags=re.M).group(1)
        assert "style=dashed" in node and "not in the loss" in node and 'fillcolor="#ffffff"' in node
        assert re.search(rf"^\s*o_{t} -> L_{t} \[[^\n]*style=dashed", last, flags=re.M)
    assert "style=dashed" not in re.search(r"^\s*L_4 \[([^\n]*)\]", last, flags=re.M).group(1)
    assert re.search(r"^\s*o_4 -> L_4$", last, flags=re.M)
    assert "the dashed L_1 … L_{T-1} are not in the loss" in last
    summed = draw_unrolled(model, steps=4).source
    assert "not in the loss" not in summed and "dashed" not in summed


def test_gradient_numbers_sit_in_their_own_row_under_the_step_label():
    model = SequenceModel(3, 4, 3, num_layers=2, rng=0)
    norms = {(l, t): 10.0 ** -t for l in (0, 1) for t in (1, 2, 3)}
    source = draw_unrolled(model, hidden_grads=norms).source
    label = re.search(r"^\s*h1_2 \[label=<(.*?)> ", source, flags=re.M).group(1)
    assert re.fullmatch(r'<TABLE [^>]*><TR><TD>h<SUB>2</SUB><SUP>\(1\)</SUP></TD></TR>'
                        r'<TR><TD><FONT POINT-SIZE="10">1\.0e-02</FONT></TD></TR></TABLE>', label), label
