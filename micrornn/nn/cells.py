"""Recurrent cells built from engine primitives: the vanilla RNN, the LSTM and the GRU.

Each cell is one time step, written once in ``step``. A step reads its input through the
input weights already applied (``p_t = x_t U^T + b``): ``project`` does that for every step of a
sequence in one product (or one gather for integer inputs), so a time loop (``nn.recurrent``) only
pays for the recurrent product ``h_{t-1} W^T`` and the gates. ``cell(x, state)`` is the same step on
one input. Equations and gate order follow PyTorch (LSTM: i, f, g, o; GRU: r, z, n).
"""
from __future__ import annotations

import importlib
import re

import numpy as np

from micrornn.engine import ops
from micrornn.nn.functional import layer_norm as _layer_norm
from micrornn.nn.layers import check_size, uniform
from micrornn.nn.module import Module, Parameter
from micrornn.engine.random import default_rng
from micrornn.engine.tensor import Tensor, _leaf, apply, as_tensor, concatenate, matmul_add

NONLINEARITIES = ("tanh", "relu")
LN_EPS = 1e-5  # the eps inside the square root of every layer norm of the cells
_ACTIVATIONS = {"tanh": ops.TANH, "relu": ops.RELU}


def check_nonlinearity(nonlinearity):
    """'tanh', 'relu' or a callable Tensor -> Tensor; else a ValueError naming the choices."""
    if callable(nonlinearity) or nonlinearity in NONLINEARITIES:
        return nonlinearity
    raise ValueError(f"nonlinearity must be one of {NONLINEARITIES} or a callable built from "
                     f"Tensor ops, got {nonlinearity!r}")


def expect_shape(t: Tensor, name: str, shape) -> None:
    """ValueError naming ``name`` unless t has ``shape`` (None entries match any size)."""
    if t.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {t.shape}")


class _Cell(Module):
    """What the three cells share: U (G, I), W (G, H), b (G,), input projection, zero state.

    Each built-in class declares, once, what the rest of micrornn reads about it (interop, limits,
    config, CLI, bench, the analytic BPTT, pictures): ``kind``, ``gate_names``, ``state_names``,
    ``blocks`` (the row blocks of U, W and b: one per gate, the vanilla cell's single
    pre-activation "a") and ``parameter_shapes`` (every parameter's name and shape).
    """

    kind: str | None = None
    gate_names: tuple = ()
    state_names: tuple = ("h",)
    blocks: tuple = ("a",)

    @property
    def cell_kind(self):
        """The cell's kind (the older name of ``kind``)."""
        return self.kind

    layer_norm: bool = False

    @classmethod
    def parameter_shapes(cls, input_size: int, hidden_size: int, bias: bool = True, layer_norm: bool = False) -> dict:
        """{parameter name: shape} in named_parameters() order, for these sizes."""
        G = len(cls.blocks) * hidden_size
        shapes = {"U": (G, input_size), "W": (G, hidden_size)}
        if bias:
            shapes["b"] = (G,)
        return shapes

    @staticmethod
    def _layer_norm_shapes(G: int, hidden_size: int, bias: bool, lstm: bool) -> dict:
        """The gains (and the LSTM's cell-state shift) that layer_norm=True adds."""
        shapes = {"gain_x": (G,), "gain_h": (G,)}
        if lstm:
            shapes["gain_c"] = (hidden_size,)
            if bias:
                shapes["bias_c"] = (hidden_size,)
        return shapes

    def _init_weights(self, input_size, hidden_size, bias, dtype, rng, layer_norm=False):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        if not isinstance(layer_norm, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}: layer_norm must be True or False, got {layer_norm!r}")
        self.layer_norm = bool(layer_norm)
        if self.layer_norm and self.hidden_size < 2:
            raise ValueError(f"{type(self).__name__}: layer_norm needs hidden_size >= 2 (a block of one unit "
                             f"normalizes to its shift alone, whatever the input), got {hidden_size}")
        rng, H = default_rng(rng), self.hidden_size
        bound = 1.0 / np.sqrt(H)  # PyTorch's init: U(-1/sqrt(H), 1/sqrt(H))
        for name, shape in self.parameter_shapes(self.input_size, H, True, self.layer_norm).items():
            if name.startswith("gain_"):  # layer-norm gains start at 1, the cell-state shift at 0
                setattr(self, name, Parameter(np.ones(shape, dtype=dtype)))
            elif name == "bias_c":
                setattr(self, name, Parameter(np.zeros(shape, dtype=dtype)) if bias else None)
            else:
                setattr(self, name, Parameter(uniform(rng, bound, shape, dtype)) if bias or name in "UW" else None)
        return rng, bound

    def _normalized(self, a, gain, shift=None) -> Tensor:
        """LN of each gate block of a (..., G*H) over its H units: gain * (a - mean) / sqrt(var + eps) + shift."""
        G, H = len(self.blocks), self.hidden_size
        blocks = a.reshape(*a.shape[:-1], G, H)
        out = _layer_norm(blocks, gain.reshape(G, H), None if shift is None else shift.reshape(G, H), LN_EPS)
        return out.reshape(a.shape)

    def initial_state(self, batch, dtype=None):
        """The zero state for ``batch`` sequences: h (B, H) zeros."""
        return _leaf(np.zeros((batch, self.hidden_size), dtype=dtype or self.U.dtype))

    def project(self, x) -> Tensor:
        """x U^T + b for every leading position of x (..., I) (layer_norm: LN(x U^T; gain_x, b));
        integer x (T, B) are one-hot indices: a gather of the rows of [U^T + b] instead of a product."""
        x = as_tensor(x)
        if self.layer_norm:  # LN(x U^T; gain_x, b): the bias is the shift of the normalized input part
            return self._normalized(self.U.T[x.data] if x.dtype.kind in "iu" else x @ self.U.T, self.gain_x, self.b)
        if x.dtype.kind in "iu":
            table = self.U.T if self.b is None else self.U.T + self.b
            return table[x.data]
        projected = x @ self.U.T
        return projected if self.b is None else projected + self.b

    def _step_input(self, x, h) -> Tensor:
        """Check one step's x (B, I) against the cell and h (B, H) (None allowed); return x U^T + b."""
        x = as_tensor(x)
        expect_shape(x, "x", (None, self.input_size))
        if h is not None:
            expect_shape(as_tensor(h), "h", (x.shape[0], self.hidden_size))
        return self.project(x)


