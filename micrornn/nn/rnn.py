"""Recurrent layers (RNN, LSTM, GRU) and the SequenceModel: stacked, optionally bidirectional.

Unrolled (the default), every step of every layer is a handful of graph nodes made by the cell's
own ``step`` inside the shared time loop ``nn.recurrent.unroll``, so backpropagation through time
is the engine's graph traversal. ``fused=True`` instead runs each layer and direction as one
primitive whose forward and VJP are the hand-derived routines of ``micrornn.bptt``.
Argument names, output shapes and the final-state layout follow PyTorch.
"""
from __future__ import annotations

import numpy as np

from micrornn.nn import functional as F

from micrornn.bptt import fused as fused_ops
from micrornn.bptt import fused_layernorm as fused_ln_ops
from micrornn.nn.cells import (CELLS, NONLINEARITIES, GRUCell, LSTMCell, RNNCell, check_nonlinearity,
                               expect_shape as _expect)
from micrornn.nn.layers import Linear, check_size
from micrornn.nn.sizes import check_model_memory
from micrornn.nn.module import Module
from micrornn.bptt.shared import check_lengths, length_mask, reverse_index
from micrornn.nn.recurrent import Recurrent, Stack, StepScope, check_flag, stack_states
from micrornn.engine.random import default_rng
from micrornn.engine.tensor import Tensor, _leaf, apply, as_tensor, scope, stack

__all__ = ["RNN", "LSTM", "GRU", "SequenceModel", "RNNCell", "LSTMCell", "GRUCell", "StepScope",
           "NONLINEARITIES", "CELL_KINDS"]

CELL_KINDS = tuple(CELLS)  # the built-in kinds, from the registry


class _Layers(Stack):
    """The stack shared by RNN, LSTM and GRU: cells[l] (and reverse_cells[l]) for each layer, the
    shared time loop (``Stack``) unrolled, or each layer and direction as one fused primitive."""

    cell_kind: str | None = None
    _fused_takes_indices = False  # whether the fused primitive gathers rows for index inputs itself

    def _setup(self, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, fused,
               dtype, rng, make_cell, locked_dropout=False):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.bias, self.batch_first, self.fused = bool(bias), bool(batch_first), bool(fused)
        self.dropout = float(dropout)
        self.locked_dropout = check_flag("locked_dropout", locked_dropout)
        self.num_directions = 2 if bidirectional else 1
        rng, D = default_rng(rng), self.num_directions
        check_model_memory(type(self).__name__, {"input_size": input_size, "hidden_size": hidden_size,
                           "num_layers": num_layers}, dtype, len(CELLS[self.cell_kind].blocks), D)  # before any array
        sizes = [self.input_size] + [D * self.hidden_size] * (self.num_layers - 1)
        self.cells = [make_cell(sizes[l], self.hidden_size, bias, dtype, rng) for l in range(self.num_layers)]
        if bidirectional:
            self.reverse_cells = [make_cell(sizes[l], self.hidden_size, bias, dtype, rng)
                                  for l in range(self.num_layers)]

    def cell_at(self, layer: int, direction: int = 0):
        """The cell of one layer and direction (cells[layer] or reverse_cells[layer])."""
        return self.reverse_cells[layer] if direction else self.cells[layer]

    def _run(self, x, initial, lengths=None, return_states=False):
        """x as given by the caller, initial: None or a list of D*L per-direction states.
        Returns (output (T, B, D*H) in the caller's layout, list of D*L final states, per-step states)."""
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[1] if self.batch_first else x.shape[0], self._batch(x))
            lengths = None if lengths.min() == (x.shape[1] if self.batch_first else x.shape[0]) else lengths
        output, finals, states = self._run_stack(self._time_major(x), initial, lengths, return_states)
        states = None if states is None else tuple(self._caller_layout(s) for s in states)
        return self._caller_layout(output), finals, states

    def _direction(self, layer, direction, cell, x, init, lengths, return_states):
        """One layer in one direction: the shared time loop, or the fused primitive."""
        if not self.fused:
            return super()._direction(layer, direction, cell, x, init, lengths, return_states)
        return self._direction_fused(layer, direction, cell, x, init, lengths, return_states)

    def _direction_fused(self, layer, direction, cell, x, init, lengths, return_states):
        """One layer in one direction as a single primitive whose VJP is the analytic BPTT.
        The reverse direction runs the same primitive on the time-reversed input (each sequence
        reversed within its length); padded steps keep the state and output 0."""
        with scope(StepScope(layer, None, direction)):
            if x.dtype.kind in "iu" and not self._fused_takes_indices:  # dense one-hot rows for these
                x = _leaf(np.eye(cell.input_size, dtype=cell.U.dtype))[x.data]  # a gather: compile replays it
            T, B = x.shape[0], x.shape[1]
            mask = None if lengths is None else length_mask(lengths, T)
            flip = (slice(None, None, -1) if mask is None else reverse_index(lengths, T)) if direction else None
            if flip is not None:
                x = x[flip]
            outputs, final, every_state = self._fused_call(cell, x, init, _zeros(cell, (B, cell.hidden_size)), mask)
            states = every_state() if return_states else ()  # the per-step states: slices made only when asked
            if flip is not None:
                outputs, states = outputs[flip], tuple(s[flip] for s in states)
            if mask is not None:
                keep = _leaf(mask[:, :, None].astype(outputs.dtype))
                outputs, states = outputs * keep, tuple(s * keep for s in states)
            if not return_states:
                return outputs, final
            return outputs, final, states[0] if len(states) == 1 else states

    def _check_input(self, x) -> Tensor:
        """x as a Tensor of rank 3 (floats) or rank 2 (indices) with the right input size."""
        x, name = as_tensor(x), type(self).__name__
        if x.dtype.kind in "iu":
            if x.ndim != 2:
                raise ValueError(f"{name}: integer input must be indices of shape (T, B), got shape {x.shape}")
            if x.size and (x.data.min() < 0 or x.data.max() >= self.input_size):
                raise ValueError(f"{name}: input indices must lie in 0..{self.input_size - 1}, "
                                 f"got min {x.data.min()} and max {x.data.max()}")
        elif x.ndim != 3 or x.shape[2] != self.input_size:
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(f"{name}: expected input of shape {layout} with input_size={self.input_size}, "
                             f"got shape {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name}: input has an empty time or batch axis, shape {x.shape}")
        return x

    def _check_state(self, h, name, batch):
        """A (D*num_layers, B, H) state as a Tensor."""
        h = as_tensor(h)
        _expect(h, name, (self.num_directions * self.num_layers, batch, self.hidden_size))
        return h

    def _batch(self, x) -> int:
        return x.shape[0] if self.batch_first else x.shape[1]


