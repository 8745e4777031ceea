"""Gradient check of a SequenceModel (any cell kind, either direction count), four routes:
autograd through the unrolled graph, the analytic BPTT, autograd through the fused layer
primitives, and central differences.

Used by ``micrornn gradcheck`` and ``examples/gradcheck_rnn.py``. Every parameter gets one row:

* ``autograd_vs_analytic`` and ``fused_vs_autograd``: max |difference| over its elements
  (absolute); each passes when it is at most ``AGREE_RTOL * max|reference| + AGREE_ATOL`` (1e-10
  relative to the largest entry);
* ``autograd_vs_numeric``, ``analytic_vs_numeric``, ``fused_vs_numeric``: the worst element of
  |g - numeric| / (atol + rtol*|numeric|); each passes when it is at most 1.

When a row fails, ``micrornn.check.divergence`` finds the first step (and gate) where the routes part.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micrornn import bptt
from micrornn.check.finite_differences import numerical_grad
from micrornn.nn import SequenceModel
from micrornn.nn.cells import CELLS
from micrornn.engine.tensor import Tensor

AGREE_RTOL, AGREE_ATOL = 1e-10, 1e-12  # autograd vs analytic: |a - r| <= 1e-10 * max|r| + 1e-12


@dataclass
class Row:
    """The comparison for one parameter."""

    name: str
    shape: tuple
    autograd_vs_analytic: float  # max |autograd - analytic|
    agree_tol: float             # the bound that max must stay under
    autograd_vs_numeric: float   # worst |autograd - numeric| / (atol + rtol |numeric|)
    analytic_vs_numeric: float   # worst |analytic - numeric| / (atol + rtol |numeric|)
    fused_vs_autograd: float = 0.0  # max |fused - autograd|
    fused_tol: float = 0.0          # the bound that max must stay under
    fused_vs_numeric: float = 0.0   # worst |fused - numeric| / (atol + rtol |numeric|)

    @property
    def passed(self) -> bool:
        """Every comparison within tolerance (a NaN never passes)."""
        return bool(self.autograd_vs_analytic <= self.agree_tol and self.autograd_vs_numeric <= 1.0
                    and self.analytic_vs_numeric <= 1.0 and self.fused_vs_autograd <= self.fused_tol
                    and self.fused_vs_numeric <= 1.0)


def random_problem(layers=2, input_size=3, hidden_size=4, output_size=5, steps=6, batch=2,
                   nonlinearity="tanh", seed=0, fused=False, with_h0=False, cell="rnn", bidirectional=False,
                   batch_first=False, bias=True, layer_norm=False):
    """A float64 SequenceModel and random time-major data: (model, x (T,B,I), targets (T,B), h0).

    h0 is None, an array (D*layers, B, H), or for the LSTM a tuple (h0, c0) of such arrays.
    """
    rng = np.random.default_rng(seed)
    model = SequenceModel(input_size, hidden_size, output_size, num_layers=layers, nonlinearity=nonlinearity,
                          fused=fused, bias=bias, batch_first=batch_first, dtype=np.float64, rng=rng, cell=cell,
                          bidirectional=bidirectional, layer_norm=layer_norm)
    x = rng.standard_normal((steps, batch, input_size))
    targets = rng.integers(0, output_size, size=(steps, batch))
    shape = ((2 if bidirectional else 1) * layers, batch, hidden_size)
    h0 = None
    if with_h0:
        if cell not in CELLS:
            raise ValueError(f"random_problem: with_h0 needs a built-in cell ({', '.join(CELLS)}), got {cell!r}")
        h0 = tuple(rng.uniform(-0.5, 0.5, size=shape) for _ in CELLS[cell].state_names)
        h0 = h0[0] if len(h0) == 1 else h0
    return model, x, targets, h0


def _state_tensor(h0):
    """h0 (None, an array, or an (h0, c0) tuple) as Tensors."""
    if h0 is None:
        return None
    if isinstance(h0, (tuple, list)):
        return tuple(Tensor(np.asarray(s)) for s in h0)
    return Tensor(h0)


def model_autograd_grads(model, x, targets, h0=None, lengths=None) -> tuple[float, dict]:
    """(loss, grads by name) from the engine: forward through the model's graph, then backward."""
    x, targets = _model_layout(model, x, targets)
    model.zero_grad()
    loss, _ = model.loss(x, targets, _state_tensor(h0), reduction="sum", lengths=lengths)
    loss.backward()
    grads = {name: np.zeros(p.shape) if p.grad is None else np.array(p.grad, dtype=np.float64)
             for name, p in model.named_parameters()}
    model.zero_grad()
    return loss.item(), grads


def route_grads(model, x, targets, h0=None, fused=False, lengths=None) -> tuple[float, dict]:
    """model_autograd_grads with the layers run unrolled (fused=False) or as fused primitives."""
    saved, model.rnn.fused = model.rnn.fused, fused
    try:
        return model_autograd_grads(model, x, targets, h0, lengths)
    finally:
        model.rnn.fused = saved


