"""The one time loop: ``unroll`` runs any cell over a sequence, ``Stack`` stacks it into layers and
directions, and ``Recurrent`` is that stack for any cell.

RNN, LSTM and GRU layers and ``Recurrent`` (a user's own cell) all go through ``unroll``, so the
graph of every recurrent model looks the same to the tools that read it: each tensor carries a
``StepScope(layer, step, direction)``, each step's hidden state is named ``h<t>`` (and ``c<t>``), and
the states of a layer are gathered into one (T, B, H) tensor. Backpropagation through time is
then just the engine's graph traversal.

``lengths`` (B,) pads a batch: a step t >= length keeps the state (h_t = h_{t-1}, by ``where``, so
the padded input gets exactly zero gradient), its output is 0, the final state is the state at
the last real step, and the reverse direction starts there (each sequence is reversed within its
own length). Without lengths none of this costs a node.
"""
from __future__ import annotations

import inspect
import warnings
from collections import namedtuple

import numpy as np

from micrornn.bptt.shared import check_lengths, length_mask, reverse_index
from micrornn.engine import ops
from micrornn.engine.backward import gc_paused
from micrornn.engine.backward import state as engine_state
from micrornn.engine.tensor import Tensor, _leaf, apply, as_tensor, concatenate, scope, stack, where
from micrornn.nn import functional as F
from micrornn.nn.layers import check_size
from micrornn.nn.module import Module


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


def _entries(state) -> tuple:
    """The state's entries: (h,) for a Tensor, the tuple itself otherwise."""
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


def check_cell_state(cell, state, batch: int, dtype, like=None) -> None:
    """TypeError/ValueError naming the cell class unless ``state`` is what a cell must return: a
    Tensor h (B, hidden_size) of the run's dtype, or a tuple of such Tensors whose first entry is h
    (shaped like ``like``, the state it started from, when given)."""
    name = type(cell).__name__
    entries = _entries(state) if isinstance(state, (Tensor, tuple, list)) else None
    if not entries or not all(isinstance(s, Tensor) for s in entries):
        got = type(state).__name__ if entries is None else "a tuple holding " + ", ".join(
            sorted({type(s).__name__ for s in entries})) if entries else "an empty tuple"
        raise TypeError(f"{name}.forward must return the next state as a Tensor h (B, hidden_size) or a tuple of "
                        f"Tensors whose first entry is h; got {got}")
    size = getattr(cell, "hidden_size", None)
    size = size if size is not None else (_entries(like)[0].shape[-1] if like is not None else entries[0].shape[-1])
    for k, s in enumerate(entries):
        what = "h" if k == 0 else f"state entry {k}"
        if s.ndim != 2 or s.shape[0] != batch or (k == 0 and s.shape[1] != size):
            want = f"({batch}, {size})" if k == 0 else f"({batch}, ...)"
            raise ValueError(f"{name}.forward returned {what} of shape {s.shape}; expected {want} "
                             f"(batch, hidden_size={size})")
        if s.dtype != dtype:
            raise ValueError(f"{name}.forward returned {what} of dtype {s.dtype}; the run is {np.dtype(dtype)} "
                             "(cast the cell's parameters or its input)")
    if like is not None and (isinstance(state, Tensor) != isinstance(like, Tensor)
                             or len(entries) != len(_entries(like))):
        raise TypeError(f"{name}.forward returned a state of {len(entries)} entries "
                        f"({type(state).__name__}); it started from {len(_entries(like))} "
                        f"({type(like).__name__}): a cell keeps the structure of its state")


def unroll(cell, x, state=None, layer=0, reverse=False, lengths=None, return_states=False):
    """Run ``cell`` over x (T, B, ...) from ``state`` (None: zeros); return (outputs (T, B, H), final state),
    plus every step's state (each entry stacked (T, B, ...)) when ``return_states``.

    ``reverse=True`` walks t = T..1 (the second direction of a bidirectional layer; with lengths,
    each sequence from its last real step); outputs stay in time order. Built-in cells project all
    inputs in one product first and write each h_t into one preallocated buffer that becomes the
    stacked output without a copy. Long sequences are unrolled with the cyclic garbage collector
    paused (see ``engine.backward.gc_paused``).
    """
    x = as_tensor(x)
    T, B = x.shape[0], x.shape[1]
    mask = None
    if lengths is not None:
        lengths = check_lengths(lengths, T, B)
        mask = None if lengths.min() == T else length_mask(lengths, T)
    index = None
    if mask is not None and reverse:  # each sequence reversed within its length: then a forward walk
        index, reverse = reverse_index(lengths, T), False
        if x.dtype.kind in "iu" and hasattr(cell, "input_size"):  # one-hot rows (a gather compile replays), reversed
            x = _leaf(np.eye(cell.input_size, dtype=_param_dtype(cell)))[x.data]
        x = x[index]
    with gc_paused(3 * T):  # about three nodes per step
        outputs, final, states = _unroll(cell, x, state, layer, reverse, mask, return_states)
    if mask is not None:
        with scope(StepScope(layer, None, 1 if index is not None else 0)):
            keep = _leaf(mask[:, :, None].astype(outputs.dtype))
            outputs = (outputs if index is None else outputs[index]) * keep  # padded steps output 0
            if states is not None:
                states = tuple((s if index is None else s[index]) * keep for s in states)
    if not return_states:
        return outputs, final
    return outputs, final, states if isinstance(final, tuple) else states[0]


