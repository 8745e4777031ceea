"""Vanishing (and exploding) gradients, measured: how much of dL_T/dh_t survives the trip back.

    python examples/vanishing_gradients.py [--hidden-size 32 --radii 1 2 --out-dir docs]

For a random RNN we take the loss of the LAST step only, L_T, and back-propagate it through the
unrolled graph. Going back one step multiplies the gradient by W^T diag(act'(a_t)), so its norm
||dL_T/dh_t|| changes geometrically with the distance T - t. With W's spectral radius at 1 both
tanh (act' <= 1) and relu (act' = 0 for about half the units) shrink it: vanishing gradients.
At radius 2, relu (act' = 1 where active) makes it explode, while tanh saturates (act' -> 0) and
still shrinks it over long sequences. We do this for tanh vs relu, over a short (T=10) and a long
(T=100) sequence.

The training loss is the SUM over steps. Its per-step gradients (from the analytic BPTT,
bptt.loss_and_grads(..., return_hidden_grads=True)) look healthy at every step, because each h_t
gets a fresh local term from its own L_t; what vanishes is the part that comes from far ahead.
We print both, and check the two routes against each other.
"""
import argparse
from pathlib import Path

import numpy as np

from micrornn import bptt

from micrornn.nn import functional as F
from micrornn.nn import SequenceModel
from micrornn.viz import as_norms, hidden_grad_norms, retain_hidden_grads

CLASSES, BATCH = 10, 8


def make_model(nonlinearity, hidden, radius, seed):
    """A random RNN whose recurrent matrix W is rescaled to the given spectral radius."""
    model = SequenceModel(CLASSES, hidden, CLASSES, nonlinearity=nonlinearity, rng=seed)
    W = model.rnn.cells[0].W.data
    W *= radius / np.max(np.abs(np.linalg.eigvals(W)))
    return model


def last_step_norms(model, x, y):
    """{t: ||dL_T/dh_t||} from the engine: the loss of step T alone, back through the graph."""
    logits, _ = model(x)
    loss = F.cross_entropy(logits[-1], y[-1], reduction="sum")
    retain_hidden_grads(loss)
    loss.backward()
    return {t: v for (_, t), v in hidden_grad_norms(loss).items()}


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    ap.add_argument("--hidden-size", type=int, default=32)
    ap.add_argument("--radii", type=float, nargs="+", default=[1.0, 2.0],
                    help="spectral radii of W to try (default 1 2)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", help="save gradient-flow plots here (needs matplotlib)")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    results = {}
    print(f"||dL_T/dh_t|| for random RNNs, hidden {args.hidden_size}, batch {BATCH}")
    for T in args.lengths:
        x = rng.integers(0, CLASSES, size=(T, BATCH))
        y = rng.integers(0, CLASSES, size=(T, BATCH))
        for radius, act in [(r, a) for r in args.radii for a in ("tanh", "relu")]:
            model = make_model(act, args.hidden_size, radius, args.seed)
            last = last_step_norms(model, x, y)
            _, _, dh = bptt.loss_and_grads(model, F.one_hot(x, CLASSES).data, y, return_hidden_grads=True)
            summed = {t: v for (_, t), v in as_norms(dh).items()}
            results[(T, f"{act}, radius {radius:g}")] = (last, summed)
            per_step = (last[1] / last[T]) ** (1 / max(T - 1, 1))
            print(f"  T={T:3d} {act} radius {radius:g}: last-step loss: ||dL_T/dh_T|| = {last[T]:.2e}, "
                  f"||dL_T/dh_1|| = {last[1]:.2e} (x{per_step:.2f} per step back); "
                  f"summed loss: ||dL/dh_1|| = {summed[1]:.2e}")
            if T == args.lengths[0]:
                # cross-check: by linearity, dL_T/dh_t = dL_{1..T}/dh_t - dL_{1..T-1}/dh_t (analytic)
                _, _, dh_short = bptt.loss_and_grads(model, F.one_hot(x[:-1], CLASSES).data, y[:-1],
                                                     return_hidden_grads=True)
                analytic = np.linalg.norm((dh[0][:-1] - dh_short[0]).reshape(T - 1, -1), axis=1)
                engine = np.array([last[t] for t in range(1, T)])
                print(f"         engine vs analytic BPTT, ||dL_T/dh_t|| for t < T: max relative "
                      f"difference {np.max(np.abs(engine - analytic) / analytic):.1e}")

    if args.out_dir:
        try:
            from micrornn.viz import plot_gradient_flow
            out = Path(args.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            for T in args.lengths:
                series = {label: last for (length, label), (last, _) in results.items() if length == T}
                path = plot_gradient_flow({k: {(0, t): v for t, v in s.items()} for k, s in series.items()},
                                          out / f"gradient_flow_T{T}.png",
                                          title=f"||dL_T/dh_t||, loss at the last step only, T={T}")
                print(f"plot: {path}")
            T = args.lengths[-1]
            series = {label: summed for (length, label), (_, summed) in results.items() if length == T}
            path = plot_gradient_flow({k: {(0, t): v for t, v in s.items()} for k, s in series.items()},
                                      out / f"gradient_flow_T{T}_summed_loss.png",
                                      title=f"||dL/dh_t|| of the summed training loss, T={T}")
            print(f"plot: {path}")
        except ImportError as e:
            print(f"plots skipped: {e}")


if __name__ == "__main__":
    main()