class RNNCell(_Cell):
    """One step: h_next = act(x U^T + h W^T + b), U (hidden, input), W (hidden, hidden), b (hidden,)."""

    kind = "rnn"

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", bias=True, dtype=np.float64, rng=None):
        self.nonlinearity = check_nonlinearity(nonlinearity)
        self._init_weights(input_size, hidden_size, bias, dtype, rng)

    @property
    def act(self):
        """The nonlinearity as a function of a Tensor."""
        if callable(self.nonlinearity):
            return self.nonlinearity
        return Tensor.tanh if self.nonlinearity == "tanh" else Tensor.relu

    def forward(self, x, h=None) -> Tensor:
        """x (B, input), h (B, hidden) or None (zeros) -> h_next (B, hidden)."""
        return self.step(self._step_input(x, h), None if h is None else as_tensor(h), self.W.T)

    def step(self, p, h, W_T, out=None) -> Tensor:
        """h_t = act(p_t + h_{t-1} W^T) from p_t = x_t U^T + b; h None is the zero state.
        ``out`` (a row of the caller's states buffer) receives h_t when the nonlinearity is named."""
        pre = p if h is None else matmul_add(h, W_T, p)
        act = self.nonlinearity
        if type(act) is str:
            return apply(_ACTIVATIONS[act], pre, out=out)
        return act(pre)

    def concatenated_weight(self) -> Tensor:
        """[U W]: the (hidden, input + hidden) weight of the same cell as one linear layer."""
        return concatenate([self.U, self.W], axis=1)

    def forward_concatenated(self, x, h) -> Tensor:
        """The same step as one product: act([x h] [U W]^T + b)."""
        x, h = as_tensor(x), as_tensor(h)
        pre = concatenate([x, h], axis=1) @ self.concatenated_weight().T
        return self.act(pre if self.b is None else pre + self.b)