def _unroll(cell, x, state, layer, reverse, mask, return_states):
    """The time loop of ``unroll``: (outputs, final state, per-entry stacked states or None)."""
    T, B = x.shape[0], x.shape[1]
    direction = 1 if reverse else 0
    fast = _is_fast(cell)
    with scope(StepScope(layer, None, direction)):
        inputs = cell.project(x) if fast else x
        dtype = inputs.dtype if inputs.dtype.kind == "f" else np.float64
        if state is None and (not fast or T == 1 or mask is not None):
            state = zero_state(cell, B, dtype)  # T = 1: the recurrent weights still get a (zero) gradient
        start = state
        order, outputs = (range(T - 1, -1, -1) if reverse else range(T)), [None] * T
        kept = [] if return_states else None
        buffer = None
        if fast:
            step, W_T = cell.step, cell.W.T  # one transpose node per layer, not one per step
            if mask is None:  # each h_t is written into its row (with padding, h_t is where's output instead)
                buffer = np.empty((T, B, cell.hidden_size), dtype=dtype)
                if kept is None:  # the plain loop: no scope object or check per step
                    state = _fast_loop(step, inputs, state, W_T, buffer, order, outputs, layer, direction)
                    return apply(ops.STACK, *outputs, axis=0, out=buffer), state, None
        for t in order:
            with scope(StepScope(layer, t + 1, direction)):
                if fast:
                    new = step(inputs[t], state, W_T, None if buffer is None else buffer[t])
                else:
                    new = cell(inputs[t], state)
                    if t == order[0]:
                        check_cell_state(cell, new, B, dtype, start)
                if mask is not None and not mask[t].all():  # padded rows keep the state
                    keep = _leaf(mask[t][:, None])
                    new = where(keep, new, state) if isinstance(new, Tensor) else type(new)(
                        where(keep, n, s) for n, s in zip(new, state))
            state = new
            h = outputs[t] = state if isinstance(state, Tensor) else state[0]
            h.name = f"h{t + 1}"
            if h is not state and len(state) > 1 and isinstance(state[1], Tensor):
                state[1].name = f"c{t + 1}"
            if kept is not None:
                kept.append(_entries(state))
        stacked = apply(ops.STACK, *outputs, axis=0, out=buffer) if buffer is not None else stack(outputs)
        states = None
        if kept is not None:  # in time order, whichever way the loop walked
            kept = kept[::-1] if reverse else kept
            states = (stacked,) + tuple(stack([k[e] for k in kept]) for e in range(1, len(kept[0])))
        return stacked, state, states


def _fast_loop(step, inputs, state, W_T, buffer, order, outputs, layer, direction):
    """The built-in cells' time loop without lengths or kept states: each h_t written into its row
    of ``buffer`` and named; returns the final state. The step label is set directly (the caller's
    ``with scope`` restores the label it found)."""
    labels = engine_state
    try:
        for t in order:
            labels.scope = StepScope(layer, t + 1, direction)
            state = step(inputs[t], state, W_T, buffer[t])
            h = outputs[t] = state if type(state) is not tuple else state[0]
            h.name = f"h{t + 1}"
            if h is not state:
                state[1].name = f"c{t + 1}"
    finally:
        labels.scope = StepScope(layer, None, direction)
    return state


def stack_states(finals: list):
    """Per-(layer, direction) final states stacked like PyTorch's h_n: (L*D, B, H) per state entry."""
    if isinstance(finals[0], Tensor):
        return stack(finals)
    return tuple(stack([f[e] for f in finals]) for e in range(len(finals[0])))