def _zeros(cell, shape) -> Tensor:
    """A constant zero tensor in the cell's dtype (a missing initial state or bias of a fused layer)."""
    return _leaf(np.zeros(shape, dtype=cell.U.dtype))


def _fused_primitive(name):
    """fused_ops.<name>, or a clear error while the analytic routine does not exist yet."""
    prim = getattr(fused_ops, name, None)
    if prim is None:
        raise NotImplementedError(f"fused=True needs micrornn.bptt.fused.{name}, which this version lacks; "
                                  "use fused=False")
    return prim


class RNN(_Layers):
    """Stacked RNN layers: rnn(x, h0=None) -> (output (T, B, D*H), h_n (D*num_layers, B, H))."""

    cell_kind = RNNCell.kind
    _fused_takes_indices = True

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, fused=False, dtype=np.float64, rng=None, *, dropout=0.0,
                 bidirectional=False, locked_dropout=False):
        self.nonlinearity = check_nonlinearity(nonlinearity)
        if fused and callable(nonlinearity):
            raise ValueError("RNN: fused=True needs nonlinearity 'tanh' or 'relu' (the analytic BPTT knows "
                             "only those); a callable nonlinearity runs unrolled (fused=False)")
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, fused,
                    dtype, rng, lambda i, h, b, dt, r: RNNCell(i, h, nonlinearity, b, dt, r), locked_dropout)

    def forward(self, x, h0=None, lengths=None, return_states=False):
        """x (T, B, I) floats, or (T, B) integer indices standing for one-hot inputs; time-major
        unless batch_first; lengths (B,) or None. Returns the top layer's states and every layer's
        last state (and with return_states every step's state of the top layer, here the output)."""
        x = self._check_input(x)
        initial = None if h0 is None else list(self._check_state(h0, "h0", self._batch(x)))
        output, finals, states = self._run(x, initial, lengths, return_states)
        return (output, stack(finals)) + ((states[0],) if return_states else ())

    def _fused_call(self, cell, x, h0, zeros, mask=None):
        b = cell.b if cell.b is not None else _zeros(cell, cell.hidden_size)
        hs = apply(fused_ops.RNN_LAYER, x, cell.U, cell.W, b, zeros if h0 is None else h0,
                   nonlinearity=cell.nonlinearity, mask=mask)
        return hs, hs[x.shape[0] - 1], lambda: (hs,)