class LSTMCell(_Cell):
    """Long short-term memory: cell(x, (h, c)) -> (h, c); U (4H, I), W (4H, H), b (4H,), gates i, f, g, o.

    i = σ(x U_i^T + h W_i^T + b_i), f = σ(..f), g = tanh(..g), o = σ(..o),
    c' = f * c + i * g,  h' = o * tanh(c').

    layer_norm=True (Ba, Kiros & Hinton 2016): LN(v; γ, β) = γ * (v - mean(v)) / sqrt(var(v) + 1e-5) + β,
    taken over the H units of each gate block k (i, f, g, o) separately for the input and recurrent parts:

        â_k = LN(x U_k^T; gain_x[k], b_k) + LN(h W_k^T; gain_h[k], 0),   i = σ(â_i), f, g, o likewise,
        c' = f * c + i * g,   h' = o * tanh(LN(c'; gain_c, bias_c)).

    gain_x, gain_h (4H,) and gain_c (H,) start at 1, bias_c (H,) at 0 (absent, with b, when bias=False).
    """

    kind = "lstm"
    gate_names = blocks = ("i", "f", "g", "o")
    state_names = ("h", "c")

    @classmethod
    def parameter_shapes(cls, input_size: int, hidden_size: int, bias: bool = True, layer_norm: bool = False) -> dict:
        """{parameter name: shape}: U, W, b, plus gain_x, gain_h, gain_c, bias_c with layer_norm."""
        shapes = super().parameter_shapes(input_size, hidden_size, bias)
        return {**shapes, **cls._layer_norm_shapes(4 * hidden_size, hidden_size, bias, True)} if layer_norm else shapes

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float64, rng=None, *, layer_norm=False):
        self._init_weights(input_size, hidden_size, bias, dtype, rng, layer_norm)

    def initial_state(self, batch, dtype=None):
        """The zero state (h, c), each (B, H)."""
        return super().initial_state(batch, dtype), super().initial_state(batch, dtype)

    def forward(self, x, state=None):
        """x (B, input), state (h, c) or None (zeros) -> (h_next, c_next)."""
        if state is None:
            return self.step(self._step_input(x, None), None, self.W.T)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"LSTMCell: state must be a tuple (h, c) or None, got {type(state).__name__}")
        h, c = as_tensor(state[0]), as_tensor(state[1])
        p = self._step_input(x, h)
        expect_shape(c, "c", (p.shape[0], self.hidden_size))
        return self.step(p, (h, c), self.W.T)

    def gates(self, x, state=None) -> dict:
        """{'i', 'f', 'g', 'o'}: each gate's activation (B, H) at input x (B, I) and state (h, c)."""
        state = None if state is None else (as_tensor(state[0]), as_tensor(state[1]))
        p = self._step_input(x, None if state is None else state[0])
        return dict(zip(self.gate_names, self._gate_values(p, state, self.W.T)))

    def _gate_values(self, p, state, W_T) -> tuple:
        """The gate activations (i, f, g, o) from p_t = x_t U^T + b and the state (None: zeros)."""
        H = self.hidden_size
        if self.layer_norm:  # p = LN(x U^T; gain_x, b); the recurrent part is normalized apart (LN(0) = 0)
            a = p if state is None else p + self._normalized(state[0] @ W_T, self.gain_h)
        else:
            a = p if state is None else matmul_add(state[0], W_T, p)  # (B, 4H): blocks i, f, g, o
        return a[:, :H].sigmoid(), a[:, H:2 * H].sigmoid(), a[:, 2 * H:3 * H].tanh(), a[:, 3 * H:].sigmoid()

    def step(self, p, state, W_T, out=None):
        """(h_t, c_t) from p_t = x_t U^T + b and (h_{t-1}, c_{t-1}); state None is the zero state."""
        i, f, g, o = self._gate_values(p, state, W_T)
        c = i * g if state is None else f * state[1] + i * g  # with c_0 = 0 the forget term is 0
        if self.layer_norm:  # h = o * tanh(LN(c; gain_c, bias_c)), one block of H units
            return o * _layer_norm(c, self.gain_c, self.bias_c, LN_EPS).tanh(), c
        return o * c.tanh(), c


