"""Where gradient routes part ways: per-step hidden gradients of a SequenceModel, three ways.

A wrong derivation shows itself first at one time step and (for a gated cell) one gate; after
that every earlier step is wrong too. This module finds that first spot. For each layer,
direction and step it compares, from the unrolled engine graph, the analytic BPTT
(``bptt.step_grads``) and central differences:

* ``h``: the total dL/dh_t (B, H), and for the LSTM ``c``: the part of dL/dc_t that arrives along
  the cell line from c_{t+1} (h_t held fixed: what an offset added to the cell's output c_t sees);
* ``gates``: dL/d(pre-activation) of each gate (G*H,), summed over the batch (for the vanilla RNN
  the single pre-activation ``a``).

The graph's values come from an unrolling of the model's own cells in which each h_t (and c_t)
gets a zero offset and each step its own copy of the bias: dL/d(offset) is the total dL/dh_t, and
dL/d(bias copy at step t) is the gate gradient at t. The walk goes back in time from the last
step (per direction: from T for left-to-right, from 1 for right-to-left), top layer first.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np

from micrornn import bptt

from micrornn.nn import functional as F
from micrornn.bptt import gru, lstm, vanilla
from micrornn.bptt.model import GATES
from micrornn.check.finite_differences import numerical_grad
from micrornn.engine.backward import state as engine
from micrornn.engine.tensor import Tensor, concatenate, stack

AGREE_RTOL, AGREE_ATOL = 1e-10, 1e-12  # graph vs analytic, relative to the largest entry of the quantity
QUANTITIES = ("h", "c", "gates")
# within one step the GRU forms dL/da_r from dL/da_n (r scales W_n h), so n comes before r
BACKWARD_ORDER = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("n", "z", "r")}


def _stack_cells(model):
    """(kind, directions): directions[d] is the list of cells of direction d, one per layer."""
    rnn = model.rnn
    reverse = list(getattr(rnn, "reverse_cells", None) or [])
    return getattr(rnn, "cell_kind", "rnn"), [list(rnn.cells)] + ([reverse] if reverse else [])


def _probes(model, x):
    """Zero offsets for every h_t (and c_t) and a bias copy per step: {(l, d): {'h', 'c', 'gates'}}."""
    kind, directions = _stack_cells(model)
    T, B = x.shape[:2]
    probes = {}
    for d, cells in enumerate(directions):
        for l, cell in enumerate(cells):
            H, G = cell.hidden_size, cell.W.shape[0]
            bias = np.zeros(G) if cell.b is None else np.array(cell.b.data, dtype=np.float64)
            new = lambda shape: Tensor(np.zeros(shape), requires_grad=True)  # noqa: E731
            probes[(l, d)] = {"h": [new((B, H)) for _ in range(T)],
                              "c": [new((B, H)) for _ in range(T)] if kind == "lstm" else None,
                              "gates": [Tensor(bias.copy(), requires_grad=True) for _ in range(T)]}
    return probes


def _initial_state(kind, h0, k):
    """The k-th per-(layer, direction) initial state as Tensors, or None."""
    if h0 is None:
        return None
    if kind == "lstm":
        return Tensor(np.asarray(h0[0])[k]), Tensor(np.asarray(h0[1])[k])
    return Tensor(np.asarray(h0)[k])


def probed_loss(model, x, targets, h0, probes, loss="sum"):
    """The summed loss (loss="last": the last step's alone), unrolled step by step with the model's
    cells and the given probes."""
    kind, directions = _stack_cells(model)
    T, D = x.shape[0], len(directions)
    layer_input = Tensor(np.asarray(x))
    for l in range(len(directions[0])):
        outputs = []
        for d, cells in enumerate(directions):
            state, p, hs = _initial_state(kind, h0, l * D + d), probes[(l, d)], [None] * T
            for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
                cell = copy.copy(cells[l])
                cell.b = p["gates"][t]  # this step's own copy of the bias
                state = cell(layer_input[t], state)
                if kind == "lstm":
                    state = (state[0] + p["h"][t], state[1] + p["c"][t])
                    hs[t] = state[0]
                else:
                    state = hs[t] = state + p["h"][t]
            outputs.append(stack(hs))
        layer_input = outputs[0] if D == 1 else concatenate(outputs, axis=2)
    if loss == "last":
        return F.cross_entropy(model.head(layer_input[T - 1]), np.asarray(targets)[T - 1], reduction="sum")
    return F.cross_entropy(model.head(layer_input), np.asarray(targets), reduction="sum")


def _collect(probes, values):
    """values (one array per probe tensor, in _flat order) regrouped like bptt.step_grads."""
    out, it = {}, iter(values)
    for key, p in probes.items():
        out[key] = {q: None if p[q] is None else np.stack([next(it) for _ in p[q]]) for q in QUANTITIES}
    return out


def _flat(probes):
    """Every probe tensor in a fixed order."""
    return [t for p in probes.values() for q in QUANTITIES if p[q] is not None for t in p[q]]


def graph_step_grads(model, x, targets, h0=None, loss="sum") -> dict:
    """{(l, d): {'h', 'c', 'gates'}} from the engine: backward through the probed unrolling."""
    probes = _probes(model, x)
    probed_loss(model, x, targets, h0, probes, loss).backward()
    return _collect(probes, [np.zeros(t.shape) if t.grad is None else t.grad for t in _flat(probes)])  # c_T: unused


def analytic_step_grads(model, x, targets, h0=None) -> dict:
    """{(l, d): {'h', 'c', 'gates'}} from the analytic BPTT (gates summed over the batch)."""
    steps = bptt.step_grads(model, x, targets, h0)
    return {key: {"h": s["h"], "c": s.get("c_line"), "gates": s["gates"].sum(axis=1)} for key, s in steps.items()}


def _walk(T, layers, D):
    """(layer, direction, t) in the order the gradient reaches them going back in time."""
    for k in range(T):
        for l in range(layers - 1, -1, -1):
            for d in range(D):
                yield l, d, (T - 1 - k if d == 0 else k)


def sequence_loss(model, x, targets, h0=None, loss="sum"):
    """The loss gradient_flow back-propagates: ``model.loss`` when the model has one (loss="sum"), else
    the model's per-step output (logits (T, B, O), or h_t for a bare recurrent layer) scored against
    targets: cross-entropy summed over steps and batch for integer targets, squared error for float
    targets of the output's shape. loss="last" scores only step T."""
    if loss == "sum" and callable(getattr(model, "loss", None)):
        return model.loss(x, targets, h0)[0]
    result = model(x) if h0 is None else model(x, h0)
    out = result[0] if isinstance(result, tuple) else result
    if not isinstance(out, Tensor) or out.ndim < 2:
        raise TypeError(f"sequence_loss: {type(model).__name__}(x) must return a per-step output (T, B, ...) "
                        f"first, got {type(out).__name__}")
    targets = np.asarray(targets)
    if loss == "last":
        out, targets = out[out.shape[0] - 1], targets[-1]
    if targets.dtype.kind in "iu":
        return F.cross_entropy(out, targets, reduction="sum")
    if targets.shape != out.shape:
        raise ValueError(f"sequence_loss: float targets must have the output's shape {out.shape}, got {targets.shape}")
    return ((out - targets) ** 2).sum()


def _entry_names(cell, n) -> tuple:
    """The cell's state_names, else h, c, s2, ... (the cell protocol's defaults)."""
    names = tuple(getattr(cell, "state_names", ()) or ())
    return names if len(names) == n else (("h", "c") + tuple(f"s{k}" for k in range(2, n)))[:n]


def _has_analytic_route(model) -> bool:
    """True when bptt's hand-derived reference reads this model: built-in cells under a head."""
    rnn = getattr(model, "rnn", None)
    kinds = {getattr(c, "kind", None) or getattr(c, "cell_kind", None) for c in getattr(rnn, "cells", None) or []}
    return (rnn is not None and hasattr(model, "head") and getattr(rnn, "cell_kind", None) in GATES
            and len(kinds) == 1 and kinds <= set(GATES))


def first_divergence(model, x, targets, h0=None, eps=1e-6, atol=1e-5, rtol=1e-3):
    """The first (layer, direction, step, quantity) where the routes part ways, as a dict, or None.

    Central differences are taken one probe at a time in walk order, so a divergence near the last
    step costs only a few forwards. A cell with no analytic route (a user's cell) is checked graph
    against central differences, per step and per state entry (see ``divergence_without_reference``).
    """
    if not _has_analytic_route(model):
        return divergence_without_reference(model, x, targets, h0, eps, atol, rtol)
    graph, analytic = graph_step_grads(model, x, targets, h0), analytic_step_grads(model, x, targets, h0)
    probes = _probes(model, x)
    loss = lambda *ts: probed_loss(model, x, targets, h0, probes)  # noqa: E731 (probes perturbed in place)
    kind, directions = _stack_cells(model)
    T, H = x.shape[0], directions[0][0].hidden_size
    for l, d, t in _walk(T, len(directions[0]), len(directions)):
        for q in QUANTITIES:
            if analytic[(l, d)][q] is None:
                continue
            scale = AGREE_RTOL * float(np.max(np.abs(analytic[(l, d)][q]))) + AGREE_ATOL
            g, a = graph[(l, d)][q][t], analytic[(l, d)][q][t]
            n = numerical_grad(loss, [probes[(l, d)][q][t]], eps)[0]
            bad = {("graph", "analytic"): np.abs(g - a) > scale,
                   ("graph", "numeric"): np.abs(g - n) > atol + rtol * np.abs(n),
                   ("analytic", "numeric"): np.abs(a - n) > atol + rtol * np.abs(n)}
            pairs = [p for p, b in bad.items() if b.any()]
            if not pairs:
                continue
            mask = np.logical_or.reduce([bad[p] for p in pairs])
            gates = None
            if q == "gates":  # name the gates in the order their gradients are formed within the step
                gates = [gate for gate in BACKWARD_ORDER[kind] if mask[GATES[kind].index(gate) * H:][:H].any()]
                block = GATES[kind].index(gates[0]) * H
                mask = np.zeros_like(mask)
                mask[block:block + H] = bad[pairs[0]][block:block + H] | bad[pairs[-1]][block:block + H]
            index = tuple(int(i) for i in np.argwhere(mask)[0])
            return {"layer": l, "direction": d, "t": t + 1, "T": T, "quantity": q,
                    "gate": gates[0] if gates else None, "other_gates": gates[1:] if gates else [],
                    "unit": index[-1] % H, "index": index, "disagree": pairs,
                    "values": {"graph": float(g[index]), "analytic": float(a[index]), "numeric": float(n[index])}}
    return None


@contextmanager
def _offsets(cells, probes):
    """Run each cell with a zero offset added to every entry of the state it returns at each step:
    probes[(layer, direction)][(step, entry)] (made on first use; the step read from the StepScope
    the time loop sets). dL/d(offset) is then the total dL/d(entry at that step)."""
    patched = []
    for key, cell in cells.items():
        original = cell.forward
        probes.setdefault(key, {})

        def forward(x_t, state, _original=original, _probes=probes[key], _cell=cell):
            out = _original(x_t, state)
            scope = engine.scope
            step = getattr(scope, "step", None)
            if step is None:
                raise ValueError(f"first_divergence: {type(_cell).__name__} ran outside micrornn's time loop "
                                 "(no step to attach the probes to)")
            entries = tuple(out) if isinstance(out, (tuple, list)) else (out,)
            if not all(isinstance(e, Tensor) for e in entries):
                raise TypeError(f"first_divergence: {type(_cell).__name__} returned {type(out).__name__}, not a "
                                "Tensor h or a tuple (h, ...) of Tensors")
            shifted = []
            for k, e in enumerate(entries):
                probe = _probes.setdefault((step, k), Tensor(np.zeros(e.shape), requires_grad=True))
                shifted.append(e + probe)
            return type(out)(shifted) if isinstance(out, (tuple, list)) else shifted[0]

        cell.forward = forward  # an instance attribute: the class's forward is untouched
        patched.append(cell)
    try:
        yield
    finally:
        for cell in patched:
            del cell.forward


def _unrolled_cells(model) -> dict:
    """{(layer, direction): cell} of a model's recurrent stack (PyTorch's order in ``rnn.cells``)."""
    rnn = getattr(model, "rnn", model)
    cells = list(getattr(rnn, "cells", None) or [])
    if not cells:
        raise TypeError(f"first_divergence: {type(model).__name__} has no recurrent layer with cells to probe")
    D = 2 if getattr(rnn, "bidirectional", False) else 1
    reverse = list(getattr(rnn, "reverse_cells", None) or [])
    if reverse:  # the built-in stacks keep the reverse direction apart
        return {**{(l, 0): c for l, c in enumerate(cells)}, **{(l, 1): c for l, c in enumerate(reverse)}}
    for cell in cells:
        if hasattr(cell, "project") and hasattr(cell, "step"):
            raise ValueError(f"first_divergence: {type(cell).__name__} runs on the time loop's fused fast path, "
                             "which the offsets cannot reach, and this model has no analytic route")
    return {(k // D, k % D): c for k, c in enumerate(cells)}


def divergence_without_reference(model, x, targets, h0=None, eps=1e-6, atol=1e-5, rtol=1e-3, loss="sum"):
    """First divergence for a cell with no analytic route: for each layer, direction, step and state
    entry (h_t, c_t, ...), the engine's dL/d(entry) against central differences, walking back in time
    from the last step, top layer first. The loss is ``sequence_loss`` (``model.loss`` when
    the model has one). Returns the same dict as ``first_divergence`` (quantity: the entry's name)."""
    cells, probes = _unrolled_cells(model), {}
    params = list(model.parameters())
    earlier = [p.grad for p in params]
    with _offsets(cells, probes):
        root = sequence_loss(model, x, targets, h0, loss)
        root.backward()
        graph = {key: {sk: (np.zeros(p.shape) if p.grad is None else p.grad.copy()) for sk, p in ps.items()}
                 for key, ps in probes.items()}
        for p, g in zip(params, earlier):
            p.grad = g
        loss_fn = lambda *ts: sequence_loss(model, x, targets, h0, loss)  # noqa: E731 (probes perturbed in place)
        T = max(t for ps in probes.values() for t, _ in ps)
        layers, D = max(l for l, _ in probes) + 1, max(d for _, d in probes) + 1
        for l, d, t in _walk(T, layers, D):
            ps = probes.get((l, d), {})
            entries = sorted(k for step, k in ps if step == t + 1)
            names = _entry_names(cells[(l, d)], len(entries))
            for k in entries:
                probe = ps[(t + 1, k)]
                g, n = graph[(l, d)][(t + 1, k)], numerical_grad(loss_fn, [probe], eps)[0]
                bad = np.abs(g - n) > atol + rtol * np.abs(n)
                if bad.any():
                    index = tuple(int(i) for i in np.argwhere(bad)[0])
                    H = g.shape[-1]
                    return {"layer": l, "direction": d, "t": t + 1, "T": T, "quantity": names[k], "gate": None,
                            "other_gates": [], "unit": index[-1] % H, "index": index,
                            "disagree": [("graph", "numeric")], "no_reference": True,
                            "values": {"graph": float(g[index]), "numeric": float(n[index])}}
    return None


def describe(found) -> str:
    """One or two lines for first_divergence's result."""
    if found is None:
        return ("per-step check: dL/dh_t (dL/dc_t) and the gate gradients agree between graph, analytic "
                "and numeric at every step; the disagreement lies outside the recurrence (head, layer "
                "plumbing or the fused path)")
    t, q, gate = found["t"], found["quantity"], found["gate"]
    direction = "forward" if found["direction"] == 0 else "reverse"
    what = {"h": f"dL/dh_{t}", "c": f"dL/dc_{t} (along the cell line)"}.get(
        q, f"gate {gate}: dL/da_{gate} (pre-activation, summed over the batch)")
    if found.get("no_reference"):  # a cell with no analytic route: the state entry's total gradient
        what = f"dL/d{q}_{t} (no analytic route for this cell: graph vs central differences)"
    where = f"unit {found['unit']}" if q == "gates" else f"batch row {found['index'][0]}, unit {found['unit']}"
    if found.get("other_gates"):
        where += f" (then through it also gate {', '.join(found['other_gates'])})"
    values = ", ".join(f"{r} {v:.6e}" for r, v in found["values"].items())
    pairs = found["disagree"]
    odd = [r for r in ("graph", "analytic", "numeric") if len(pairs) > 1 and all(r in p for p in pairs)]
    verdict = (f"the {odd[0]} route parts from the other two" if odd
               else "; ".join(" vs ".join(p) for p in pairs) + " disagree")
    return (f"first divergence going back in time: layer {found['layer']} ({direction}), step t={t} of "
            f"{found['T']}, {what}, {where}: {values}\n  -> {verdict}")


@contextmanager
def wrong_derivative(kind, gate, factor=1.5):
    """Deliberately scale the analytic derivative of one gate by ``factor`` (to watch the check catch it)."""
    if kind == "rnn":
        if gate != "a":
            raise ValueError(f"wrong_derivative: the vanilla RNN has one pre-activation 'a', got {gate!r}")
        original = vanilla._act_derivative
        vanilla._act_derivative = lambda hs, nl: original(hs, nl) * factor
        try:
            yield
        finally:
            vanilla._act_derivative = original
        return
    module = {"lstm": lstm, "gru": gru}[kind]
    if gate not in module.GATES:
        raise ValueError(f"wrong_derivative: {kind} gates are {module.GATES}, got {gate!r}")
    k, original = module.GATES.index(gate), module.gate_slopes

    def wrong(gates):
        slopes = original(gates)
        H = slopes.shape[-1] // len(module.GATES)
        slopes[..., k * H:(k + 1) * H] *= factor
        return slopes

    module.gate_slopes = wrong
    try:
        yield
    finally:
        module.gate_slopes = original