class LSTM(_Layers):
    """Stacked LSTM layers: lstm(x, state=None) -> (output (T, B, D*H), (h_n, c_n)), each (D*L, B, H)."""

    cell_kind = LSTMCell.kind

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, *,
                 dropout=0.0, bidirectional=False, fused=False, dtype=np.float64, rng=None, locked_dropout=False,
                 layer_norm=False):
        self.layer_norm = check_flag("layer_norm", layer_norm)
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, fused,
                    dtype, rng, lambda i, h, b, dt, r: LSTMCell(i, h, b, dt, r, layer_norm=self.layer_norm),
                    locked_dropout)

    def forward(self, x, state=None, lengths=None, return_states=False):
        """x as for RNN; state (h0, c0), each (D*num_layers, B, H), or None (zeros); lengths (B,) or
        None; return_states adds every step's (h_t, c_t) of the top layer, each (T, B, D*H)."""
        x = self._check_input(x)
        initial = None
        if state is not None:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"LSTM: state must be a tuple (h0, c0) or None, got {type(state).__name__}")
            h0 = self._check_state(state[0], "h0", self._batch(x))
            c0 = self._check_state(state[1], "c0", self._batch(x))
            initial = [(h0[k], c0[k]) for k in range(h0.shape[0])]
        output, finals, states = self._run(x, initial, lengths, return_states)
        return (output, stack_states(finals)) + ((states,) if return_states else ())

    def _fused_call(self, cell, x, init, zeros, mask=None):
        H, T = cell.hidden_size, x.shape[0]
        b = cell.b if cell.b is not None else _zeros(cell, 4 * H)
        h0, c0 = (zeros, zeros) if init is None else init
        if cell.layer_norm:
            bias_c = cell.bias_c if cell.bias_c is not None else _zeros(cell, H)
            hc = apply(fused_ln_ops.LSTM_LN_LAYER, x, cell.U, cell.W, b, cell.gain_x, cell.gain_h, cell.gain_c,
                       bias_c, h0, c0, mask=mask)
        else:
            hc = apply(_fused_primitive("LSTM_LAYER"), x, cell.U, cell.W, b, h0, c0, mask=mask)  # (T, B, 2H): [h_t c_t]
        hs = hc[:, :, :H]
        return hs, (hc[T - 1, :, :H], hc[T - 1, :, H:]), lambda: (hs, hc[:, :, H:])


class GRU(_Layers):
    """Stacked GRU layers: gru(x, h0=None) -> (output (T, B, D*H), h_n (D*num_layers, B, H))."""

    cell_kind = GRUCell.kind

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, *,
                 dropout=0.0, bidirectional=False, fused=False, dtype=np.float64, rng=None, locked_dropout=False,
                 layer_norm=False):
        self.layer_norm = check_flag("layer_norm", layer_norm)
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, fused,
                    dtype, rng, lambda i, h, b, dt, r: GRUCell(i, h, b, dt, r, layer_norm=self.layer_norm),
                    locked_dropout)

    def forward(self, x, h0=None, lengths=None, return_states=False):
        """x as for RNN; h0 (D*num_layers, B, H) or None (zeros); lengths (B,) or None."""
        x = self._check_input(x)
        initial = None if h0 is None else list(self._check_state(h0, "h0", self._batch(x)))
        output, finals, states = self._run(x, initial, lengths, return_states)
        return (output, stack(finals)) + ((states[0],) if return_states else ())

    def _fused_call(self, cell, x, h0, zeros, mask=None):
        H = cell.hidden_size
        b = cell.b if cell.b is not None else _zeros(cell, 3 * H)
        b_hn = cell.b_hn if cell.b_hn is not None else _zeros(cell, H)
        if cell.layer_norm:
            hs = apply(fused_ln_ops.GRU_LN_LAYER, x, cell.U, cell.W, b, b_hn, cell.gain_x, cell.gain_h,
                       zeros if h0 is None else h0, mask=mask)
        else:
            hs = apply(_fused_primitive("GRU_LAYER"), x, cell.U, cell.W, b, b_hn, zeros if h0 is None else h0, mask=mask)
        return hs, hs[x.shape[0] - 1], lambda: (hs,)


