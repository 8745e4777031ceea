"""A peephole LSTM, a cell with an (h, c) state that micrornn does not ship, trained, drawn and checked.

Run: python examples/peephole_lstm.py [--steps N]
     micrornn train --cell peephole_lstm:PeepholeLSTMCell   (with examples/ on PYTHONPATH)

Gers & Schmidhuber's LSTM lets each gate look at the cell state through a diagonal weight p:
    i = σ(x U_i^T + h W_i^T + p_i * c + b_i)      f = σ(x U_f^T + h W_f^T + p_f * c + b_f)
    c' = f * c + i * tanh(x U_g^T + h W_g^T + b_g)
    o = σ(x U_o^T + h W_o^T + p_o * c' + b_o)      h' = o * tanh(c')
The task: the target at each step is the symbol seen DELAY steps before (chance: 1 / SYMBOLS).
"""
import argparse

import numpy as np

import micrornn as mr
from micrornn import nn
from micrornn.nn import optim

SYMBOLS, DELAY = 4, 2


class PeepholeLSTMCell(nn.Module):
    """cell(x, (h, c)) -> (h, c); U (4H, I), W (4H, H), b (4H,) in gate blocks i, f, g, o; peepholes p (3, H)."""

    state_names = ("h", "c")
    gate_names = ("i", "f", "g", "o")

    def __init__(self, input_size, hidden_size, rng=0):
        rng, bound = np.random.default_rng(rng), 1 / np.sqrt(hidden_size)
        self.hidden_size = hidden_size
        self.U = nn.Parameter(rng.uniform(-bound, bound, (4 * hidden_size, input_size)))
        self.W = nn.Parameter(rng.uniform(-bound, bound, (4 * hidden_size, hidden_size)))
        self.b = nn.Parameter(np.zeros(4 * hidden_size))
        self.p = nn.Parameter(rng.uniform(-bound, bound, (3, hidden_size)))  # peepholes of i, f, o

    def initial_state(self, batch, dtype=np.float64):
        """(h, c) zeros, each (B, H)."""
        return tuple(mr.Tensor(np.zeros((batch, self.hidden_size), dtype=dtype)) for _ in range(2))

    def gates(self, x, state) -> dict:
        """Each gate's activation (B, H) at input x and state (h, c)."""
        h, c = state
        a_i, a_f, a_g, a_o = (x @ self.U.T + h @ self.W.T + self.b).chunk(4, axis=1)
        i, f = (a_i + self.p[0] * c).sigmoid(), (a_f + self.p[1] * c).sigmoid()
        g = a_g.tanh()
        c_next = f * c + i * g
        return {"i": i, "f": f, "g": g, "o": (a_o + self.p[2] * c_next).sigmoid()}

    def forward(self, x, state):
        gates = self.gates(x, state)
        c = gates["f"] * state[1] + gates["i"] * gates["g"]
        return gates["o"] * c.tanh(), c


def delayed_batch(rng, T, B):
    """Random symbols (T, B) and targets: the symbol DELAY steps before (the first steps: symbol 0)."""
    x = rng.integers(0, SYMBOLS, (T, B))
    y = np.zeros_like(x)
    y[DELAY:] = x[:-DELAY]
    return x, y


def train(cell=PeepholeLSTMCell, steps=150, hidden_size=12, T=10, B=32, seed=0) -> float:
    """Train SequenceModel(cell=cell) on the delayed-recall task; return accuracy on fresh data."""
    rng = np.random.default_rng(seed)
    model = nn.SequenceModel(SYMBOLS, hidden_size, SYMBOLS, cell=cell, rng=seed)
    opt = optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        x, y = delayed_batch(rng, T, B)
        loss, _ = model.loss(x, y, reduction="mean")
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = delayed_batch(rng, T, 256)
    with mr.no_grad():
        logits, _ = model(x)
    return float((logits.data.argmax(-1)[DELAY:] == y[DELAY:]).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    accuracy = train(steps=args.steps)
    print(f"peephole LSTM, recall the symbol {DELAY} steps back: accuracy {accuracy:.2f} (chance {1 / SYMBOLS:.2f})")
    cell = PeepholeLSTMCell(2, 3)
    x = mr.Tensor(np.random.default_rng(1).standard_normal((3, 2, 2)), requires_grad=True)
    ok = mr.gradcheck(lambda x, *ps: nn.Recurrent(cell)(x)[0].sum(), [x, *cell.parameters()])
    print(f"gradcheck against central differences: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
