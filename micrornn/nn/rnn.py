"""The vanilla RNN built from engine primitives: h_t = act(x_t U^T + h_{t-1} W^T + b).

Unrolled, every step is a handful of graph nodes that share U, W and b, so backpropagation
through time is just the engine's graph traversal. ``fused=True`` instead runs each layer as one
primitive whose forward and VJP are the hand-derived routines of ``micrornn.bptt``.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from micrornn import functional as F, fused_ops, ops
from micrornn.autograd import state
from micrornn.nn.layers import Linear, check_size, uniform
from micrornn.nn.module import Module, Parameter
from micrornn.random import default_rng
from micrornn.tensor import Tensor, _leaf, apply, as_tensor, concatenate, matmul_add, stack

StepScope = namedtuple("StepScope", "layer step")
StepScope.__doc__ = "Where a tensor was made: RNN layer (0-based) and time step (1..T; None: all steps)."

NONLINEARITIES = ("tanh", "relu")
_ACTIVATIONS = {"tanh": ops.TANH, "relu": ops.RELU}


def _activation(nonlinearity):
    """The Tensor method for a nonlinearity name, or a ValueError naming the choices."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    return Tensor.tanh if nonlinearity == "tanh" else Tensor.relu


class RNNCell(Module):
    """One step: h_next = act(x U^T + h W^T + b), U (hidden, input), W (hidden, hidden), b (hidden,)."""

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", bias=True, dtype=np.float64, rng=None):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.act = _activation(nonlinearity)
        self.nonlinearity = nonlinearity
        rng, bound, H = default_rng(rng), 1.0 / np.sqrt(self.hidden_size), self.hidden_size
        self.U = Parameter(uniform(rng, bound, (H, self.input_size), dtype))
        self.W = Parameter(uniform(rng, bound, (H, H), dtype))
        self.b = Parameter(uniform(rng, bound, (H,), dtype)) if bias else None

    def forward(self, x, h) -> Tensor:
        """x (B, input), h (B, hidden) -> h_next (B, hidden)."""
        x, h = as_tensor(x), as_tensor(h)
        _expect(x, "x", (None, self.input_size))
        _expect(h, "h", (x.shape[0], self.hidden_size))
        pre = x @ self.U.T + h @ self.W.T
        return self.act(pre if self.b is None else pre + self.b)

    def concatenated_weight(self) -> Tensor:
        """[U W]: the (hidden, input + hidden) weight of the same cell as one linear layer."""
        return concatenate([self.U, self.W], axis=1)

    def forward_concatenated(self, x, h) -> Tensor:
        """The same step as one product: act([x h] [U W]^T + b)."""
        x, h = as_tensor(x), as_tensor(h)
        pre = concatenate([x, h], axis=1) @ self.concatenated_weight().T
        return self.act(pre if self.b is None else pre + self.b)