def cell_import_name(make_cell) -> str:
    """'package.module:Class' of a cell class or factory (what a checkpoint records for a user cell)."""
    module, name = getattr(make_cell, "__module__", None), getattr(make_cell, "__qualname__", None)
    if not module or not name or "<" in name:
        raise ValueError(f"{make_cell!r} has no import name (a lambda or a local class): define the cell at the "
                         "top level of a module to record it")
    return f"{module}:{name}"


class SequenceModel(Module):
    """A recurrent stack followed by a linear head: model(x, h0=None, lengths=None) -> (logits (T, B, O), h_n).

    cell: "rnn", "lstm" or "gru" (nn.RNN/LSTM/GRU, unrolled or fused), or a cell class/factory
    ``make_cell(input_size, hidden_size)`` stacked by ``nn.Recurrent`` (index inputs reach it as one-hot
    rows (B, input_size), float inputs as they are). For the LSTM, h0 and h_n are (h, c) tuples.

    Regularization, in training mode only (``model.eval()`` turns it off): ``dropout`` between stacked
    layers; ``input_dropout`` drops whole input vectors (a character's one-hot row at (t, b));
    ``output_dropout`` drops the top layer's outputs before the head; ``locked_dropout=True`` draws
    each of these masks once per sequence and call, shape (1, B, features), shared by every time step
    (for one-hot inputs: a character dropped from the whole sequence). The recurrent state is never
    dropped. Masks come from micrornn's seeded generator; survivors are scaled by 1/(1-p).

    layer_norm=True (lstm, gru only) normalizes the gate blocks: see LSTMCell and GRUCell.
    """

    def __init__(self, input_size, hidden_size, output_size, num_layers=1, nonlinearity="tanh",
                 fused=False, bias=True, batch_first=False, dtype=np.float64, rng=None, *, cell="rnn",
                 bidirectional=False, dropout=0.0, input_dropout=0.0, output_dropout=0.0, locked_dropout=False,
                 layer_norm=False):
        rng = default_rng(rng)
        if check_flag("layer_norm", layer_norm) and cell not in ("lstm", "gru"):
            raise ValueError(f"layer_norm=True needs cell='lstm' or 'gru' (their cells normalize gate blocks); "
                             f"got cell={getattr(cell, '__name__', cell)!r}")
        self.input_dropout = F.check_probability("input_dropout", input_dropout)
        self.output_dropout = F.check_probability("output_dropout", output_dropout)
        self.locked_dropout = locked = check_flag("locked_dropout", locked_dropout)
        check_size("output_size", output_size)  # name the argument the caller used, not Linear's
        check_model_memory("SequenceModel", {"input_size": input_size, "hidden_size": hidden_size,  # before any array
                           "output_size": output_size, "num_layers": num_layers}, dtype,
                           len(CELLS[cell].blocks) if isinstance(cell, str) and cell in CELLS else 1, 1 + bool(bidirectional))
        if isinstance(cell, str) and cell not in CELL_KINDS:
            raise ValueError(f"cell must be one of {CELL_KINDS} or a cell class/factory, got {cell!r}")
        if not isinstance(cell, str) and not callable(cell):
            raise TypeError(f"cell must be one of {CELL_KINDS} or a cell class/factory, got {type(cell).__name__}")
        if cell == "rnn":
            self.rnn = RNN(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first, fused, dtype,
                           rng, dropout=dropout, bidirectional=bidirectional, locked_dropout=locked)
        elif isinstance(cell, str):
            if nonlinearity != "tanh":
                raise ValueError(f"nonlinearity applies to cell='rnn' only; the {cell.upper()} has fixed "
                                 f"gates, got nonlinearity={nonlinearity!r}")
            layer = LSTM if cell == "lstm" else GRU
            self.rnn = layer(input_size, hidden_size, num_layers, bias, batch_first, dropout=dropout,
                             bidirectional=bidirectional, fused=fused, dtype=dtype, rng=rng, locked_dropout=locked,
                             layer_norm=layer_norm)
        else:
            name = getattr(cell, "__name__", type(cell).__name__)
            if fused:
                raise ValueError(f"fused=True needs a built-in cell ({', '.join(CELL_KINDS)}); {name} runs unrolled")
            if nonlinearity != "tanh":
                raise ValueError(f"nonlinearity applies to cell='rnn' only, not to {name}")
            self.rnn = Recurrent(cell, input_size, hidden_size, num_layers, bidirectional, dropout, batch_first,
                                 locked_dropout=locked)
            if any(p.dtype != np.dtype(dtype) for p in self.rnn.parameters()):
                self.rnn.astype(dtype)  # the model's dtype holds for the user's cells too (one dtype per op)
            self.rnn.cell_class = cell  # recorded (as its import name) by config
        self.head = Linear(self.rnn.num_directions * hidden_size, output_size, bias=bias, dtype=dtype, rng=rng)

    @property
    def config(self) -> dict:
        """The constructor arguments (JSON-friendly), to rebuild the same architecture; a user cell
        appears as its import name 'package.module:Class'."""
        r = self.rnn
        user = getattr(r, "cell_class", None)
        return {"input_size": r.input_size, "hidden_size": r.hidden_size, "output_size": self.head.out_features,
                "num_layers": r.num_layers, "nonlinearity": getattr(r, "nonlinearity", "tanh"),
                "fused": r.fused, "bias": getattr(r, "bias", self.head.bias is not None), "batch_first": r.batch_first,
                "dtype": str(self.head.weight.dtype), "cell": r.cell_kind if user is None else cell_import_name(user),
                "bidirectional": r.bidirectional, "dropout": r.dropout, "input_dropout": self.input_dropout,
                "output_dropout": self.output_dropout, "locked_dropout": self.locked_dropout,
                "layer_norm": bool(getattr(r, "layer_norm", False))}

    def _rnn_input(self, x):
        """x for the stack: index inputs become one-hot rows for a user cell (built-in layers gather rows
        themselves) and whenever input dropout acts, which then scales each row by its mask."""
        x = as_tensor(x)
        dropping = self.training and self.input_dropout > 0
        if x.dtype.kind in "iu" and (dropping or isinstance(self.rnn, Recurrent)):
            if x.ndim != 2:
                raise ValueError(f"SequenceModel: integer input must be indices of shape (T, B), got shape {x.shape}")
            if x.size and (x.data.min() < 0 or x.data.max() >= self.rnn.input_size):
                raise ValueError(f"SequenceModel: input indices must lie in 0..{self.rnn.input_size - 1}, "
                                 f"got min {x.data.min()} and max {x.data.max()}")
            # a gather from the identity (an op, so micrornn.compile replays it with each call's indices)
            x = _leaf(np.eye(self.rnn.input_size, dtype=self.head.weight.dtype))[x.data]
        if dropping and x.ndim == 3:  # (a wrong shape is left for the layer to name)
            return F.dropout(x, self.input_dropout, shared_axes=(self._time_axis(),) if self.locked_dropout else (-1,))
        return x

    def _output(self, states):
        """The top layer's outputs as the head reads them: with output dropout while training."""
        if not (self.training and self.output_dropout > 0):
            return states
        return F.dropout(states, self.output_dropout, shared_axes=(self._time_axis(),) if self.locked_dropout else ())

    def _time_axis(self) -> int:
        """Where time is in the caller's layout."""
        return 1 if self.rnn.batch_first else 0

    def forward(self, x, h0=None, lengths=None):
        """Logits o_t = h_t V^T + c for every step (one product over all steps) and h_n."""
        states, h_n = self.rnn(self._rnn_input(x), h0, lengths=lengths)
        return self.head(self._output(states)), h_n

    def loss(self, x, targets, h0=None, reduction="sum", lengths=None):
        """(L = sum_t L_t softmax cross-entropy (or mean / none), h_n); with lengths only the real
        steps' targets count (the padded ones may hold anything)."""
        if lengths is not None:
            logits, h_n = self(x, h0, lengths)
            T = logits.shape[1] if self.rnn.batch_first else logits.shape[0]
            mask = length_mask(np.asarray(lengths), T)
            return F.cross_entropy(logits, targets, reduction, mask=mask.T if self.rnn.batch_first else mask), h_n
        if isinstance(self.rnn, _Layers) and self.rnn.fused and reduction != "none":  # head and loss as one node too
            states, h_n = self.rnn(self._rnn_input(x), h0)
            head = self.head
            return F.linear_cross_entropy(self._output(states), head.weight, head.bias, targets, reduction), h_n
        logits, h_n = self(x, h0)
        return F.cross_entropy(logits, targets, reduction=reduction), h_n
