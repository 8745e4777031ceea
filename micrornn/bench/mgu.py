"""The minimal gated unit (MGU) of docs/cells.md, and a hand-written NumPy MGU step as its floor.

``MGU`` is the user cell of docs/cells.md (one block U of input weights for both halves, no bias):

    p = x U,  f = sigmoid(p_f + h W_f),  n = tanh(p_n + (f h) W_n),  h' = h + f (n - h)

``MGUFloor`` is the same one-layer model (index inputs, a linear head, the softmax cross-entropy
summed over time and batch) written by hand in NumPy into buffers allocated once, as floor.py is for
the tanh RNN: one gather of U's rows for every input, a fixed handful of NumPy calls per time step
each way, and one product each for dW_f, dW_n and dU over all steps. Nothing is shared with the
engine, so the bench's "compiled MGU / NumPy MGU" ratio measures micrornn.compile on a user cell
against plain NumPy.
"""
from __future__ import annotations

import numpy as np

from micrornn.bench.floor import softmax_head
from micrornn.engine.random import default_rng
from micrornn.nn import Module, Parameter

MGU_NAMES = ("rnn.cells.0.U", "rnn.cells.0.W_f", "rnn.cells.0.W_n", "head.weight", "head.bias")


class MGU(Module):
    """Minimal gated unit: f = sigmoid(x U_f + h W_f), n = tanh(x U_n + (f h) W_n), h' = h + f (n - h)."""

    def __init__(self, input_size: int, hidden_size: int, rng=None):
        rng = default_rng(rng)
        k = hidden_size ** -0.5  # PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)): the gates do not saturate at H=512
        self.hidden_size = hidden_size
        self.U = Parameter(rng.uniform(-k, k, (input_size, 2 * hidden_size)))
        self.W_f = Parameter(rng.uniform(-k, k, (hidden_size, hidden_size)))
        self.W_n = Parameter(rng.uniform(-k, k, (hidden_size, hidden_size)))

    def forward(self, x, h):
        p_f, p_n = (x @ self.U).chunk(2, axis=1)
        f = (p_f + h @ self.W_f).sigmoid()
        return h + f * ((p_n + (f * h) @ self.W_n).tanh() - h)


