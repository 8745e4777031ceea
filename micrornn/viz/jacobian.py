"""The quantities that decide vanishing and exploding gradients, side by side.

||dh_T/dh_t|| (the spectral norm of the Jacobian of the last state with respect to an earlier one),
the singular values of the recurrent weight W, and ||dL/dh_t||. For the vanilla RNN
dh_k/dh_{k-1} = diag(act'(a_k)) W, so dh_T/dh_t is a product of T - t such factors: its norm is at
most prod_k max|act'| * sigma_max(W), which is why sigma_max(W) < 1 with tanh makes it vanish.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from micrornn.viz.cells import check_first_step, input_size_of, kind_of, refuse, stack_parts, step_edges
from micrornn.viz.flow import gradient_flow, hidden_states

GATE_BLOCKS = {"lstm": ("W_i", "W_f", "W_g", "W_o"), "gru": ("W_r", "W_z", "W_n")}


def _rnn(model):
    """The recurrent stack of a SequenceModel (or the stack itself), checked to be drawable."""
    rnn = getattr(model, "rnn", model)
    if not hasattr(rnn, "cells"):
        raise TypeError(f"expected a SequenceModel or a recurrent layer, got {type(model).__name__}")
    if getattr(rnn, "fused", False):
        raise ValueError("a fused layer records no h_t nodes; build the model with fused=False")
    return rnn


def _layer(rnn, layer) -> int:
    """The layer index (None: the top layer), checked."""
    top = rnn.num_layers - 1
    layer = top if layer is None else layer
    if not 0 <= layer <= top:
        raise ValueError(f"layer must be in 0..{top}, got {layer}")
    return layer


def jacobian_norms(model, x, h0=None, layer=None) -> dict:
    """{t: ||dh_T/dh_t||_2} for one layer (default the top one) and the first sequence of the batch.

    The Jacobian is the engine's: one backward from each unit of h_T through the unrolled graph
    (H backward passes, so keep H small). Parameter gradients are left as they were.
    """
    rnn = _rnn(model)
    layer = _layer(rnn, layer)
    check_first_step(model, x, "jacobian_norms")
    output, _ = rnn(x, h0)
    states = {t: h for (l, t), h in hidden_states(output).items() if l == layer}
    T = max(states)
    h_T, H = states[T], states[T].shape[-1]
    params = list(model.parameters())
    earlier = [p.grad for p in params]
    rows = {t: np.zeros((H, H)) for t in states}
    for h in states.values():
        h.retain_grad()
    try:
        for i in range(H):
            for h in states.values():
                h.grad = None
            seed = np.zeros(h_T.shape)
            seed[0, i] = 1.0
            h_T.backward(seed, retain_graph=True)
            for t, h in states.items():
                if h.grad is not None:
                    rows[t][i] = h.grad[0]  # row i: d h_T[i] / d h_t
    finally:
        for p, g in zip(params, earlier):
            p.grad = g
    return {t: float(np.linalg.norm(rows[t], 2)) for t in sorted(rows)}


def recurrent_singular_values(model, layer=None) -> dict:
    """{name: singular values} of the weights that carry h_{t-1} into h_t in a layer (the top one by
    default), read from one traced step of the cell: the built-in W split into its gate blocks
    (W_i, W_f, W_g, W_o; W_r, W_z, W_n), a user cell's own recurrent matrices (split by its gate_names
    when they stack one block per gate), and a recurrent vector u (IndRNN's h * u) as the diagonal
    matrix it is, whose singular values are |u|."""
    rnn = _rnn(model)
    cell = stack_parts(model)[2][_layer(rnn, layer)]
    params = dict(cell.named_parameters())
    below = getattr(rnn, "input_size", None) if _layer(rnn, layer) == 0 else getattr(cell, "hidden_size", None)
    step = step_edges(cell, input_size_of(cell, below, what="recurrent_singular_values"), "recurrent_singular_values")
    names = step.edges.get((("prev", 0), 0), [])
    H = getattr(cell, "hidden_size", None)
    out = {}
    for name in names:
        w = np.asarray(params[name].data, dtype=float)
        if w.ndim == 1:
            out[name] = np.sort(np.abs(w))[::-1]
            continue
        if w.ndim != 2:
            continue
        blocks = GATE_BLOCKS.get(kind_of(cell)) or tuple(f"{name}_{g}" for g in getattr(cell, "gate_names", ()) or ())
        if H and len(blocks) > 1 and w.shape[0] == len(blocks) * H and w.shape[1] == H:
            out.update({b: np.linalg.svd(w[k * H:(k + 1) * H], compute_uv=False) for k, b in enumerate(blocks)})
        else:
            out[name] = np.linalg.svd(w, compute_uv=False)
    if not out:
        raise refuse("recurrent_singular_values", cell, "has no weight that carries h_{t-1} into h_t")
    return out


def jacobian_view(model, x, targets, h0=None, layer=None, loss="last") -> dict:
    """The data of the Jacobian view: {"jacobian": {t: norm}, "grad": {t: ||dL/dh_t||},
    "singular_values": {block: values}, "layer", "loss", "cell"}."""
    rnn = _rnn(model)
    layer = _layer(rnn, layer)
    _, norms = gradient_flow(model, x, targets, h0, loss=loss)
    for p in model.parameters():
        p.grad = None
    return {"jacobian": jacobian_norms(model, x, h0, layer),
            "grad": {t: v for (l, t), v in norms.items() if l == layer},
            "singular_values": recurrent_singular_values(model, layer),
            "layer": layer, "loss": loss, "cell": _cell_name(stack_parts(model)[2][layer])}


def _cell_name(cell) -> str:
    """The plot title's name of a cell: RNN, LSTM, GRU, or the class name of a user's cell."""
    kind = kind_of(cell)
    return kind.upper() if kind else type(cell).__name__


def plot_jacobian_view(view, path, title=None):
    """Three panels from ``jacobian_view``: ||dh_T/dh_t||, ||dL/dh_t|| (log scale, against t) and the
    singular values of W with the line sigma = 1. Needs matplotlib. Returns the Path."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('plot_jacobian_view needs matplotlib, an optional extra: pip install "micrornn[plot]"') \
            from None
    fig = Figure(figsize=(11, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    jac, grad, sv = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.2, 0.9]})
    T = max(view["jacobian"])
    steps = sorted(view["jacobian"])
    jac.plot(steps, [max(view["jacobian"][t], 1e-300) for t in steps], marker="o", markersize=3, color="#7b3294")
    jac.set_title(r"$\Vert\partial h_T/\partial h_t\Vert_2$" + f" (T = {T})")
    loss_text = r"$L = L_T$" if view["loss"] == "last" else r"$L = \sum_t L_t$"
    steps = sorted(view["grad"])
    grad.plot(steps, [max(view["grad"][t], 1e-300) for t in steps], marker="o", markersize=3, color="#d7301f")
    grad.set_title(r"$\Vert\partial L/\partial h_t\Vert$, " + loss_text)
    for ax in (jac, grad):
        ax.set_yscale("log")
        ax.set_xlabel("time step t")
        ax.grid(True, which="major", alpha=0.3)
    for name, values in view["singular_values"].items():
        sv.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    sv.axhline(1.0, color="#444444", linestyle="--", linewidth=1)
    sv.set_xlabel("index (largest first)")
    sv.set_title(f"recurrent weights' singular values (layer {view['layer']})", fontsize=10)
    sv.grid(True, alpha=0.3)
    if len(view["singular_values"]) > 1:
        sv.legend(fontsize="small")
    fig.suptitle(title or f"{view['cell']}: what decides vanishing and exploding gradients", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