def split_states(state, count: int, batch: int, hidden_size, owner: str) -> list:
    """A stacked initial state ((L*D, B, H), or a tuple of those) as ``count`` per-direction states."""
    entries = _entries(state)
    checked = []
    for k, s in enumerate(entries):
        s = as_tensor(s)
        if s.ndim != 3 or s.shape[0] != count or s.shape[1] != batch or (k == 0 and hidden_size is not None
                                                                          and s.shape[2] != hidden_size):
            raise ValueError(f"{owner}: initial state entry {k} must have shape (num_layers*num_directions, B, "
                             f"hidden_size) = ({count}, {batch}, {hidden_size if hidden_size is not None else '*'}), "
                             f"got {s.shape}")
        checked.append(s)
    if isinstance(state, Tensor) or not isinstance(state, (tuple, list)):
        return [checked[0][k] for k in range(count)]
    return [tuple(s[k] for s in checked) for k in range(count)]


class Stack(Module):
    """Layers and directions of cells over one time loop (what ``Recurrent`` and nn.RNN/LSTM/GRU share).

    A subclass sets num_layers, num_directions, dropout, locked_dropout, batch_first and provides
    ``cell_at(layer, direction)``; it may run a direction its own way by overriding ``_direction``.
    Dropout acts on each layer's output before the next layer (never on the recurrent state); with
    ``locked_dropout`` its mask (1, B, features) is drawn once per call and shared by every time step.
    """

    num_layers, num_directions, dropout, batch_first, fused = 1, 1, 0.0, False, False
    locked_dropout = False

    @property
    def bidirectional(self) -> bool:
        """Two directions per layer."""
        return self.num_directions == 2

    def cell_at(self, layer: int, direction: int = 0):
        """The cell of one layer and direction."""
        raise NotImplementedError

    def _direction(self, layer, direction, cell, x, init, lengths, return_states):
        """One layer in one direction: unrolled through the shared time loop."""
        return unroll(cell, x, init, layer=layer, reverse=direction == 1, lengths=lengths,
                      return_states=return_states)

    def _run_stack(self, x, initial, lengths=None, return_states=False):
        """x time-major, initial None or a list of L*D per-direction states: (output (T, B, D*H) time-major,
        list of L*D final states, the top layer's per-step states or None)."""
        layer_input, finals, states = x, [], None
        for l in range(self.num_layers):
            outputs, top_states = [], []
            for d in range(self.num_directions):
                init = None if initial is None else initial[l * self.num_directions + d]
                wanted = return_states and l == self.num_layers - 1
                result = self._direction(l, d, self.cell_at(l, d), layer_input, init, lengths, wanted)
                outputs.append(result[0])
                finals.append(result[1])
                if wanted:
                    top_states.append(_entries(result[2]))
            layer_input = outputs[0] if len(outputs) == 1 else concatenate(outputs, axis=2)
            if l < self.num_layers - 1 and self.dropout:
                layer_input = F.dropout(layer_input, self.dropout, self.training,
                                        shared_axes=(0,) if self.locked_dropout else ())  # time-major here
            if top_states:
                states = tuple(e[0] if len(e) == 1 else concatenate(list(e), axis=2) for e in zip(*top_states))
        return layer_input, finals, states

    def _time_major(self, x):
        """x in time-major layout (swaps the first two axes when batch_first)."""
        return x.transpose((1, 0) + tuple(range(2, x.ndim))) if self.batch_first else x

    def _caller_layout(self, y):
        """A time-major result in the caller's layout."""
        return y.transpose((1, 0) + tuple(range(2, y.ndim))) if self.batch_first else y