class GRUCell(_Cell):
    """Gated recurrent unit: cell(x, h) -> h; U (3H, I), W (3H, H), b (3H,), b_hn (H,), gates r, z, n.

    r = σ(x U_r^T + h W_r^T + b_r), z = σ(..z), n = tanh(x U_n^T + b_n + r * (h W_n^T + b_hn)),
    h' = (1 - z) * n + z * h.   (b_r, b_z are PyTorch's b_ih + b_hh; b_n is b_in; b_hn is b_hn.)

    layer_norm=True (Ba, Kiros & Hinton 2016): LN(v; γ, β) = γ * (v - mean(v)) / sqrt(var(v) + 1e-5) + β over
    the H units of each block k (r, z, n), the input and recurrent parts apart, so r still scales the
    whole recurrent part of n:

        r = σ(LN(x U_r^T; gain_x[r], b_r) + LN(h W_r^T; gain_h[r], 0)),   z likewise,
        n = tanh(LN(x U_n^T; gain_x[n], b_n) + r * LN(h W_n^T; gain_h[n], b_hn)),   h' = (1 - z) * n + z * h.

    gain_x, gain_h (3H,) start at 1.
    """

    kind = "gru"
    gate_names = blocks = ("r", "z", "n")

    @classmethod
    def parameter_shapes(cls, input_size: int, hidden_size: int, bias: bool = True, layer_norm: bool = False) -> dict:
        """{parameter name: shape}: U, W, b as for every cell, plus b_hn (H,) inside r * (...), plus
        gain_x, gain_h (3H,) with layer_norm."""
        shapes = super().parameter_shapes(input_size, hidden_size, bias)
        shapes = {**shapes, "b_hn": (hidden_size,)} if bias else shapes
        return {**shapes, **cls._layer_norm_shapes(3 * hidden_size, hidden_size, bias, False)} if layer_norm else shapes

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float64, rng=None, *, layer_norm=False):
        self._init_weights(input_size, hidden_size, bias, dtype, rng, layer_norm)

    def forward(self, x, h=None) -> Tensor:
        """x (B, input), h (B, hidden) or None (zeros) -> h_next (B, hidden)."""
        return self.step(self._step_input(x, h), None if h is None else as_tensor(h), self.W.T)

    def gates(self, x, h=None) -> dict:
        """{'r', 'z', 'n'}: each gate's activation (B, H) at input x (B, I) and state h."""
        h = None if h is None else as_tensor(h)
        return dict(zip(self.gate_names, self._gate_values(self._step_input(x, h), h, self.W.T)))

    def _gate_values(self, p, h, W_T) -> tuple:
        """The gate activations (r, z, n) from p_t = x_t U^T + b and h_{t-1} (None: zeros)."""
        H = self.hidden_size
        if h is None:  # h W^T = 0: r only scales b_hn
            rz = p[:, :2 * H].sigmoid()
            hn = self.b_hn
        else:
            hW = h @ W_T  # (B, 3H); its n block stays apart from p_n because r multiplies it
            if self.layer_norm:  # LN(h W^T; gain_h, 0) per block; b_hn shifts the n block below
                hW = self._normalized(hW, self.gain_h)
            rz = (p[:, :2 * H] + hW[:, :2 * H]).sigmoid()
            hn = hW[:, 2 * H:] if self.b_hn is None else hW[:, 2 * H:] + self.b_hn
        r, z = rz[:, :H], rz[:, H:]
        n_pre = p[:, 2 * H:] if hn is None else p[:, 2 * H:] + r * hn
        return r, z, n_pre.tanh()

    def step(self, p, h, W_T, out=None) -> Tensor:
        """h_t from p_t = x_t U^T + b and h_{t-1}; h None is the zero state."""
        _, z, n = self._gate_values(p, h, W_T)
        return n - z * n if h is None else n + z * (h - n)  # (1 - z) n + z h


CELLS: dict = {cls.kind: cls for cls in (RNNCell, LSTMCell, GRUCell)}  # the registry: kind -> cell class

_IMPORT_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_import_name(name) -> bool:
    """True for 'package.module:Class' (how a user cell is named on a command line and in a checkpoint)."""
    return isinstance(name, str) and bool(_IMPORT_NAME.match(name))


def import_cell(name: str):
    """The cell class/factory named 'package.module:Class', imported now (the caller asked for it by
    name: a checkpoint alone never leads here). ValueError naming what failed."""
    if not is_import_name(name):
        raise ValueError(f"cell {name!r}: expected one of {tuple(CELLS)} or an import name 'package.module:Class'")
    module_name, attr = name.split(":")
    try:
        found = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cell {name}: cannot import {module_name}: {e}") from None
    for part in attr.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ValueError(f"cell {name}: {module_name} has no {attr}")
    if not callable(found):
        raise ValueError(f"cell {name}: {attr} is a {type(found).__name__}, not a cell class or factory")
    return found
