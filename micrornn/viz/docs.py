"""Regenerate every picture in docs/ with one command (from a source checkout):

    python -m micrornn.viz.docs [--out docs] [--skip-training] [--pictures-only]

Each graphviz picture is written with its DOT text beside it in docs/src/NAME.dot, each plot with
the numbers it plots in docs/src/NAME.txt; the stepper page docs/bptt_stepper.html is generated from
its one source, micrornn/viz/static (page.html, stepper.css, stepper.js), and is the only other copy
of that script and style; the tutorial notebook is executed and saved with its pictures inline. The
test suite rebuilds those texts (the stepper page without its laid-out SVG) and fails when a picture
or the page is older than the code that makes it (it compares text, not pixels). Two pictures come from whole programs and are only regenerated here:
gradient_flow_T100.png (examples/vanishing_gradients.py) and loss_curve.png (a default
`micrornn train`, 45-100 s; --skip-training leaves it alone).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from micrornn.nn import SequenceModel
from micrornn.viz.flow import gradient_flow, plot_gradient_flow
from micrornn.viz.gates import gate_activity, gate_summary, plot_gate_activity
from micrornn.viz.graph import draw_graph
from micrornn.viz.html import demo_problem, to_html
from micrornn.viz.jacobian import jacobian_view, plot_jacobian_view
from micrornn.viz.program import draw_program
from micrornn.viz.render import render
from micrornn.viz.unrolled import draw_folded, draw_unrolled

REPO = Path(__file__).resolve().parents[2]


def _model(steps, layers=1, hidden=8, cell="rnn", nonlinearity="tanh", w_scale=1.0, seed=0):
    """The model and random data `micrornn viz` builds for the same options (input and output 4)."""
    rng = np.random.default_rng(seed)
    model = SequenceModel(4, hidden, 4, num_layers=layers, nonlinearity=nonlinearity, rng=rng, cell=cell)
    for c in model.rnn.cells:
        c.W.data *= w_scale
    return model, rng.standard_normal((steps, 1, 4)), rng.integers(0, 4, size=(steps, 1))


# ---- graphviz pictures: name -> a function returning the Digraph ----------------------------------

def graph_view(grad=False):
    """micrornn viz --steps 3 --layers 2 --hidden-size 4 [--grad]"""
    model, x, y = _model(3, layers=2, hidden=4)
    loss = gradient_flow(model, x, y)[0] if grad else model.loss(x, y)[0]
    return draw_graph(loss, names=model, show_grad=grad)


def gradient_flow_view():
    """micrornn viz --view unrolled --steps 30 --max-steps 8 --layers 2 --hidden-size 16 --grad --loss last"""
    model, x, y = _model(30, layers=2, hidden=16)
    _, norms = gradient_flow(model, x, y, loss="last")
    return draw_unrolled(model, max_steps=8, hidden_grads=norms)


def backward_graph_view():
    """The backward pass as a graph: dL/dU and dL/dW recorded by micrornn.grad(..., create_graph=True),
    3 steps, hidden 4; the backward's nodes are orange, in the clusters of the steps they differentiate."""
    from micrornn.engine.transforms import grad
    model, x, y = _model(3, hidden=4)
    loss = model.loss(x, y)[0]
    cell = model.rnn.cells[0]
    return draw_graph(list(grad(loss, [cell.U, cell.W], create_graph=True)), names=model, forward=loss)


def program_view():
    """docs/compile.md: the program micrornn.compile traces for a 3-step RNN loss (hidden 4, batch 1)."""
    from micrornn.engine.compile import compile as compile_fn
    model, _, y = _model(3, hidden=4)
    loss = compile_fn(lambda x, targets: model.loss(x, targets)[0])
    return draw_program(loss, y, y)


GRAPHS = {
    "viz_graph": lambda: graph_view(),
    "viz_graph_grad": lambda: graph_view(grad=True),
    "viz_unrolled": lambda: draw_unrolled(_model(4, layers=2)[0], steps=4),    # --view unrolled --steps 4 --layers 2
    "viz_folded": lambda: draw_folded(_model(3, layers=2)[0]),                  # --view folded --layers 2
    "viz_gradient_flow": gradient_flow_view,
    "viz_lstm_unrolled": lambda: draw_unrolled(_model(4, cell="lstm")[0], steps=4),  # --cell lstm --view unrolled --steps 4
    "viz_lstm_folded": lambda: draw_folded(_model(3, cell="lstm")[0]),               # --cell lstm --view folded
    "bptt_backward_graph": backward_graph_view,
    "compile_program": program_view,
}


# ---- plots: name -> (data function, plot function) ---------------------------------------------

def gradient_plot_data():
    """||dL_T/dh_t|| over 50 steps for tanh and relu, with the initial W and with W x 3."""
    runs = {}
    for nonlinearity, w_scale in (("tanh", 1.0), ("relu", 1.0), ("tanh", 3.0), ("relu", 3.0)):
        model, x, y = _model(50, hidden=32, nonlinearity=nonlinearity, w_scale=w_scale)
        runs[f"{nonlinearity}, W×{w_scale:g}"] = gradient_flow(model, x, y, loss="last")[1]
    return runs


def jacobian_data():
    """micrornn viz --steps 30 --hidden-size 16 --jacobian: the tanh RNN's Jacobian view."""
    model, x, y = _model(30, hidden=16)
    return jacobian_view(model, x, y)


def gates_data():
    """An LSTM (hidden 16, 30 steps) with the forget-gate bias raised by 3, a common initialisation
    that keeps the cell-state path open: f sits near 1 while i and o follow the input."""
    model, x, _ = _model(30, hidden=16, cell="lstm", w_scale=2.0)
    cell = model.rnn.cells[0]
    cell.b.data[16:32] += 3.0  # the f block of b (gate order i, f, g, o)
    return gate_activity(model, x * 2.0)


