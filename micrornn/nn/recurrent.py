"""The one time loop: ``unroll`` runs any cell over a sequence, tagging every tensor with its step.

RNN, LSTM and GRU layers and ``Recurrent`` (a user's own cell) all go through ``unroll``, so the
graph of every recurrent model looks the same to the tools that read it: each tensor carries a
``StepScope(layer, step)``, each step's hidden state is named ``h<t>``, and the states of a layer
are gathered into one (T, B, H) tensor. Backpropagation through time is then just the engine's
graph traversal.
"""
from __future__ import annotations

import inspect
from collections import namedtuple

import numpy as np

from micrornn.engine import ops
from micrornn.engine.backward import gc_paused, state as engine
from micrornn.nn.module import Module
from micrornn.engine.tensor import Tensor, _leaf, apply, as_tensor, stack


class StepScope(namedtuple("StepScope", "layer step direction", defaults=(0,))):
    """Where a tensor was made: layer (0-based), time step (1..T; None: all steps) and direction
    (0 left to right, 1 the reverse direction of a bidirectional layer)."""

    __slots__ = ()

    def __repr__(self):
        reverse = f", direction={self.direction}" if self.direction else ""
        return f"StepScope(layer={self.layer}, step={self.step}{reverse})"


def detach_state_tensors(state):
    """The state cut from the graph, as Tensors (a Tensor, or a tuple of them): truncated BPTT's boundary."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state_tensors(s) for s in state)
    return as_tensor(state).detach()


def zero_state(cell, batch, dtype):
    """``cell.initial_state(batch[, dtype])`` when the cell has one, else zeros (B, cell.hidden_size)."""
    make = getattr(cell, "initial_state", None)
    if make is None:
        size = getattr(cell, "hidden_size", None)
        if size is None:
            raise TypeError(f"{type(cell).__name__}: a cell needs a hidden_size attribute or an "
                            "initial_state(batch) method to start from a zero state")
        return _leaf(np.zeros((batch, size), dtype=dtype))
    takes_dtype = len(inspect.signature(make).parameters) >= 2
    return make(batch, dtype) if takes_dtype else make(batch)


def _is_fast(cell) -> bool:
    """A built-in cell: its step takes pre-projected inputs (x_t U^T + b) and the hoisted W^T."""
    return hasattr(cell, "project") and hasattr(cell, "step") and hasattr(cell, "W")


def unroll(cell, x, state=None, layer=0, reverse=False):
    """Run ``cell`` over x (T, B, ...) from ``state`` (None: zeros); return (outputs (T, B, H), final state).

    ``reverse=True`` walks t = T..1 (the second direction of a bidirectional layer); outputs stay
    in time order. Built-in cells project all inputs in one product first and write each h_t into
    one preallocated buffer that becomes the stacked output without a copy. Long sequences are
    unrolled with the cyclic garbage collector paused (see ``autograd.gc_paused``).
    """
    with gc_paused(3 * x.shape[0]):  # about three nodes per step
        return _unroll(cell, x, state, layer, reverse)


def _unroll(cell, x, state, layer, reverse):
    """The time loop of ``unroll``."""
    T, B = x.shape[0], x.shape[1]
    direction = 1 if reverse else 0
    fast = _is_fast(cell)
    previous = engine.scope
    try:
        engine.scope = StepScope(layer, None, direction)
        inputs = cell.project(x) if fast else x
        dtype = inputs.dtype if inputs.dtype.kind == "f" else np.float64
        if state is None and (not fast or T == 1):
            state = zero_state(cell, B, dtype)  # T = 1: the recurrent weights still get a (zero) gradient
        order, outputs = (range(T - 1, -1, -1) if reverse else range(T)), [None] * T
        if fast:
            step, W_T = cell.step, cell.W.T  # one transpose node per layer, not one per step
            buffer = np.empty((T, B, cell.hidden_size), dtype=dtype)
            for t in order:
                engine.scope = StepScope(layer, t + 1, direction)
                state = step(inputs[t], state, W_T, buffer[t])
                h = outputs[t] = state if type(state) is not tuple else state[0]
                h.name = f"h{t + 1}"
                if h is not state:
                    state[1].name = f"c{t + 1}"
            engine.scope = StepScope(layer, None, direction)
            return apply(ops.STACK, *outputs, axis=0, out=buffer), state  # no copy: the h_t are its rows
        for t in order:
            engine.scope = StepScope(layer, t + 1, direction)
            state = cell(inputs[t], state)
            h = outputs[t] = state[0] if isinstance(state, (tuple, list)) else state
            h.name = f"h{t + 1}"
            if h is not state and len(state) > 1 and isinstance(state[1], Tensor):
                state[1].name = f"c{t + 1}"
        engine.scope = StepScope(layer, None, direction)
        return stack(outputs), state
    finally:
        engine.scope = previous


class Recurrent(Module):
    """Unrolls any cell Module over a sequence: rec(x, state=None) -> (output (T, B, H), final state).

    The cell's ``forward(x_t, state) -> state`` is built from Tensor ops; its state is a Tensor h or a
    tuple whose first entry is h. The zero state comes from ``cell.initial_state(batch)`` when it has
    one, else zeros of (B, cell.hidden_size).
    """

    num_layers, num_directions, bidirectional, fused = 1, 1, False, False

    def __init__(self, cell, batch_first=False):
        if not isinstance(cell, Module):
            raise TypeError(f"Recurrent: expected a cell Module, got {type(cell).__name__}")
        self.cell, self.batch_first = cell, bool(batch_first)
        self.cell_kind = getattr(cell, "cell_kind", type(cell).__name__)

    @property
    def cells(self):
        """[cell]: the layout of RNN's per-layer cell list (for drawings and tools)."""
        return [self.cell]

    @property
    def hidden_size(self):
        """The cell's hidden size (when it declares one)."""
        return getattr(self.cell, "hidden_size", None)

    def forward(self, x, state=None):
        """x (T, B, ...) (or (B, T, ...) when batch_first) -> (h_1..h_T stacked, final state)."""
        x = as_tensor(x)
        if x.ndim < 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"Recurrent: expected input of shape (T, B, ...) with T, B >= 1, got {x.shape}")
        if self.batch_first:
            x = x.transpose((1, 0) + tuple(range(2, x.ndim)))
        output, final = unroll(self.cell, x, state)
        if self.batch_first:
            output = output.transpose(1, 0, *range(2, output.ndim))
        return output, final
