"""Gate activity of any cell that names its gates: how open each gate is over time, and how often it saturates.

A sigmoid gate near 0 or 1 passes (almost) no gradient through its own pre-activation (σ' = σ(1-σ)
is below 0.05 there), while a forget gate f near 1 keeps the cell-state path c_{t-1} -> c_t open.
The gate values come from the cell itself: its ``gates(x_t, state)`` (the cell protocol: a cell
that lists ``gate_names`` provides it), stepped along the cell's own ``forward``. A built-in LSTM or
GRU cell without ``gates`` is read from the independent reference in ``micrornn.bptt`` instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from micrornn.bptt.gru import gru_layer_forward
from micrornn.bptt.lstm import lstm_layer_forward
from micrornn.engine.tensor import Tensor, no_grad
from micrornn.viz.cells import as_entries, call_cell, kind_of, refuse, stack_parts, zero_state

SATURATED = 0.05  # a gate in [0, 1] below this or above 1 - this counts as saturated


class GateActivity(dict):
    """{(layer, gate): values (T, B, H)} plus {(layer, "h"): h_t (T, B, H)}; ``cell`` names the cell."""

    def __init__(self, values, cell=""):
        super().__init__(values)
        self.cell = cell


def _one_hot(inputs, cell):
    """Index inputs (T, B) as one-hot rows of the cell's input width; floats pass as they are."""
    if inputs.dtype.kind not in "iu":
        return inputs.astype(float, copy=False)
    width = getattr(cell, "input_size", None)
    if width is None:
        raise refuse("gate_activity", cell, "has no input_size to one-hot index inputs with; pass float inputs")
    return np.eye(int(width))[inputs]


def _from_cell(cell, inputs):
    """Step the cell's own forward and gates(x_t, state) over inputs (T, B, I)."""
    names = tuple(cell.gate_names)
    T, B = inputs.shape[:2]
    gates, states = {name: [] for name in names}, []
    with no_grad():
        state = zero_state(cell, B, np.float64, "gate_activity")
        for t in range(T):
            x_t = Tensor(inputs[t])
            values = cell.gates(x_t, state)
            missing = [n for n in names if not isinstance(values, dict) or n not in values]
            if missing:
                raise refuse("gate_activity", cell, f"gates() returned no {', '.join(missing)} "
                                                    f"(its gate_names are {', '.join(names)})")
            for name in names:
                gates[name].append(np.asarray(values[name].data, dtype=float))
            state = call_cell(cell, x_t, state, "gate_activity")
            states.append(np.asarray(as_entries(state)[0].data, dtype=float))
    return {name: np.stack(v) for name, v in gates.items()}, np.stack(states)


def _from_reference(cell, kind, inputs):
    """A built-in LSTM/GRU cell run by the hand-derived reference in micrornn.bptt (gate order i f g o / r z n)."""
    U, W, H = cell.U.data, cell.W.data, cell.hidden_size
    b = None if cell.b is None else cell.b.data
    if kind == "lstm":
        hs, _, a = lstm_layer_forward(inputs, U, W, b, None, None)
        names = ("i", "f", "g", "o")
    else:
        b_hn = getattr(cell, "b_hn", None)
        hs, a, _ = gru_layer_forward(inputs, U, W, b, None if b_hn is None else b_hn.data, None)
        names = ("r", "z", "n")
    return {name: a[..., k * H:(k + 1) * H] for k, name in enumerate(names)}, hs


def gate_activity(model, x) -> GateActivity:
    """{(layer, gate): values (T, B, H)} for every gate of every layer of a model whose cells name their
    gates (``gate_names`` and ``gates(x_t, state)``; the built-in LSTM and GRU too), from zero initial
    states, plus {(layer, "h"): h_t (T, B, H)}. A cell without gates is refused in one line."""
    rnn, _, cells = stack_parts(model)
    if getattr(rnn, "bidirectional", False):
        raise ValueError("gate_activity: bidirectional layers are not supported; use bidirectional=False")
    inputs = np.asarray(getattr(x, "data", x))
    if getattr(rnn, "batch_first", False):
        inputs = np.swapaxes(inputs, 0, 1)
    activity = {}
    for layer, cell in enumerate(cells):
        kind, names = kind_of(cell), tuple(getattr(cell, "gate_names", ()) or ())
        inputs = _one_hot(inputs, cell)
        if names and callable(getattr(cell, "gates", None)):
            gates, inputs = _from_cell(cell, inputs)
        elif kind in ("lstm", "gru"):
            gates, inputs = _from_reference(cell, kind, inputs)
        else:
            raise refuse("gate_activity", cell, "names no gates: the gate view needs gate_names and "
                                                "gates(x_t, state) -> {name: activation}")
        activity.update({(layer, name): v for name, v in gates.items()})
        activity[(layer, "h")] = inputs
    cell = cells[0]
    return GateActivity(activity, kind_of(cell).upper() if kind_of(cell) else type(cell).__name__)


def gate_summary(activity, eps=SATURATED) -> dict:
    """{(layer, gate): (mean value per step (T,), saturated fraction per step (T,))} for the gates that
    open and close (every value in [0, 1], as a sigmoid gives; a tanh candidate such as the LSTM's g
    is left out): the fraction of units and sequences whose gate is below eps or above 1 - eps."""
    summary = {}
    for (layer, name), v in activity.items():
        if name != "h" and v.size and v.min() >= 0.0 and v.max() <= 1.0:
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
    fig.suptitle(title or f"{getattr(activity, 'cell', '') or 'cell'} gates over time", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
