"""Recurrent cells micrornn does not ship, written as a user would, shared by the tests: a peephole
LSTM ((h, c) state), the minimal gated unit and IndRNN (no W matrix) for the picture and diagnostic
tests, and MGU, the minimal gated unit in the layout of docs/cells.md, for the time-loop, dropout,
lengths, compile and command-line tests.

Each follows the cell protocol: hidden_size, forward(x_t, state) -> state; the two gated picture
cells name their gates (gate_names + gates()). Nothing here comes from the library's own cells.
"""
import numpy as np

import micrornn as mr
from micrornn import nn
from micrornn.nn import Parameter


def _uniform(rng, H, *shape):
    """PyTorch-style initial weights: uniform in [-1/sqrt(H), 1/sqrt(H)]."""
    bound = 1.0 / np.sqrt(H)
    return Parameter(rng.uniform(-bound, bound, shape))


class PeepholeLSTM(nn.Module):
    """LSTM whose gates also see the cell state: i, f from c_{t-1}, o from c_t (Gers & Schmidhuber)."""

    state_names = ("h", "c")
    gate_names = ("i", "f", "g", "o")

    def __init__(self, input_size, hidden_size, rng=None):
        rng, H = np.random.default_rng(rng), hidden_size
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W_x = _uniform(rng, H, 4 * H, input_size)
        self.W_h = _uniform(rng, H, 4 * H, H)
        self.p_i, self.p_f, self.p_o = (_uniform(rng, H, H) for _ in range(3))
        self.b = _uniform(rng, H, 4 * H)

    def initial_state(self, batch):
        zeros = np.zeros((batch, self.hidden_size))
        return mr.Tensor(zeros), mr.Tensor(zeros.copy())

    def _gates(self, x, state):
        h, c = state
        a_i, a_f, a_g, a_o = (x @ self.W_x.T + h @ self.W_h.T + self.b).chunk(4, axis=1)
        i, f = (a_i + c * self.p_i).sigmoid(), (a_f + c * self.p_f).sigmoid()
        g = a_g.tanh()
        c_next = f * c + i * g
        o = (a_o + c_next * self.p_o).sigmoid()
        return {"i": i, "f": f, "g": g, "o": o}, c_next

    def gates(self, x, state):
        return self._gates(x, state)[0]

    def forward(self, x, state):
        gates, c_next = self._gates(x, state)
        return gates["o"] * c_next.tanh(), c_next


class MGUCell(nn.Module):
    """Minimal gated unit: f = sigmoid(x W_f + h U_f + b_f), h~ = tanh(x W_h + (f h) U_h + b_h),
    h' = (1 - f) h + f h~."""

    gate_names = ("f",)

    def __init__(self, input_size, hidden_size, rng=None):
        rng, H = np.random.default_rng(rng), hidden_size
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W_f, self.W_h = _uniform(rng, H, H, input_size), _uniform(rng, H, H, input_size)
        self.U_f, self.U_h = _uniform(rng, H, H, H), _uniform(rng, H, H, H)
        self.b_f, self.b_h = _uniform(rng, H, H), _uniform(rng, H, H)

    def gates(self, x, h):
        return {"f": (x @ self.W_f.T + h @ self.U_f.T + self.b_f).sigmoid()}

    def forward(self, x, h):
        f = self.gates(x, h)["f"]
        candidate = (x @ self.W_h.T + (f * h) @ self.U_h.T + self.b_h).tanh()
        return h + f * (candidate - h)


class IndRNN(nn.Module):
    """Independently recurrent network: h' = relu(x W^T + u * h + b); each unit sees only its own
    past (a vector u, no recurrent matrix)."""

    def __init__(self, input_size, hidden_size, rng=None):
        rng, H = np.random.default_rng(rng), hidden_size
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W = _uniform(rng, H, H, input_size)
        self.u = Parameter(rng.uniform(0.5, 1.0, H))
        self.b = _uniform(rng, H, H)

    def forward(self, x, h):
        return (x @ self.W.T + self.u * h + self.b).relu()


class MGU(nn.Module):
    """Minimal gated unit in docs/cells.md's layout (one block U (I, 2H) of input weights, no bias):
    f = sigmoid(x U_f + h W_f), n = tanh(x U_n + (f h) W_n), h' = (1 - f) h + f n; every weight drawn
    uniform in [-scale, scale] from the seed rng (0 unless given: nn.Recurrent builds it from the sizes alone)."""

    def __init__(self, input_size, hidden_size, rng=0, scale=0.5):
        rng = np.random.default_rng(rng)
        self.hidden_size = hidden_size
        self.U = Parameter(rng.uniform(-scale, scale, (input_size, 2 * hidden_size)))
        self.W_f = Parameter(rng.uniform(-scale, scale, (hidden_size, hidden_size)))
        self.W_n = Parameter(rng.uniform(-scale, scale, (hidden_size, hidden_size)))

    def forward(self, x, h):
        H = self.hidden_size
        p = x @ self.U
        f = (p[:, :H] + h @ self.W_f).sigmoid()
        n = (p[:, H:] + (f * h) @ self.W_n).tanh()
        return h + f * (n - h)


USER_CELLS = (PeepholeLSTM, MGUCell, IndRNN)


class Tagged(nn.Module):
    """A one-layer model around a user cell: nn.Recurrent(cell) then a Linear head, with a loss."""

    def __init__(self, cell, output_size, rng=None):
        self.rnn = nn.Recurrent(cell)
        self.head = nn.Linear(cell.hidden_size, output_size, rng=rng)

    def forward(self, x, h0=None):
        states, final = self.rnn(x, h0)
        return self.head(states), final


def user_model(cls, input_size=3, hidden_size=4, output_size=3, seed=0):
    """A Tagged model around cls and random data (x (T, B, I), integer targets) maker."""
    rng = np.random.default_rng(seed)
    return Tagged(cls(input_size, hidden_size, rng), output_size, rng)


def user_data(T=5, B=2, input_size=3, output_size=3, seed=1):
    """Random float inputs (T, B, I) and integer targets (T, B)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, input_size)), rng.integers(0, output_size, size=(T, B))