def _sigmoid_(a: np.ndarray) -> None:
    """sigmoid in place, as 0.5 (1 + tanh(a / 2)): no overflow for any a."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5


class MGUFloor:
    """A one-layer MGU step with preallocated buffers; ``step()`` returns the loss and fills ``grads``."""

    def __init__(self, U, W_f, W_n, V, c, indices, targets):
        T, B = indices.shape
        (I, H2), O, dtype = U.shape, V.shape[0], U.dtype
        H, N = H2 // 2, T * B
        self.U, self.W_f, self.W_n, self.V, self.c = U, W_f, W_n, V, c
        self.indices, self.targets, self.rows = indices.reshape(-1), targets.reshape(-1), np.arange(N)
        self.onehot = np.zeros((N, I), dtype)  # the input as dense rows, made once (it is data)
        self.onehot[self.rows, self.indices] = 1
        empty = lambda *shape: np.empty(shape, dtype)  # noqa: E731
        self.hs = np.zeros((T + 1, B, H), dtype)  # hs[0] = h_0 = 0, hs[t + 1] = h after step t
        self.p = empty(T, B, 2 * H)  # x_t U for every step (one gather)
        self.f, self.g, self.d = empty(T, B, H), empty(T, B, H), empty(T, B, H)  # f, f h, n - h per step
        self.n = empty(T, B, H)  # n per step; becomes f (1 - n^2) for backward
        self.fprime, self.keep = empty(T, B, H), empty(T, B, H)  # f (1 - f) and 1 - f, for backward
        self.da_f, self.da_n = empty(T, B, H), empty(T, B, H)
        self.dg, self.tmp = empty(B, H), empty(B, H)
        self.logits, self.lse, self.gh = empty(N, O), empty(N, 1), empty(T, B, H)
        self.grads = {"U": empty(I, 2 * H), "W_f": empty(H, H), "W_n": empty(H, H), "V": empty(O, H), "c": empty(O)}

    def workspace_bytes(self) -> int:
        """Bytes of every buffer the step owns but the input (tracemalloc does not see them per step)."""
        arrays = [self.hs, self.p, self.f, self.g, self.d, self.n, self.fprime, self.keep, self.da_f, self.da_n,
                  self.dg, self.tmp, self.logits, self.lse, self.gh]
        return sum(a.nbytes for a in arrays + list(self.grads.values()))

    def step(self) -> float:
        """Forward, loss and backward; returns the summed cross-entropy."""
        W_f, W_n, hs, p, f, g, d, n = self.W_f, self.W_n, self.hs, self.p, self.f, self.g, self.d, self.n
        T, B, H = f.shape
        np.take(self.U, self.indices, axis=0, out=p.reshape(T * B, 2 * H))  # p_t = onehot(x_t) U: one gather
        for t in range(T):
            h = hs[t]
            np.matmul(h, W_f, out=f[t])
            f[t] += p[t, :, :H]
            _sigmoid_(f[t])  # f = sigmoid(p_f + h W_f)
            np.multiply(f[t], h, out=g[t])
            np.matmul(g[t], W_n, out=n[t])
            n[t] += p[t, :, H:]
            np.tanh(n[t], out=n[t])  # n = tanh(p_n + (f h) W_n)
            np.subtract(n[t], h, out=d[t])
            np.multiply(f[t], d[t], out=hs[t + 1])
            hs[t + 1] += h  # h' = h + f (n - h)

        flat, grads = hs[1:].reshape(T * B, H), self.grads
        loss = softmax_head(flat, self.V, self.c, self.rows, self.targets, self.logits, self.lse, grads, self.gh)

        gh, fprime, keep, da_f, da_n, dg, tmp = self.gh, self.fprime, self.keep, self.da_f, self.da_n, self.dg, self.tmp
        np.multiply(n, n, out=n)
        np.subtract(1, n, out=n)
        n *= f  # dh'/da_n = f (1 - n^2)
        np.subtract(1, f, out=keep)  # dh'/dh along the direct path: 1 - f
        np.multiply(f, keep, out=fprime)  # sigmoid' = f (1 - f)
        for t in range(T - 1, -1, -1):  # gh[t] holds dL/dh_{t+1}: the head's part plus what step t+1 sent
            dh, h = gh[t], hs[t]
            np.multiply(dh, n[t], out=da_n[t])  # da_n = dh f (1 - n^2)
            np.matmul(da_n[t], W_n.T, out=dg)  # d(f h) = da_n W_n^T
            np.multiply(dh, d[t], out=da_f[t])  # df from h' = h + f (n - h): dh (n - h)
            np.multiply(dg, h, out=tmp)
            da_f[t] += tmp  # df from f h: d(f h) h
            da_f[t] *= fprime[t]  # da_f = df f (1 - f)
            if t == 0:
                break  # h_0 is a constant: no gradient to send
            np.multiply(dh, keep[t], out=tmp)  # dh_prev = dh (1 - f) ...
            gh[t - 1] += tmp
            np.multiply(dg, f[t], out=tmp)  # ... + d(f h) f ...
            gh[t - 1] += tmp
            np.matmul(da_f[t], W_f.T, out=tmp)  # ... + da_f W_f^T
            gh[t - 1] += tmp
        flat_f, flat_n = da_f.reshape(T * B, H), da_n.reshape(T * B, H)
        np.matmul(hs[:-1].reshape(T * B, H).T, flat_f, out=grads["W_f"])  # dW_f = sum_t h_{t-1}^T da_f
        np.matmul(g.reshape(T * B, H).T, flat_n, out=grads["W_n"])  # dW_n = sum_t (f h)^T da_n
        np.matmul(self.onehot.T, flat_f, out=grads["U"][:, :H])  # dU = onehot(x)^T [da_f, da_n]
        np.matmul(self.onehot.T, flat_n, out=grads["U"][:, H:])
        return loss