class RNN(Module):
    """Stacked RNN layers over a sequence: rnn(x, h0=None) -> (output (T, B, H), h_n (layers, B, H))."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, fused=False, dtype=np.float64, rng=None):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        _activation(nonlinearity)
        self.nonlinearity, self.bias = nonlinearity, bool(bias)
        self.batch_first, self.fused = bool(batch_first), bool(fused)
        rng = default_rng(rng)
        self.cells = [RNNCell(self.input_size if layer == 0 else self.hidden_size, self.hidden_size,
                              nonlinearity, bias, dtype, rng) for layer in range(self.num_layers)]

    def forward(self, x, h0=None):
        """x (T, B, I) floats, or (T, B) integer indices standing for one-hot inputs; time-major
        unless batch_first. Returns the top layer's states and every layer's last state."""
        x = self._check_input(x)
        if self.batch_first:
            x = x.transpose(1, 0) if x.ndim == 2 else x.transpose(1, 0, 2)
        T, B = x.shape[0], x.shape[1]
        h0 = self._check_h0(h0, B)
        layer_input, finals = x, []
        for layer, cell in enumerate(self.cells):
            h_init = None if h0 is None else h0[layer]
            run = self._layer_fused if self.fused else self._layer_unrolled
            states = run(layer, cell, layer_input, h_init)
            finals.append(states[T - 1])
            layer_input = states
        output = layer_input.transpose(1, 0, 2) if self.batch_first else layer_input
        return output, stack(finals)

    def _layer_unrolled(self, layer, cell, x, h):
        """One layer as per-step graph nodes; returns the stacked states (T, B, H)."""
        previous = state.scope
        try:
            state.scope = StepScope(layer, None)
            if x.dtype.kind in "iu":  # one-hot inputs: gather rows of [U^T + b] instead of a product
                table = cell.U.T if cell.b is None else cell.U.T + cell.b
                projected = table[x.data]
            else:
                projected = x @ cell.U.T  # all steps' input projections in one product
                if cell.b is not None:
                    projected = projected + cell.b
            W_T, act, states = cell.W.T, _ACTIVATIONS[cell.nonlinearity], []
            buffer = np.empty(projected.shape, dtype=projected.dtype)  # h_1..h_T are written in place
            for t in range(x.shape[0]):
                state.scope = StepScope(layer, t + 1)
                pre = projected[t] if h is None else matmul_add(h, W_T, projected[t])
                h = apply(act, pre, out=buffer[t])
                h.name = f"h{t + 1}"
                states.append(h)
            state.scope = StepScope(layer, None)
            return apply(ops.STACK, *states, axis=0, out=buffer)  # no copy: the states are already there
        finally:
            state.scope = previous

    def _layer_fused(self, layer, cell, x, h):
        """One layer as a single primitive whose VJP is the analytic BPTT."""
        H, B = cell.hidden_size, x.shape[1]
        b = cell.b if cell.b is not None else _leaf(np.zeros(H, dtype=cell.U.dtype))
        h = h if h is not None else _leaf(np.zeros((B, H), dtype=cell.U.dtype))
        previous, state.scope = state.scope, StepScope(layer, None)
        try:
            return apply(fused_ops.RNN_LAYER, x, cell.U, cell.W, b, h, nonlinearity=cell.nonlinearity)
        finally:
            state.scope = previous

    def _check_input(self, x) -> Tensor:
        """x as a Tensor of rank 3 (floats) or rank 2 (indices) with the right input size."""
        x = as_tensor(x)
        if x.dtype.kind in "iu":
            if x.ndim != 2:
                raise ValueError(f"RNN: integer input must be indices of shape (T, B), got shape {x.shape}")
            if x.size and (x.data.min() < 0 or x.data.max() >= self.input_size):
                raise ValueError(f"RNN: input indices must lie in 0..{self.input_size - 1}, "
                                 f"got min {x.data.min()} and max {x.data.max()}")
        elif x.ndim != 3 or x.shape[2] != self.input_size:
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(f"RNN: expected input of shape {layout} with input_size={self.input_size}, "
                             f"got shape {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"RNN: input has an empty time or batch axis, shape {x.shape}")
        return x

    def _check_h0(self, h0, batch):
        """h0 as a Tensor of shape (num_layers, B, hidden), or None."""
        if h0 is None:
            return None
        h0 = as_tensor(h0)
        _expect(h0, "h0", (self.num_layers, batch, self.hidden_size))
        return h0


class SequenceModel(Module):
    """An RNN followed by a linear head: model(x, h0=None) -> (logits (T, B, O), h_n)."""

    def __init__(self, input_size, hidden_size, output_size, num_layers=1, nonlinearity="tanh",
                 fused=False, bias=True, batch_first=False, dtype=np.float64, rng=None):
        rng = default_rng(rng)
        check_size("output_size", output_size)  # name the argument the caller used, not Linear's
        self.rnn = RNN(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first, fused, dtype, rng)
        self.head = Linear(hidden_size, output_size, bias=bias, dtype=dtype, rng=rng)

    @property
    def config(self) -> dict:
        """The constructor arguments (JSON-friendly), to rebuild the same architecture."""
        r = self.rnn
        return {"input_size": r.input_size, "hidden_size": r.hidden_size, "output_size": self.head.out_features,
                "num_layers": r.num_layers, "nonlinearity": r.nonlinearity, "fused": r.fused, "bias": r.bias,
                "batch_first": r.batch_first, "dtype": str(self.head.weight.dtype)}

    def forward(self, x, h0=None):
        """Logits o_t = h_t V^T + c for every step (one product over all steps) and h_n."""
        states, h_n = self.rnn(x, h0)
        return self.head(states), h_n

    def loss(self, x, targets, h0=None, reduction="sum"):
        """(L = sum_t L_t softmax cross-entropy (or mean / none), h_n)."""
        if self.rnn.fused and reduction != "none":  # the head and the loss as one node too
            states, h_n = self.rnn(x, h0)
            head = self.head
            return F.linear_cross_entropy(states, head.weight, head.bias, targets, reduction), h_n
        logits, h_n = self(x, h0)
        return F.cross_entropy(logits, targets, reduction=reduction), h_n


def _expect(t: Tensor, name: str, shape) -> None:
    """ValueError naming ``name`` unless t has ``shape`` (None entries match any size)."""
    if t.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {t.shape}")
