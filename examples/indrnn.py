"""IndRNN, a cell with no recurrent matrix at all, trained on variable-length sequences.

Run: python examples/indrnn.py [--steps N]
     micrornn train --cell indrnn:IndRNNCell   (with examples/ on PYTHONPATH)

Li et al.'s independently recurrent network: each unit feeds back only onto itself,
    h' = relu(x U^T + w * h + b),     w (H,) one recurrent weight per unit,
which lets a unit hold a value for many steps (w near 1). The task: a batch of sequences of
different lengths (``lengths=``); at its last real step each sequence must name the symbol it
started with (chance: 1 / SYMBOLS). Padded steps count nowhere.
"""
import argparse

import numpy as np

import micrornn as mr
from micrornn import nn
from micrornn.nn import optim

SYMBOLS = 4


class IndRNNCell(nn.Module):
    """cell(x, h) -> h; U (H, I), w (H,), b (H,): h' = relu(x U^T + w * h + b)."""

    def __init__(self, input_size, hidden_size, rng=0):
        rng = np.random.default_rng(rng)
        self.hidden_size = hidden_size
        self.U = nn.Parameter(rng.uniform(-0.5, 0.5, (hidden_size, input_size)))
        self.w = nn.Parameter(rng.uniform(0.8, 1.0, hidden_size))
        self.b = nn.Parameter(np.zeros(hidden_size))

    def forward(self, x, h):
        return (x @ self.U.T + self.w * h + self.b).relu()


def first_symbol_batch(rng, T, B):
    """Symbols (T, B), lengths (B,) in 3..T, and targets (T, B): the first symbol at the last real step, -1
    (ignored: the mask skips it) everywhere else."""
    x = rng.integers(0, SYMBOLS, (T, B))
    lengths = rng.integers(3, T + 1, B)
    y = np.full((T, B), -1)
    y[lengths - 1, np.arange(B)] = x[0]
    return x, y, lengths


def train(cell=IndRNNCell, steps=150, hidden_size=16, T=8, B=32, seed=0) -> float:
    """Train SequenceModel(cell=cell) on the first-symbol task with padded batches; return accuracy."""
    rng = np.random.default_rng(seed)
    model = nn.SequenceModel(SYMBOLS, hidden_size, SYMBOLS, cell=cell, rng=seed)
    opt = optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        x, y, lengths = first_symbol_batch(rng, T, B)
        logits, _ = model(x, lengths=lengths)
        loss = nn.functional.cross_entropy(logits, y, mask=y >= 0)  # only each sequence's last step counts
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y, lengths = first_symbol_batch(rng, T, 256)
    with mr.no_grad():
        logits, _ = model(x, lengths=lengths)
    last = logits.data[lengths - 1, np.arange(256)]
    return float((last.argmax(-1) == x[0]).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    accuracy = train(steps=args.steps)
    print(f"IndRNN, name the first symbol at the end of a padded sequence: accuracy {accuracy:.2f} "
          f"(chance {1 / SYMBOLS:.2f})")


if __name__ == "__main__":
    main()