class Recurrent(Stack):
    """Any cell, stacked: rec(x, state=None, lengths=None, return_states=False) -> (output, final[, states]).

    ``Recurrent(make_cell, input_size, hidden_size, num_layers=1, bidirectional=False, dropout=0.0,
    batch_first=False)`` builds one cell per layer and direction with ``make_cell(input_size,
    hidden_size)`` (a cell class or any factory); ``cells`` lists them in PyTorch's order (layer 0
    forward, layer 0 reverse, layer 1 forward, ...). Output (T, B, D*H); ``final`` stacks each state
    entry over layers and directions, (L*D, B, H), and an initial state is given the same way.

    ``Recurrent(cell)`` with a cell instance is the one-layer form: it takes and returns the cell's
    own state (B, H) (or its tuple). A cell is a Module with ``forward(x_t, state) -> state`` (a
    Tensor h, or a tuple whose first entry is h); the zero state comes from
    ``cell.initial_state(batch)`` when it has one, else zeros of (B, cell.hidden_size).
    ``return_states=True`` adds every step's state of the top layer (each entry (T, B, D*H)).
    ``locked_dropout=True`` draws the between-layer dropout mask once per call, shared across time.
    """

    def __init__(self, make_cell, input_size=None, hidden_size=None, num_layers=1, bidirectional=False,
                 dropout=0.0, batch_first=False, *, locked_dropout=False):
        self.batch_first = bool(batch_first)
        self.locked_dropout = check_flag("locked_dropout", locked_dropout)
        if isinstance(make_cell, Module):
            if input_size is not None or hidden_size is not None or num_layers != 1 or bidirectional or dropout:
                raise TypeError(f"Recurrent({type(make_cell).__name__}(...)): a cell instance is the one-layer form; "
                                "for layers and directions pass the class or a factory: "
                                "Recurrent(make_cell, input_size, hidden_size, num_layers, ...)")
            self.cell, self.single = make_cell, True
            self.cell_kind = getattr(make_cell, "kind", None) or type(make_cell).__name__
            return
        if not callable(make_cell):
            raise TypeError(f"Recurrent: expected a cell Module or a cell class/factory, got {type(make_cell).__name__}")
        if input_size is None or hidden_size is None:
            raise TypeError(f"Recurrent: expected a cell Module, or a cell class/factory with input_size and "
                            f"hidden_size (Recurrent(make_cell, input_size, hidden_size, ...)); got "
                            f"{getattr(make_cell, '__name__', type(make_cell).__name__)} without sizes")
        self.input_size = check_size("input_size", input_size)
        self.num_layers = check_size("num_layers", num_layers)
        size = check_size("hidden_size", hidden_size)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.dropout, self.num_directions, self.single = float(dropout), 2 if bidirectional else 1, False
        if self.dropout and self.num_layers == 1:
            warnings.warn("Recurrent: dropout acts between stacked layers; with num_layers=1 it does nothing",
                          stacklevel=2)
        sizes = [self.input_size] + [self.num_directions * size] * (self.num_layers - 1)
        cells = [make_cell(sizes[l], size) for l in range(self.num_layers) for _ in range(self.num_directions)]
        self.__dict__["cells"] = cells  # an attribute (parameters rnn.cells.0.*), read through the property
        for cell in cells:
            if not isinstance(cell, Module):
                raise TypeError(f"Recurrent: make_cell must build a cell Module, got {type(cell).__name__}")
        self._hidden = size
        first = self.cells[0]
        self.cell_kind = getattr(first, "kind", None) or type(first).__name__

    @property
    def cells(self) -> list:
        """Every cell in PyTorch's order (layer 0 forward, layer 0 reverse, layer 1 forward, ...);
        the one-layer form: [cell]."""
        return self.__dict__["cells"] if "cells" in self.__dict__ else [self.cell]

    @property
    def hidden_size(self):
        """The cells' hidden size (the one-layer form: the cell's, when it declares one)."""
        return getattr(self.cell, "hidden_size", None) if self.single else self._hidden

    def cell_at(self, layer: int, direction: int = 0):
        """The cell of one layer and direction."""
        if self.single:
            return self.cell
        return self.cells[layer * self.num_directions + direction]

    def forward(self, x, state=None, lengths=None, return_states=False):
        """x (T, B, ...) (or (B, T, ...) when batch_first) -> (output, final state[, states])."""
        x = as_tensor(x)
        if x.ndim < 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"Recurrent: expected input of shape (T, B, ...) with T, B >= 1, got {x.shape}")
        x = self._time_major(x)
        count = self.num_layers * self.num_directions
        if self.single:
            initial = None if state is None else [state]
        else:
            initial = None if state is None else split_states(state, count, x.shape[1], self._hidden, "Recurrent")
        output, finals, states = self._run_stack(x, initial, lengths, return_states)
        final = finals[0] if self.single else stack_states(finals)
        output = self._caller_layout(output)
        if not return_states:
            return output, final
        states = tuple(self._caller_layout(s) for s in states)
        return output, final, states[0] if len(states) == 1 and isinstance(finals[0], Tensor) else states


def check_flag(name: str, value) -> bool:
    """value as a bool; TypeError naming ``name`` unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _param_dtype(cell) -> np.dtype:
    """The dtype of a cell's first parameter (float64 for a cell without any)."""
    return next((p.dtype for p in cell.parameters()), np.dtype(np.float64))

