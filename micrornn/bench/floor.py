"""The floor: a tight hand-written NumPy training step that every contender is measured against.

One tanh layer over index inputs, a linear head and the softmax cross-entropy summed over time and
batch, forward and backward, into buffers allocated once. Per step it makes the fewest NumPy calls
we know how to: one gather of [U^T + b] rows for all inputs, three calls per time step each way,
and one product each for the head, dL/dh from the head, dV, dW and dU. Nothing here is shared with
the engine or with ``micrornn.bptt``, so the ratios measure micrornn against plain NumPy.

    forward   a_t = onehot(x_t) U^T + b,  h_t = tanh(a_t + h_{t-1} W^T),  o = h V^T + c
              L = sum_n logsumexp(o_n) - o_n[y_n]
    backward  do = softmax(o) - onehot(y),  dV = do^T h,  dc = sum_n do_n,  gh = do V
              delta_t = (1 - h_t^2) * (gh_t + delta_{t+1} W)
              dW = sum_t delta_t^T h_{t-1},  dU = delta^T onehot(x),  db = sum delta
"""
from __future__ import annotations

import numpy as np


class RNNFloor:
    """A one-layer tanh RNN step with preallocated buffers; ``step()`` returns the loss and fills ``grads``."""

    def __init__(self, U, W, b, V, c, indices, targets):
        T, B = indices.shape
        (H, I), O, dtype = U.shape, V.shape[0], U.dtype
        N = T * B
        self.U, self.W, self.b, self.V, self.c = U, W, b, V, c
        self.indices, self.targets, self.rows = indices.reshape(-1), targets.reshape(-1), np.arange(N)
        self.onehot = np.zeros((N, I), dtype)  # the input as dense rows, made once (it is data)
        self.onehot[self.rows, self.indices] = 1
        empty = lambda *shape: np.empty(shape, dtype)  # noqa: E731
        self.table, self.hs, self.recur = empty(I, H), empty(T, B, H), empty(B, H)
        self.logits, self.lse, self.gh, self.deriv = empty(N, O), empty(N, 1), empty(T, B, H), empty(T, B, H)
        self.grads = {"U": empty(H, I), "W": empty(H, H), "b": empty(H), "V": empty(O, H), "c": empty(O)}

    def workspace_bytes(self) -> int:
        """Bytes of every buffer the step owns but the input (tracemalloc does not see them per step)."""
        arrays = [self.table, self.hs, self.recur, self.logits, self.lse, self.gh, self.deriv]
        return sum(a.nbytes for a in arrays + list(self.grads.values()))

    def step(self) -> float:
        """Forward, loss and backward; returns the summed cross-entropy."""
        W, V, hs, recur, grads = self.W, self.V, self.hs, self.recur, self.grads
        T, B, H = hs.shape
        flat = hs.reshape(-1, H)
        np.add(self.U.T, self.b, out=self.table)
        np.take(self.table, self.indices, axis=0, out=flat)  # a_t for every step: one gather
        np.tanh(hs[0], out=hs[0])  # h_0 = 0
        for t in range(1, T):
            np.matmul(hs[t - 1], W.T, out=recur)
            np.add(hs[t], recur, out=hs[t])
            np.tanh(hs[t], out=hs[t])

        loss = softmax_head(flat, V, self.c, self.rows, self.targets, self.logits, self.lse, grads, self.gh)
        gh, deriv = self.gh, self.deriv
        np.multiply(hs, hs, out=deriv)
        np.subtract(1, deriv, out=deriv)  # tanh' = 1 - h^2; becomes delta in place below
        np.multiply(gh[T - 1], deriv[T - 1], out=deriv[T - 1])
        for t in range(T - 1, 0, -1):
            np.matmul(deriv[t], W, out=recur)  # delta_t W reaches h_{t-1}
            np.add(gh[t - 1], recur, out=gh[t - 1])
            np.multiply(gh[t - 1], deriv[t - 1], out=deriv[t - 1])
        delta = deriv.reshape(-1, H)
        np.matmul(deriv[1:].reshape(-1, H).T, hs[:-1].reshape(-1, H), out=grads["W"])
        np.matmul(delta.T, self.onehot, out=grads["U"])
        np.sum(delta, axis=0, out=grads["b"])
        return loss


def softmax_head(flat, V, c, rows, targets, logits, lse, grads, gh) -> float:
    """The head o = h V^T + c and the summed cross-entropy, forward and backward into buffers: fills
    grads["V"], grads["c"] and gh (dL/dh for every step, shaped like flat); returns the loss."""
    np.matmul(flat, V.T, out=logits)
    logits += c
    np.max(logits, axis=1, keepdims=True, out=lse)
    logits -= lse  # shifted: exp cannot overflow
    picked = logits[rows, targets]
    np.exp(logits, out=logits)
    probs = logits
    np.sum(probs, axis=1, keepdims=True, out=lse)
    loss = float(np.log(lse).sum() - picked.sum())
    probs /= lse
    probs[rows, targets] -= 1  # dL/do = softmax(o) - onehot(y)
    np.matmul(probs.T, flat, out=grads["V"])  # dV = do^T h
    np.sum(probs, axis=0, out=grads["c"])  # dc = sum_n do_n
    np.matmul(probs, V, out=gh.reshape(flat.shape))  # dL/dh_t from the head: do V
    return loss
