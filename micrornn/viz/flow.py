"""Gradient flow: dL/dh_t norms per layer and step, a log colour scale, and the matplotlib plot."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from micrornn.check.divergence import sequence_loss
from micrornn.nn.rnn import StepScope
from micrornn.viz.cells import check_first_step
from micrornn.engine.tensor import Tensor

# ColorBrewer YlOrRd: pale = vanishing gradient, dark red = large gradient.
PALETTE = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#bd0026", "#800026")
_DARK_FROM = 6  # palette entries from here on get white text


def walk(roots) -> list:
    """Every node reachable from roots through ``.parents``, roots first (iterative, no recursion)."""
    order, seen, stack = [], set(), list(reversed(roots))
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        stack.extend(p for p in reversed(node.parents) if id(p) not in seen)
    return order


def hidden_states(root) -> dict:
    """{(layer, step): h_t tensor} for the states an unrolled RNN recorded in root's graph (the
    left-to-right direction of a bidirectional layer)."""
    found = {}
    for node in walk([root]):
        scope = getattr(node, "scope", None)
        if (isinstance(node, Tensor) and isinstance(scope, StepScope) and scope.step is not None
                and getattr(scope, "direction", 0) == 0 and node.name == f"h{scope.step}"):
            found[(scope.layer, scope.step)] = node
    return found


def retain_hidden_grads(root) -> int:
    """Ask every h_t of root's graph to keep its gradient through the next backward; return the count."""
    states = hidden_states(root)
    for h in states.values():
        h.retain_grad()
    return len(states)


class HiddenGradNorms(dict):
    """{(layer, step): ||dL/dh_t||} that also knows the sequence length and the loss it came from.

    steps: T, the number of time steps of the run; loss: "sum" (L = sum_t L_t), "last" (L = L_T)
    or None when unknown. ``draw_unrolled`` takes both from here, so a picture cannot claim more
    steps, or another loss, than the gradients were computed for.
    """

    def __init__(self, norms, steps=None, loss=None):
        super().__init__(norms)
        if loss not in (None, "sum", "last"):
            raise ValueError(f"HiddenGradNorms: loss must be 'sum', 'last' or None, got {loss!r}")
        self.steps = max((t for _, t in self), default=0) if steps is None else int(steps)
        self.loss = loss


def hidden_grad_norms(root, loss=None) -> HiddenGradNorms:
    """{(layer, step): ||dL/dh_t||} read from the h_t of root's graph after a backward."""
    states = hidden_states(root)
    norms = {key: float(np.linalg.norm(h.grad)) for key, h in sorted(states.items()) if h.grad is not None}
    return HiddenGradNorms(norms, steps=max((t for _, t in states), default=0), loss=loss)


def gradient_flow(model, x, targets, h0=None, loss="sum"):
    """Run an unrolled model on (x, targets) and back-propagate; return (loss tensor, hidden_grad_norms).

    Any model whose recurrent layer is unrolled (SequenceModel, nn.RNN/LSTM/GRU, nn.Recurrent with
    any cell, or a module around one); the loss is ``sequence_loss``. loss="sum": L = sum_t L_t (each
    h_t also gets its own step's loss); loss="last": only L_T, so the norms show how one error signal
    shrinks or grows going back in time.
    """
    if getattr(getattr(model, "rnn", model), "fused", False):
        raise ValueError("gradient_flow: a fused RNN records no h_t nodes; build the model with fused=False "
                         "(or use micrornn.bptt.loss_and_grads(..., return_hidden_grads=True))")
    if loss not in ("sum", "last"):
        raise ValueError(f"gradient_flow: loss must be 'sum' or 'last', got {loss!r}")
    check_first_step(model, x, "gradient_flow")
    root = sequence_loss(model, x, targets, h0, loss)
    if retain_hidden_grads(root) == 0:
        raise ValueError(f"gradient_flow: {type(model).__name__} recorded no h_t in its graph; it needs a "
                         "recurrent layer unrolled by micrornn's time loop (nn.Recurrent, nn.RNN, ...)")
    root.backward()
    return root, hidden_grad_norms(root, loss=loss)