def numeric_grads(model, x, targets, h0=None, eps=1e-6, lengths=None) -> dict:
    """Central differences of the summed loss for every parameter (two forwards per element)."""
    x, targets = _model_layout(model, x, targets)
    h0 = _state_tensor(h0)
    named = model.named_parameters()
    loss = lambda *params: model.loss(x, targets, h0, reduction="sum", lengths=lengths)[0]  # noqa: E731
    return dict(zip([n for n, _ in named], numerical_grad(loss, [p for _, p in named], eps)))


def compare(model, x, targets, h0=None, eps=1e-6, atol=1e-5, rtol=1e-3, lengths=None) -> list[Row]:
    """One Row per parameter (in named_parameters() order); x and targets are time-major; lengths
    (B,) pads the batch (only real steps count)."""
    _, auto = route_grads(model, x, targets, h0, fused=False, lengths=lengths)
    _, fused = route_grads(model, x, targets, h0, fused=True, lengths=lengths)
    _, analytic = bptt.loss_and_grads(model, x, targets, h0, lengths=lengths)
    numeric = numeric_grads(model, x, targets, h0, eps, lengths)
    rows = []
    for name, p in model.named_parameters():
        a, r, f, n = auto[name], analytic[name], fused[name], numeric[name]
        tol = lambda ref: AGREE_RTOL * (float(np.max(np.abs(ref))) if ref.size else 0.0) + AGREE_ATOL  # noqa: E731
        rows.append(Row(name, tuple(p.shape), _max_abs(a - r), tol(r), _worst_ratio(a, n, atol, rtol),
                        _worst_ratio(r, n, atol, rtol), _max_abs(f - a), tol(a), _worst_ratio(f, n, atol, rtol)))
    return rows


def compare_graph(model, x, targets, eps=1e-6, atol=1e-5, rtol=1e-3, lengths=None) -> list[tuple]:
    """For a cell with no analytic route (a user's cell): [(name, shape, worst |graph - numeric| /
    (atol + rtol |numeric|))] per parameter; each passes when at most 1."""
    _, graph = model_autograd_grads(model, x, targets, None, lengths)
    numeric = numeric_grads(model, x, targets, None, eps, lengths)
    return [(name, tuple(p.shape), _worst_ratio(graph[name], numeric[name], atol, rtol))
            for name, p in model.named_parameters()]


def format_table(rows: list[Row], atol=1e-5, rtol=1e-3) -> str:
    """The rows as a text table with a header that says what each column measures."""
    width = max([len("parameter")] + [len(r.name) for r in rows])
    lines = [
        "routes: auto = autograd through the unrolled graph, analytic = hand-derived BPTT, fused = autograd "
        "through the fused layer primitives, numeric = central differences",
        "columns: |auto-analytic|, |fused-auto| = max over elements of the absolute difference "
        f"(must be <= {AGREE_RTOL:g} * max|reference| + {AGREE_ATOL:g});",
        f"         X~numeric = worst |X - numeric| / ({atol:g} + {rtol:g}*|numeric|) (must be <= 1)",
        f"{'parameter':<{width}}  {'shape':<9} {'|auto-analytic|':>15} {'|fused-auto|':>12} {'auto~numeric':>12} "
        f"{'analytic~numeric':>16} {'fused~numeric':>13}  result",
    ]
    for r in rows:
        shape = "x".join(str(s) for s in r.shape)
        lines.append(f"{r.name:<{width}}  {shape:<9} {r.autograd_vs_analytic:>15.2e} {r.fused_vs_autograd:>12.2e} "
                     f"{r.autograd_vs_numeric:>12.2e} {r.analytic_vs_numeric:>16.2e} {r.fused_vs_numeric:>13.2e}  "
                     f"{'PASS' if r.passed else 'FAIL'}")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """One line: how many parameters passed, and the worst value of each column."""
    failed = [r.name for r in rows if not r.passed]
    worst = (f"worst |auto-analytic| {max(r.autograd_vs_analytic for r in rows):.2e}, "
             f"|fused-auto| {max(r.fused_vs_autograd for r in rows):.2e}, "
             f"auto~numeric {max(r.autograd_vs_numeric for r in rows):.2e}, "
             f"analytic~numeric {max(r.analytic_vs_numeric for r in rows):.2e}, "
             f"fused~numeric {max(r.fused_vs_numeric for r in rows):.2e}")
    if failed:
        return f"FAIL: {len(failed)} of {len(rows)} parameters disagree ({', '.join(failed)}); {worst}"
    return f"PASS: all {len(rows)} parameters agree; {worst}"


def _model_layout(model, x, targets):
    """Time-major x and targets rearranged to the model's layout (batch-major if batch_first)."""
    x, targets = np.asarray(x), np.asarray(targets)
    if model.rnn.batch_first:
        return x.transpose(1, 0, 2), targets.T
    return x, targets


def _max_abs(d) -> float:
    """max |d| (0 for an empty array; NaN propagates)."""
    return float(np.max(np.abs(d))) if d.size else 0.0


def _worst_ratio(g, n, atol, rtol) -> float:
    """max over elements of |g - n| / (atol + rtol |n|) (NaN propagates)."""
    return float(np.max(np.abs(g - n) / (atol + rtol * np.abs(n)))) if n.size else 0.0
