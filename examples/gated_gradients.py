"""Why LSTMs and GRUs exist, measured: ||dL_T/dh_t|| over 100 steps for RNN vs LSTM vs GRU.

    python examples/gated_gradients.py [--steps 100 --hidden-size 32 --seeds 0 1 2 --out docs/gated_gradients_T100.png]

Three SequenceModels of the same size and PyTorch's initialisation (every weight uniform in
+-1/sqrt(H)), the same random one-hot sequences; the loss is that of the LAST step only, L_T. We
follow how much of dL_T/dh_t survives the trip back to step t:

* through the engine: backward through the unrolled graph of the model's own cells, with a zero
  offset added to every h_t (and c_t) so that its gradient is the total dL_T/dh_t;
* through the analytic BPTT: the layer routines of micrornn.bptt with the head's gradient put into
  h_T alone.

The two routes must agree to round-off; the script checks it and prints the worst difference.
Going back one step multiplies the vanilla RNN's gradient by W^T diag(tanh'), so it shrinks
geometrically. The LSTM's cell state carries it back multiplied by the forget gate alone
(dL/dc_{t-1} gets gc_t * f_t): it shrinks too, but at the rate of f, not of a squashed matrix
product. The GRU's h_t = (1-z) n + z h_{t-1} gives h the same kind of direct path through z.
At initialisation those gates sit near 0.5, so the direct paths shrink too; the gates have to be
open for the gradient to survive. The script also runs both gated cells with the bias of their
"keep" gate (LSTM f, GRU z) raised by --keep-bias, as trained models and the forget-bias trick do.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from micrornn import bptt

from micrornn.check import divergence
from micrornn.nn import SequenceModel

CLASSES, BATCH = 10, 8


def one_hot_problem(steps, seed):
    """Random one-hot inputs (T, B, CLASSES) and targets (T, B)."""
    rng = np.random.default_rng(seed)
    x = np.eye(CLASSES)[rng.integers(0, CLASSES, size=(steps, BATCH))]
    return x, rng.integers(0, CLASSES, size=(steps, BATCH))


def engine_norms(model, x, y):
    """{'h': ||dL_T/dh_t|| (T,), 'c': ||dL_T/dc_t|| along the cell line or None} through the graph."""
    steps = divergence.graph_step_grads(model, x, y, loss="last")[(0, 0)]
    return {q: None if steps[q] is None else np.linalg.norm(steps[q].reshape(len(x), -1), axis=1)
            for q in ("h", "c")}


def analytic_norms(model, x, y):
    """The same norms from the analytic layer routines: head gradient at step T only, then BPTT."""
    cell, kind = model.rnn.cells[0], model.rnn.cell_kind
    U, W, b = cell.U.data, cell.W.data, cell.b.data
    if kind == "rnn":
        hs = bptt.rnn_layer_forward(x, U, W, b, None)
    elif kind == "lstm":
        hs, cs, gates = bptt.lstm_layer_forward(x, U, W, b, None, None)
    else:
        hs, gates, hns = bptt.gru_layer_forward(x, U, W, b, cell.b_hn.data, None)
    V, c = model.head.weight.data, model.head.bias.data
    _, _, d_last = bptt.shared.head_loss_and_grads(hs[-1:], V, c, y[-1:])
    dhs = np.zeros_like(hs)
    dhs[-1] = d_last[0]  # only L_T: the head sends a gradient into h_T alone
    H, c_line = hs.shape[2], None
    if kind == "rnn":
        gh = bptt.rnn_layer_backward(dhs, x, hs, None, U, W, return_dh=True)[-1]
    elif kind == "lstm":
        gh, gc, _ = bptt.lstm_layer_backward(dhs, None, x, hs, cs, gates, None, None, U, W, return_hidden=True)[-1]
        c_line = np.zeros_like(gc)
        c_line[:-1] = gc[1:] * gates[1:, :, H:2 * H]  # along the cell line: dL/dc_t <- gc_{t+1} f_{t+1}
    else:
        gh, _ = bptt.gru_layer_backward(dhs, x, hs, gates, hns, None, U, W, return_hidden=True)[-1]
    norm = lambda g: None if g is None else np.linalg.norm(g.reshape(len(x), -1), axis=1)  # noqa: E731
    return {"h": norm(gh), "c": norm(c_line)}


def bias_keep_gate(model, keep_bias):
    """Add keep_bias to the bias of the gate that keeps the old state: LSTM f, GRU z."""
    kind, cell = model.rnn.cell_kind, model.rnn.cells[0]
    H = cell.hidden_size
    block = {"lstm": slice(H, 2 * H), "gru": slice(H, 2 * H)}.get(kind)
    if block is not None:
        cell.b.data[block] += keep_bias
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--hidden-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="models averaged (log-mean)")
    ap.add_argument("--keep-bias", type=float, default=3.0,
                    help="also run LSTM and GRU with this added to the bias of the gate that keeps the old state "
                         "(LSTM f, GRU z; default 3)")
    ap.add_argument("--out", help="save the plot here (needs matplotlib)")
    args = ap.parse_args(argv)
    if args.steps < 2 or args.hidden_size < 1 or not args.seeds:
        ap.error("--steps must be at least 2, --hidden-size at least 1, and give at least one seed")

    T, curves, worst = args.steps, {}, 0.0
    print(f"||dL_T/dh_t||, loss of the last step only; hidden {args.hidden_size}, batch {BATCH}, T={T}, "
          f"{len(args.seeds)} seed(s), geometric mean over seeds")
    variants = [("rnn", 0.0), ("lstm", 0.0), ("gru", 0.0), ("lstm", args.keep_bias), ("gru", args.keep_bias)]
    for cell, keep in variants:
        label = cell if not keep else f"{cell}, keep-gate bias +{keep:g}"
        logs = {"h": [], "c": []}
        for seed in args.seeds:
            model = bias_keep_gate(SequenceModel(CLASSES, args.hidden_size, CLASSES, cell=cell, rng=seed), keep)
            x, y = one_hot_problem(T, seed)
            engine, analytic = engine_norms(model, x, y), analytic_norms(model, x, y)
            for q in ("h", "c"):
                if engine[q] is None:
                    continue
                ref, mine = engine[q][:-1], analytic[q][:-1]  # (c_T has no gradient from L_T)
                worst = max(worst, float(np.max(np.abs(mine - ref) / ref)))
                logs[q].append(np.log(engine[q] if q == "h" else engine[q][:-1]))  # L_T sends nothing to c_T's line
        for q, values in logs.items():
            if values:
                curves[f"{label}: ||dL_T/d{q}_t||"] = np.exp(np.mean(values, axis=0))
        h = curves[f"{label}: ||dL_T/dh_t||"]
        per_step = (h[0] / h[T - 2]) ** (1 / (T - 2))
        c = curves.get(f"{label}: ||dL_T/dc_t||")
        extra = f", ||dL_T/dc_1|| = {c[0]:.2e}" if c is not None else ""
        print(f"  {label:27s} ||dL_T/dh_T|| = {h[-1]:.2e}, ||dL_T/dh_1|| = {h[0]:.2e} "
              f"(x{per_step:.3f} per step back){extra}")
    print(f"engine vs analytic BPTT, every norm for t < T: max relative difference {worst:.1e}")
    if worst > 1e-8:
        print("the routes disagree", file=sys.stderr)
        return 1

    if args.out:
        try:
            from micrornn.viz import plot_gradient_flow
        except ImportError as e:
            print(f"plot skipped: {e}")
            return 0
        series = {label: {(0, t + 1): v for t, v in enumerate(norms)} for label, norms in curves.items()}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        path = plot_gradient_flow(series, args.out, title=f"||dL_T/dh_t||, loss of step T={T} only, "
                                                          f"hidden {args.hidden_size}")
        print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
