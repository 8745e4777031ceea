"""Gate activity of LSTM and GRU layers over time: how open each gate is, and how often it saturates.

A sigmoid gate near 0 or 1 passes (almost) no gradient through its own pre-activation (σ' = σ(1-σ)
is below 0.05 there), while a forget gate f near 1 keeps the cell-state path c_{t-1} -> c_t open.
The gates are recomputed here in NumPy from the layer's weights with the cells' equations
(PyTorch's gate order); the test suite checks that the h_t they give back equal the engine's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIGMOID_GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z")}
SATURATED = 0.05  # a sigmoid gate below this or above 1 - this counts as saturated


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # the same function as 1 / (1 + e^-a), without overflow


def _cell_gates(cell, inputs):
    """Run one cell over inputs (T, B, I) floats or (T, B) indices; return ({gate: (T, B, H)}, h (T, B, H))."""
    U, W, H = cell.U.data, cell.W.data, cell.hidden_size
    b = np.zeros(W.shape[0]) if cell.b is None else cell.b.data
    p = U.T[inputs] + b if inputs.dtype.kind in "iu" else inputs @ U.T + b  # x_t U^T + b, every step
    T, B = p.shape[0], p.shape[1]
    h, c = np.zeros((B, H)), np.zeros((B, H))
    names = ("i", "f", "g", "o") if cell.cell_kind == "lstm" else ("r", "z", "n")
    gates, states = {name: np.empty((T, B, H)) for name in names}, np.empty((T, B, H))
    for t in range(T):
        hW = h @ W.T
        if cell.cell_kind == "lstm":  # i, f, o = σ(..), g = tanh(..); c' = f c + i g; h' = o tanh(c')
            a = p[t] + hW
            i, f, g, o = (_sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]),
                          _sigmoid(a[:, 3 * H:]))
            c = f * c + i * g
            h = o * np.tanh(c)
            values = (i, f, g, o)
        else:  # r, z = σ(..); n = tanh(p_n + r (h W_n^T + b_hn)); h' = (1 - z) n + z h
            b_hn = 0.0 if getattr(cell, "b_hn", None) is None else cell.b_hn.data
            r, z = _sigmoid(p[t][:, :H] + hW[:, :H]), _sigmoid(p[t][:, H:2 * H] + hW[:, H:2 * H])
            n = np.tanh(p[t][:, 2 * H:] + r * (hW[:, 2 * H:] + b_hn))
            h = (1 - z) * n + z * h
            values = (r, z, n)
        for name, v in zip(names, values):
            gates[name][t] = v
        states[t] = h
    return gates, states


def gate_activity(model, x) -> dict:
    """{(layer, gate): values (T, B, H)} for every gate of every layer of an LSTM or GRU model
    (from zero initial states), plus {(layer, "h"): h_t (T, B, H)}."""
    rnn = getattr(model, "rnn", model)
    kind = getattr(rnn, "cell_kind", None)
    if kind not in SIGMOID_GATES:
        raise ValueError(f"gate_activity: needs an LSTM or GRU model, got cell kind {kind!r}")
    if getattr(rnn, "bidirectional", False):
        raise ValueError("gate_activity: bidirectional layers are not supported; use bidirectional=False")
    inputs = np.asarray(getattr(x, "data", x))
    if getattr(rnn, "batch_first", False):
        inputs = np.swapaxes(inputs, 0, 1)
    activity = {}
    for layer, cell in enumerate(rnn.cells):
        gates, inputs = _cell_gates(cell, inputs)
        activity.update({(layer, name): v for name, v in gates.items()})
        activity[(layer, "h")] = inputs
    return activity


def gate_summary(activity, eps=SATURATED) -> dict:
    """{(layer, gate): (mean value per step (T,), saturated fraction per step (T,))} for the sigmoid
    gates: the fraction of units and sequences whose gate is below eps or above 1 - eps."""
    summary = {}
    for (layer, name), v in activity.items():
        if name in ("i", "f", "o", "r", "z"):
            flat = v.reshape(v.shape[0], -1)
            summary[(layer, name)] = (flat.mean(axis=1), ((flat < eps) | (flat > 1 - eps)).mean(axis=1))
    return summary


def plot_gate_activity(activity, path, title=None, eps=SATURATED):
    """Two panels against t: each sigmoid gate's mean value, and its saturated fraction. Needs
    matplotlib. Returns the Path."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('plot_gate_activity needs matplotlib, an optional extra: pip install "micrornn[plot]"') \
            from None
    summary = gate_summary(activity, eps)
    layers = sorted({layer for layer, _ in summary})
    fig = Figure(figsize=(10, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    mean_ax, sat_ax = fig.subplots(1, 2)
    for (layer, name), (mean, saturated) in summary.items():
        label = f"{name}" + (f", layer {layer}" if len(layers) > 1 else "")
        steps = np.arange(1, len(mean) + 1)
        style = ("-", "--", ":")[layer % 3]
        mean_ax.plot(steps, mean, style, marker="o", markersize=3, label=label)
        sat_ax.plot(steps, saturated, style, marker="o", markersize=3, label=label)
    mean_ax.set_ylim(0, 1)
    mean_ax.set_title("mean gate value (0 closed, 1 open)")
    sat_ax.set_ylim(-0.02, 1.02)
    sat_ax.set_title(f"saturated fraction (gate < {eps:g} or > {1 - eps:g})")
    for ax in (mean_ax, sat_ax):
        ax.set_xlabel("time step t")
        ax.grid(True, alpha=0.3)
    mean_ax.legend(fontsize="small", ncol=2)
    kind = "LSTM" if any(name == "f" for _, name in summary) else "GRU"
    fig.suptitle(title or f"{kind} gates over time", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