PLOTS = {
    "viz_gradient_plot": (gradient_plot_data, lambda data, path: plot_gradient_flow(
        data, path, title=r"$\Vert\partial L_T/\partial h_t\Vert$ going back from the last step (log scale)")),
    "viz_jacobian": (jacobian_data, plot_jacobian_view),
    "viz_lstm_gates": (gates_data, lambda data, path: plot_gate_activity(
        data, path, title="LSTM gates over time (forget-gate bias +3, W x 2, inputs x 2)")),
}
STEPPER = "bptt_stepper"  # docs/bptt_stepper.html: micrornn viz --html docs/bptt_stepper.html
PROGRAM_PICTURES = ("gradient_flow_T100.png", "loss_curve.png", "gated_gradients_T100.png",  # made by examples
                    "quality_gru_loss.png", "quality_rnn_loss.png", "quality_lstm_loss.png",
                    "quality_best_loss.png")  # docs/regenerate.py's quality runs


def data_text(name, data) -> str:
    """The numbers a plot shows, 4 significant digits, one line each (what the staleness test compares)."""
    if name == "viz_lstm_gates":
        data = {f"{layer} {gate} mean/saturated": np.concatenate(v) for (layer, gate), v in gate_summary(data).items()}
    elif name == "viz_jacobian":
        data = {"jacobian": list(data["jacobian"].values()), "grad": list(data["grad"].values()),
                **{f"sv {k}": v for k, v in data["singular_values"].items()}}
    else:
        data = {label: list(norms.values()) for label, norms in data.items()}
    return "".join(f"{key}: " + " ".join(f"{v:.4g}" for v in np.ravel(values)) + "\n" for key, values in data.items())


def stepper_page() -> str:
    """The docs example of the stepper page (3 steps, hidden 3)."""
    return to_html(*demo_problem(steps=3))


def page_without_svg(page) -> str:
    """The page with its SVG (laid out by `dot`, so version-dependent) cut out."""
    return re.sub(r"<svg.*</svg>", "<svg/>", page, flags=re.S)


def texts() -> dict:
    """{file name under docs/src: expected text} for every checked picture."""
    out = {f"{name}.dot": build().source for name, build in GRAPHS.items()}
    out.update({f"{name}.txt": data_text(name, make()) for name, (make, _) in PLOTS.items()})
    return out


def execute_notebook(path):
    """Run a notebook top to bottom in a fresh kernel (nbclient; an error in a cell raises) and
    return it with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    return reproducible(nb)


def reproducible(nb):
    """Join the stream outputs the kernel happened to flush in pieces and drop the text/plain repr
    beside a picture (it names a memory address), so executing a notebook twice gives the same file."""
    for cell in nb.cells:
        joined = []
        for output in cell.get("outputs", []):
            previous = joined[-1] if joined else None
            if (output.get("output_type") == "stream" and previous is not None
                    and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
                previous["text"] += output["text"]
            else:
                joined.append(output)
        if "outputs" in cell:
            cell["outputs"] = joined
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if {"image/svg+xml", "image/png"} & set(data) and "text/plain" in data:
                del data["text/plain"]
    return nb


def regenerate(out: Path, skip_training=False, pictures_only=False) -> None:
    """Write every picture (and its text) into out; pictures_only: the graphviz pictures, the plots and
    the stepper page, without executing the notebook or running the example programs."""
    src = out / "src"
    src.mkdir(parents=True, exist_ok=True)
    for name, build in GRAPHS.items():
        graph = build()
        render(graph, out / f"{name}.png")
        (src / f"{name}.dot").write_text(graph.source, encoding="utf-8")
        print(f"wrote {out / name}.png")
    for name, (make, plot) in PLOTS.items():
        data = make()
        plot(data, out / f"{name}.png")
        (src / f"{name}.txt").write_text(data_text(name, data), encoding="utf-8")
        print(f"wrote {out / name}.png")
    page = stepper_page()
    (out / f"{STEPPER}.html").write_text(page, encoding="utf-8")
    print(f"wrote {out / STEPPER}.html")
    if pictures_only:
        return
    notebook = REPO / "docs" / "tutorial.ipynb"
    import nbformat
    nbformat.write(execute_notebook(notebook), str(out / notebook.name))
    print(f"wrote {out / notebook.name} (executed, pictures inline)")
    _run_programs(out, skip_training)


def _run_programs(out: Path, skip_training) -> None:
    """The pictures made by whole programs: the vanishing-gradient example and a default training run."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(REPO / "examples" / "vanishing_gradients.py"), "--out-dir", tmp],
                       check=True, stdout=subprocess.DEVNULL)
        shutil.copy(Path(tmp) / "gradient_flow_T100.png", out / "gradient_flow_T100.png")
        print(f"wrote {out / 'gradient_flow_T100.png'}")
        if not skip_training:
            subprocess.run([sys.executable, "-m", "micrornn", "train", "--checkpoint", str(Path(tmp) / "run.npz"),
                            "--plot", str(out / "loss_curve.png"), "--quiet"], check=True)
            print(f"wrote {out / 'loss_curve.png'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate every picture in docs/.")
    parser.add_argument("--out", default=str(REPO / "docs"), help="output directory (default: the repository's docs/)")
    parser.add_argument("--skip-training", action="store_true", help="leave loss_curve.png alone (saves 45-100 s)")
    parser.add_argument("--pictures-only", action="store_true",
                        help="only the pictures, plots and stepper page (no notebook, no example programs)")
    args = parser.parse_args(argv)
    regenerate(Path(args.out), args.skip_training, args.pictures_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
