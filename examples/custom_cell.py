"""A recurrent cell that is none of RNN/LSTM/GRU, in ten lines, with everything the built-in ones get.

Run: python examples/custom_cell.py [--out DIR] [--format png|svg|pdf|dot] [--steps N]

The cell is the minimal gated unit (MGU: one forget gate f doing the work of the GRU's r and z):
    f_t  = sigmoid(x_t U_f^T + h_{t-1} W_f^T + b_f)
    h~_t = tanh(x_t U_h^T + (f_t * h_{t-1}) W_h^T + b_h)
    h_t  = (1 - f_t) * h_{t-1} + f_t * h~_t
nn.Recurrent unrolls it (every tensor tagged with its time step), gradcheck compares its autograd
gradients with central differences in float64, it learns to recall the bit it saw 4 steps ago, and
viz draws it: the textbook unrolled picture and the real autodiff graph, one cluster per step.
"""
import argparse
import time
from pathlib import Path

import numpy as np

import micrornn as mr
from micrornn import nn
from micrornn.nn import functional as F
from micrornn.nn import optim
from micrornn.check.finite_differences import gradcheck
from micrornn.viz import draw_graph, draw_unrolled, graph_size, render


class MGUCell(nn.Module):
    """Minimal gated unit: cell(x, h) -> h; U (2H, I), W (2H, H), b (2H,), blocks f and h~."""

    def __init__(self, input_size, hidden_size, rng=None):
        rng, bound = np.random.default_rng(rng), 1 / np.sqrt(hidden_size)
        self.hidden_size = hidden_size  # nn.Recurrent starts from zeros of this size
        self.U = nn.Parameter(rng.uniform(-bound, bound, (2 * hidden_size, input_size)))
        self.W = nn.Parameter(rng.uniform(-bound, bound, (2 * hidden_size, hidden_size)))
        self.b = nn.Parameter(np.zeros(2 * hidden_size))

    def forward(self, x, h):
        W_f, W_h = self.W.chunk(2, axis=0)
        x_f, x_h = (x @ self.U.T + self.b).chunk(2, axis=1)
        f = (x_f + h @ W_f.T).sigmoid()
        candidate = (x_h + (f * h) @ W_h.T).tanh()
        return h + f * (candidate - h)  # (1 - f) h + f h~


class Recall(nn.Module):
    """MGU unrolled by nn.Recurrent, then a linear read-out: model(x) -> (logits (T, B, 2), h_T)."""

    def __init__(self, hidden_size, rng):
        self.rnn = nn.Recurrent(MGUCell(2, hidden_size, rng))
        self.head = nn.Linear(hidden_size, 2, rng=rng)

    def forward(self, x, h0=None):
        states, h = self.rnn(x, h0)
        return self.head(states), h


DELAY = 4


def batch(rng, T, B):
    """Random bits as one-hot inputs (T, B, 2); the target at step t is the bit of step t - DELAY."""
    bits = rng.integers(0, 2, (T, B))
    return np.eye(2)[bits], bits[:-DELAY]


def loss_of(model, x, targets):
    """Cross-entropy of the recalled bits, averaged over the steps that have one."""
    logits, _ = model(mr.Tensor(x))
    return F.cross_entropy(logits[DELAY:], targets)


def check_gradients():
    """Autograd through the unrolled MGU against central differences (float64, tiny sizes)."""
    rng = np.random.default_rng(1)
    model = Recall(3, rng)
    x, targets = batch(rng, 7, 2)
    params = model.parameters()
    ok = gradcheck(lambda *_: loss_of(model, x, targets), params, raise_exception=False)
    print(f"gradcheck (autograd vs central differences, {sum(p.size for p in params)} weights, "
          f"T=7): {'PASS' if ok else 'FAIL'}")
    return ok


def train(steps, rng):
    """Adam on fresh random sequences; returns the model and its recall accuracy on new ones."""
    model = Recall(16, rng)
    opt = optim.Adam(model.parameters(), lr=0.02)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x, targets = batch(rng, 20, 32)
        opt.zero_grad()
        loss = loss_of(model, x, targets)
        loss.backward()
        opt.step()
        if step % max(steps // 4, 1) == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    x, targets = batch(rng, 40, 256)
    with mr.no_grad():
        logits, _ = model(mr.Tensor(x))
    accuracy = float((logits.data[DELAY:].argmax(-1) == targets).mean())
    print(f"trained {steps} steps in {time.perf_counter() - start:.1f} s; recall of the bit {DELAY} steps "
          f"back on new sequences: {accuracy:.1%} (chance: 50%)")
    return model


def draw(model, out, fmt):
    """The textbook unrolled picture and the autodiff graph of a 4-step run."""
    out.mkdir(parents=True, exist_ok=True)
    pictures = {"custom_unrolled": draw_unrolled(model, steps=4, title="MGU cell unrolled by nn.Recurrent")}
    x, targets = batch(np.random.default_rng(2), 6, 1)
    pictures["custom_graph"] = draw_graph(loss_of(model, x, targets), names=model, max_steps=4)
    for name, graph in pictures.items():
        path = render(graph, out / f"{name}.{fmt}")
        nodes, edges = graph_size(graph)
        print(f"wrote {path}: {nodes} nodes, {edges} edges")


def main():
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    parser.add_argument("--out", default="viz_out", help="directory for the pictures (default viz_out)")
    parser.add_argument("--format", default="svg", choices=("png", "svg", "pdf", "dot"))
    parser.add_argument("--steps", type=int, default=150, help="training steps (default 150)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be a positive integer")
    ok = check_gradients()
    model = train(args.steps, np.random.default_rng(0))
    draw(model, Path(args.out), args.format)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