def as_norms(grads) -> HiddenGradNorms:
    """Normalise hidden gradients to {(layer, step): norm} (a HiddenGradNorms).

    Accepts such a dict, a graph root whose h_t kept their grads, or a per-layer list of
    (T, B, H) arrays as returned by ``bptt.loss_and_grads(..., return_hidden_grads=True)``
    (or of (T,) norm vectors; the analytic route's loss is the sum over steps).
    """
    if isinstance(grads, HiddenGradNorms):
        return grads
    if isinstance(grads, dict):
        return HiddenGradNorms({(int(l), int(t)): float(v) for (l, t), v in grads.items()})
    if isinstance(grads, Tensor):
        return hidden_grad_norms(grads)
    norms, steps = {}, 0
    for layer, g in enumerate(grads):
        g = np.asarray(g, dtype=float)
        per_step = np.abs(g) if g.ndim == 1 else np.sqrt((g.reshape(g.shape[0], -1) ** 2).sum(axis=1))
        norms.update({(layer, t + 1): float(v) for t, v in enumerate(per_step)})
        steps = max(steps, len(per_step))
    return HiddenGradNorms(norms, steps=steps)


class LogColors:
    """Maps magnitudes to PALETTE on a log10 scale spanning the given values."""

    def __init__(self, values):
        logs = [math.log10(v) for v in values if v > 0 and math.isfinite(v)]
        self.lo, self.hi = (min(logs), max(logs)) if logs else (0.0, 0.0)

    def index(self, value) -> int:
        """Palette position of value (0 for zero / non-finite)."""
        if not (value > 0 and math.isfinite(value)):
            return 0
        if self.hi - self.lo < 1e-12:
            return len(PALETTE) // 2
        frac = (math.log10(value) - self.lo) / (self.hi - self.lo)
        return min(len(PALETTE) - 1, max(0, int(frac * len(PALETTE))))

    def attrs(self, value) -> dict:
        """Graphviz node attributes that fill a node by magnitude."""
        i = self.index(value)
        return {"style": "filled,rounded", "fillcolor": PALETTE[i],
                "fontcolor": "white" if i >= _DARK_FROM else "black"}

    def legend(self, title) -> str:
        """An HTML-like label: the title over a colour bar with its end values."""
        cells = "".join(f'<TD BGCOLOR="{c}" WIDTH="14"> </TD>' for c in PALETTE)
        n = len(PALETTE)
        return (f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">'
                f'<TR><TD COLSPAN="{n}">{title} (log scale)</TD></TR><TR>{cells}</TR>'
                f'<TR><TD COLSPAN="{n // 2}" ALIGN="LEFT">{10 ** self.lo:.1e}</TD>'
                f'<TD COLSPAN="{n - n // 2}" ALIGN="RIGHT">{10 ** self.hi:.1e}</TD></TR></TABLE>>')


def plot_gradient_flow(grads, path, title="Gradient flow back through time"):
    """Plot ||dL/dh_t|| against t, one line per layer (and per series), log y axis, saved to path.

    grads: anything ``as_norms`` accepts, or a dict {series label: such} to compare runs
    (e.g. tanh vs relu). Needs matplotlib: ``pip install "micrornn[plot]"``. Returns the Path.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('plot_gradient_flow needs matplotlib, an optional extra: pip install "micrornn[plot]"') \
            from None
    if isinstance(grads, dict) and grads and all(isinstance(k, str) for k in grads):
        series = {label: as_norms(g) for label, g in grads.items()}
    else:
        series = {"": as_norms(grads)}
    fig = Figure(figsize=(6.4, 3.8), dpi=100)
    FigureCanvasAgg(fig)  # Agg canvas without pyplot: no global backend state is touched
    ax = fig.add_subplot()
    for s, (label, norms) in enumerate(series.items()):
        layers = sorted({l for l, _ in norms})
        for layer in layers:
            steps = sorted(t for l, t in norms if l == layer)
            values = [max(norms[(layer, t)], 1e-300) for t in steps]
            name = ", ".join(p for p in (label, f"layer {layer}" if len(layers) > 1 or not label else "") if p)
            ax.plot(steps, values, marker="o", markersize=3, linestyle=("-", "--", ":", "-.")[s % 4], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel(r"$\Vert\partial L/\partial h_t\Vert$")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
