"""Pictures of an RNN with micrornn.viz. Run: python examples/draw_rnn.py [--out DIR] [--prefix P] [--format F]

Writes, into DIR (default: viz_out), each name preceded by P (default none); F is png, svg, pdf or dot:
  graph.*          the autodiff graph of a 3-step, 2-layer model: one cluster per layer and time step,
                   each parameter drawn once with an edge to every step that uses it
  unrolled.*       the textbook picture x_t -> h_t -> o_t -> L_t with the shared U, W, V
  folded.*         the same network folded: one cell per layer with its loop W
  gradient_flow.*  the unrolled picture after a backward of the last step's loss only: each h_t
                   coloured by ||dL_T/dh_t|| (log scale) — the gradient fading back in time
  gradient_plot.png  ||dL_T/dh_t|| against t for tanh and relu, with small and large W (needs matplotlib)
The first four are the pictures `micrornn viz` draws with the options noted beside each call.
Without the Graphviz `dot` program, use --format dot (the .dot files open in any Graphviz viewer).
"""
import argparse
import time
from pathlib import Path

import numpy as np

from micrornn.nn import SequenceModel
from micrornn.viz import (draw_folded, draw_graph, draw_unrolled, gradient_flow, graph_size,
                          plot_gradient_flow, render)


def model_and_data(steps, layers=1, hidden=8, nonlinearity="tanh", w_scale=1.0, seed=0):
    """A small SequenceModel (recurrent weights scaled by w_scale) and random inputs and targets."""
    rng = np.random.default_rng(seed)
    model = SequenceModel(4, hidden, 4, num_layers=layers, nonlinearity=nonlinearity, rng=rng)
    for cell in model.rnn.cells:
        cell.W.data *= w_scale
    return model, rng.standard_normal((steps, 1, 4)), rng.integers(0, 4, size=(steps, 1))


def save(graph, path):
    """Render and report size and time."""
    start = time.perf_counter()
    render(graph, path)
    nodes, edges = graph_size(graph)
    print(f"wrote {path}: {nodes} nodes, {edges} edges, {time.perf_counter() - start:.2f} s")


def main():
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    parser.add_argument("--out", default="viz_out", help="output directory (default viz_out)")
    parser.add_argument("--prefix", default="", help="text put before each file name")
    parser.add_argument("--format", default="png", choices=("png", "svg", "pdf", "dot"))
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    ext = args.format

    def out(name):
        return Path(args.out) / f"{args.prefix}{name}"

    # 1. The graph the engine recorded: 3 steps, 2 layers, the loss summed over steps.
    #    (micrornn viz --steps 3 --layers 2 --hidden-size 4)
    model, x, y = model_and_data(steps=3, layers=2, hidden=4)
    loss, _ = model.loss(x, y)
    save(draw_graph(loss, names=model), out(f"graph.{ext}"))

    # 2-3. The textbook pictures of the same model, unrolled over 4 steps and folded.
    #      (micrornn viz --view unrolled --steps 4 --layers 2; micrornn viz --view folded --layers 2)
    save(draw_unrolled(model, steps=4), out(f"unrolled.{ext}"))
    save(draw_folded(model), out(f"folded.{ext}"))

    # 4. Gradient flow: back-propagate only L_T and colour each h_t by ||dL_T/dh_t||.
    #    (micrornn viz --view unrolled --steps 30 --max-steps 8 --layers 2 --hidden-size 16 --grad --loss last)
    model, x, y = model_and_data(steps=30, layers=2, hidden=16)
    _, norms = gradient_flow(model, x, y, loss="last")
    title = "unrolled over 30 steps; colour: ‖∂L_T/∂h_t‖, the last step's loss only"
    save(draw_unrolled(model, steps=30, max_steps=8, hidden_grads=norms, title=title, loss="last"),
         out(f"gradient_flow.{ext}"))

    # 5. The vanishing / exploding picture: one layer, 50 steps, four settings.
    runs = {}
    for nonlinearity, w_scale in (("tanh", 1.0), ("relu", 1.0), ("tanh", 3.0), ("relu", 3.0)):
        model, x, y = model_and_data(steps=50, hidden=32, nonlinearity=nonlinearity, w_scale=w_scale)
        runs[f"{nonlinearity}, W×{w_scale:g}"] = gradient_flow(model, x, y, loss="last")[1]
    try:
        path = plot_gradient_flow(runs, out("gradient_plot.png"),
                                  title=r"$\Vert\partial L_T/\partial h_t\Vert$ going back from the last step (log scale)")
        print(f"wrote {path}")
    except ImportError as err:
        print(f"skipped the plot: {err}")


if __name__ == "__main__":
    main()
