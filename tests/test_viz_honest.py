"""Pictures that cannot mislead: each test pins one way a drawing used to say something untrue."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import micrornn
from micrornn.cli import main
from micrornn.nn import Parameter, SequenceModel
from micrornn.nn.rnn import StepScope
from micrornn.engine.tensor import Tensor
from micrornn.viz import draw_folded, draw_graph, draw_unrolled, gradient_flow
from micrornn.viz.flow import PALETTE, HiddenGradNorms

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="the Graphviz 'dot' program is not installed here (.ci/run installs it)")
PICTURES = Path(__file__).resolve().parents[1] / "docs" / "pictures.md"


def model_and_data(T, layers=1, hidden=6, seed=0):
    rng = np.random.default_rng(seed)
    model = SequenceModel(3, hidden, 3, num_layers=layers, rng=rng)
    return model, rng.standard_normal((T, 1, 3)), rng.integers(0, 3, size=(T, 1))


def drawn_steps(source):
    """The x_t columns an unrolled picture draws."""
    return sorted(int(t) for t in re.findall(r"^\s*x_(\d+) \[", source, flags=re.M))


# ---- the unrolled picture takes steps and loss from the gradients it shows --------------------

def test_unrolled_takes_steps_and_loss_from_the_gradients():
    model, x, y = model_and_data(T=25)
    _, norms = gradient_flow(model, x, y, loss="last")
    assert isinstance(norms, HiddenGradNorms) and norms.steps == 25 and norms.loss == "last"
    source = draw_unrolled(model, hidden_grads=norms).source
    assert drawn_steps(source) == list(range(1, 26))
    assert "L<SUB>T</SUB>" in source and "Σ" not in source and source.count("-> loss") == 1
    assert "∂L<SUB>T</SUB>/∂h<SUB>t</SUB>" in source  # the colour bar names the loss it shows
    with pytest.raises(ValueError, match="25-step sequence but steps=30"):
        draw_unrolled(model, steps=30, hidden_grads=norms)
    with pytest.raises(ValueError, match="loss='last' but loss='sum'"):
        draw_unrolled(model, hidden_grads=norms, loss="sum")
    two_layers = {(0, 1): 1.0, (3, 1): 2.0}
    with pytest.raises(ValueError, match=r"layer\(s\) \[3\]"):
        draw_unrolled(model, hidden_grads=two_layers)


def test_summed_loss_gradients_draw_the_sum():
    model, x, y = model_and_data(T=5)
    _, norms = gradient_flow(model, x, y)
    source = draw_unrolled(model, hidden_grads=norms).source
    assert drawn_steps(source) == [1, 2, 3, 4, 5] and source.count("-> loss") == 5 and "Σ" in source


def test_colour_scale_covers_only_the_drawn_steps():
    model, _, _ = model_and_data(T=10)
    norms = {(0, t): 10.0 ** -t for t in range(1, 11)}
    norms[(0, 5)] = 1e6  # a collapsed step far outside the drawn ones
    source = draw_unrolled(model, max_steps=4, hidden_grads=norms).source
    assert drawn_steps(source) == [1, 2, 9, 10]
    assert re.search(rf'h0_1 \[[^\n]*fillcolor="{PALETTE[-1]}"', source)   # the largest drawn value
    assert re.search(rf'h0_10 \[[^\n]*fillcolor="{PALETTE[0]}"', source)   # the smallest drawn value
    assert ">1.0e-10</TD>" in source and ">1.0e-01</TD>" in source and "1.0e+06" not in source


def test_docs_snippet_draws_what_it_computed(monkeypatch):
    section = PICTURES.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    drawn = {}
    monkeypatch.setattr("micrornn.viz.render", lambda graph, path, **kw: drawn.setdefault(str(path), graph))
    monkeypatch.setattr("micrornn.viz.plot_gradient_flow", lambda norms, path, **kw: drawn.setdefault(str(path), norms))
    model, x, targets = model_and_data(T=25, layers=2)
    exec(code, {"model": model, "x": x, "targets": targets})
    unrolled = next(g for g in drawn.values() if getattr(g, "name", "") == "unrolled")
    steps = drawn_steps(unrolled.source)
    assert max(steps) == 25 and "L<SUB>T</SUB>" in unrolled.source


# ---- the command line ----------------------------------------------------------------------------

def test_many_steps_collapse_by_default_and_all_steps_draws_them(tmp_path, capsys):
    out = tmp_path / "g.dot"
    assert main(["viz", "--steps", "100", "--layers", "2", "-o", str(out)]) == 0
    source = out.read_text()
    for layer in (0, 1):
        assert len(re.findall(rf"subgraph cluster_l{layer}_t\d+ \{{", source)) == 8
    assert "steps 5 to 96" in source and "--all-steps" in capsys.readouterr().err
    assert main(["viz", "--steps", "40", "--all-steps", "-o", str(out)]) == 0
    assert len(re.findall(r"subgraph cluster_l0_t\d+ \{", out.read_text())) == 40
    assert main(["viz", "--view", "unrolled", "--steps", "100", "-o", str(out)]) == 0
    assert drawn_steps(out.read_text()) == [1, 2, 3, 4, 97, 98, 99, 100]


@pytest.mark.parametrize("args,message", [
    (["--grad", "--plot", "same.png", "-o", "same.png"], "-o and --plot both name"),
    (["--grad", "--plot", "./same.png", "-o", "same.png"], "-o and --plot both name"),
    (["--view", "folded", "--grad", "-o", "f.dot"], "folded view"),
    (["--all-steps", "--max-steps", "4", "-o", "g.dot"], "--all-steps and --max-steps"),
])
def test_contradictory_options_are_refused(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["viz", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


# ---- one vocabulary for layers -------------------------------------------------------------------

def test_layers_are_numbered_from_0_in_every_view():
    model, x, y = model_and_data(T=3, layers=2)
    loss, norms = gradient_flow(model, x, y)
    views = {"graph": draw_graph(loss, names=model).source,
             "unrolled": draw_unrolled(model, hidden_grads=norms).source,
             "folded": draw_folded(model).source}
    for name, source in views.items():
        superscripts = set(re.findall(r"<SUP>\((\d+)\)</SUP>", source))
        layer_words = set(re.findall(r"layer (\d+)", source))
        cells = set(re.findall(r"rnn\.cells\.(\d+)", source))
        assert superscripts | layer_words | cells == {"0", "1"}, (name, superscripts, layer_words, cells)
    assert "rnn.cells.l (layer l)" in views["unrolled"]


# ---- index inputs ----------------------------------------------------------------------------------

def test_index_inputs_draw_the_input_projection_as_U_x_t():
    model = SequenceModel(5, 3, 5, rng=0)
    x = np.array([[1], [2], [4]])
    loss, _ = model.loss(x, x)
    source = draw_graph(loss, names=model).source
    line = next(s for s in source.splitlines() if "U x_t + b (3, 1, 3)" in s)
    node = line.split()[0]
    sources_into = {s for s, d in re.findall(r"^\s*(\w+) -> (\w+)", source, flags=re.M) if d == node}
    labels = {n: l for n, l in re.findall(r'^\s*(\w+) \[label="([^"\\]*)', source, flags=re.M)}
    assert sorted(labels[s].split(" ")[0] for s in sources_into) == ["rnn.cells.0.U", "rnn.cells.0.b"]
    assert "getitem (3, 1, 3)" not in source and "add (5, 3)" not in source
    detailed = draw_graph(loss, names=model, expand_gathers=True).source
    assert "getitem (3, 1, 3)" in detailed and "add (5, 3)" in detailed and "U x_t" not in detailed
    no_bias = SequenceModel(5, 3, 5, bias=False, rng=0)
    loss, _ = no_bias.loss(x, x)
    assert "U x_t (3, 1, 3)" in draw_graph(loss, names=no_bias).source


# ---- time order ------------------------------------------------------------------------------------

def custom_cell_loss(steps=4):
    """A hand-written cell whose steps feed each other only weakly: dot used to order them 1, 2, 4, 3."""
    W, U = Parameter(np.eye(2) * 0.5), Parameter(np.ones((2, 2)))
    h, loss = Tensor(np.zeros((1, 2))), None
    for t in range(1, steps + 1):
        with micrornn.scope(StepScope(0, t)):
            a = (Tensor(np.full((1, 2), float(t))) @ U).tanh()
            h = (h @ W + a).tanh()
            h.name = f"h{t}"
            loss = a.sum() if loss is None else loss + a.sum()
    return loss + h.sum(), {"U": U, "W": W}


def test_step_clusters_are_chained_in_time_order():
    loss, names = custom_cell_loss()
    source = draw_graph(loss, names=names).source
    invisible = re.findall(r"^\s*(\w+) -> (\w+) \[style=invis\]", source, flags=re.M)
    cluster_of = {}
    current = None
    for line in source.splitlines():
        m = re.match(r"\s*subgraph (cluster_l0_t\d+) \{", line)
        current = m.group(1) if m else current
        m = re.match(r"\s*(\w+) \[label=", line)
        if m and current:
            cluster_of[m.group(1)] = current
    assert [(cluster_of[a], cluster_of[b]) for a, b in invisible] == [
        (f"cluster_l0_t{t}", f"cluster_l0_t{t + 1}") for t in (1, 2, 3)]


@needs_dot
def test_step_clusters_are_laid_out_in_time_order():
    loss, names = custom_cell_loss()
    layout = json.loads(draw_graph(loss, names=names).pipe(format="json"))
    tops = {}
    for obj in layout["objects"]:
        m = re.fullmatch(r"cluster_l0_t(\d+)", obj["name"])
        if m:
            tops[int(m.group(1))] = float(obj["bb"].split(",")[3])  # graphviz y grows upwards
    assert sorted(tops) == [1, 2, 3, 4]
    assert all(tops[t] > tops[t + 1] for t in (1, 2, 3))
