"""What the pictures need to know about any cell, read from the cell itself.

``step_edges`` runs one step of a cell on stand-in inputs and reads the engine graph it records:
which state entries (h_t, c_t, ...) depend on x_t, on the previous entries and on each other, and
which of the cell's own parameters scale each dependency (a parameter multiplied, or matrix-
multiplied, with something that depends on the source). Nothing is assumed about U, W or b.

Optional protocol attributes (``state_names``, ``gate_names``, ``gates``, ``kind``) are read with
getattr and a default; what a view cannot show is refused by ``refuse`` in one line naming the cell.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micrornn.engine.tensor import Tensor, no_grad
from micrornn.nn.module import Module, Parameter

BUILT_IN = ("rnn", "lstm", "gru")
_SCALING_OPS = {"mul": (0, 1), "matmul": (0, 1), "matmul_add": (0, 1), "div": (0, 1)}  # args that multiply


def refuse(what: str, cell, lacks: str, error=ValueError):
    """The one-line error a view raises for a cell it cannot show."""
    return error(f"{what}: {type(cell).__name__} {lacks}")


def kind_of(cell) -> str | None:
    """'rnn' | 'lstm' | 'gru' for the built-in cells, None for a user's cell."""
    kind = getattr(cell, "kind", None) or getattr(cell, "cell_kind", None)
    return kind if kind in BUILT_IN else None


def stack_parts(model):
    """(recurrent stack, head or None, [forward cell of each layer]) of a model, a stack or a bare cell."""
    rnn = getattr(model, "rnn", model)
    cells = getattr(rnn, "cells", None)
    if cells is None:
        if isinstance(rnn, Module) and callable(getattr(rnn, "forward", None)) and rnn is model:
            return rnn, None, [rnn]  # a bare cell: one layer, no head
        raise TypeError(f"expected a SequenceModel, a recurrent layer or a cell, got {type(model).__name__}")
    cells = list(cells)
    layers = int(getattr(rnn, "num_layers", 1) or 1)
    if getattr(rnn, "bidirectional", False) and len(cells) == 2 * layers:
        cells = cells[::2]  # PyTorch's order: layer 0 forward, layer 0 reverse, layer 1 forward, ...
    return rnn, getattr(model, "head", None), cells[:layers]


def state_names(cell, n_entries: int) -> tuple:
    """The cell's ``state_names``, else ("h",) for a Tensor state and h, c, s2, ... for a tuple."""
    names = tuple(getattr(cell, "state_names", ()) or ())
    if len(names) == n_entries:
        return names
    defaults = ("h", "c") + tuple(f"s{k}" for k in range(2, n_entries))
    return defaults[:n_entries]


def input_size_of(cell, layer_below_size=None, given=None, what: str = "draw_unrolled") -> int:
    """The width of x_t the cell reads: given, the cell's input_size, the layer below's size, else the
    first width taken from the cell's 2-D parameters that one step accepts."""
    for size in (given, getattr(cell, "input_size", None), layer_below_size):
        if size is not None:
            return int(size)
    zero_state(cell, 1, np.float64, what)  # a cell with no state to start from is refused as such
    widths = dict.fromkeys(n for p in cell.parameters() if p.ndim == 2 for n in reversed(p.shape))
    for width in widths:
        try:
            step_edges(cell, width, what)
        except (ValueError, TypeError, IndexError):  # a width the cell does not take: try the next one
            continue
        return width
    raise refuse(what, cell, "has no input_size attribute; pass input_size=... to draw it")


def zero_state(cell, batch: int, dtype, what: str = "viz"):
    """The cell's initial_state(batch), or zeros (B, hidden_size); a TypeError naming the cell otherwise."""
    make = getattr(cell, "initial_state", None)
    if make is not None:
        return make(batch)
    size = getattr(cell, "hidden_size", None)
    if size is None:
        raise refuse(what, cell, "has neither hidden_size nor initial_state(batch)", TypeError)
    return Tensor(np.zeros((batch, int(size)), dtype=dtype))


def as_entries(state) -> tuple:
    """A state as a tuple of entries (h first)."""
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


def call_cell(cell, x, state, what: str):
    """cell(x, state), with a one-line error naming the cell when it does not return a state of Tensors."""
    out = cell(x, state)
    entries = as_entries(out)
    if not entries or not all(isinstance(e, Tensor) for e in entries):
        raise refuse(what, cell, f"returned {type(out).__name__}, not a Tensor h or a tuple (h, ...) of "
                                 "Tensors", TypeError)
    return out


def check_first_step(model, x, what: str) -> None:
    """Run the first cell once on x[0] from its zero state and refuse, naming the cell, a state that is
    not a Tensor h or a tuple (h, ...) of Tensors (before the time loop meets it). Index inputs skip."""
    x = np.asarray(getattr(x, "data", x))
    _, _, cells = stack_parts(model)
    if x.ndim < 3 or x.dtype.kind != "f":
        return
    cell = cells[0]
    with no_grad():
        call_cell(cell, Tensor(x[0]), zero_state(cell, x.shape[1], x.dtype, what), what)


@dataclass
class StepEdges:
    """One step of a cell as a picture sees it.

    names: the state entries (h first); edges: {(source, target): [parameter names]} where a source is
    "x", ("prev", k) for entry k of the previous step or ("new", k) for entry k of this step, and a
    target is an entry index; params: the cell's parameter names in attribute order."""

    names: tuple
    edges: dict
    params: tuple


def step_edges(cell, input_size: int, what: str = "draw_unrolled") -> StepEdges:
    """Trace one step of ``cell`` on stand-in inputs and read its dependencies (see the module doc)."""
    dtype = next((p.dtype for p in cell.parameters()), np.float64)
    start = zero_state(cell, 1, dtype, what)
    entries_in = [Tensor(np.full(np.shape(getattr(e, "data", e)), 0.5, dtype=dtype), requires_grad=True)
                  for e in as_entries(start)]
    x = Tensor(np.full((1, input_size), 0.5, dtype=dtype), requires_grad=True)
    state_in = entries_in[0] if not isinstance(start, (tuple, list)) else type(start)(entries_in)
    entries_out = as_entries(call_cell(cell, x, state_in, what))
    if len(entries_out) != len(entries_in):
        raise refuse(what, cell, f"takes a state of {len(entries_in)} entries but returned "
                                            f"{len(entries_out)}")
    names = {id(p): n for n, p in cell.named_parameters()}
    sources = {id(x): "x", **{id(e): ("prev", k) for k, e in enumerate(entries_in)}}
    edges = {}
    for k, out in enumerate(entries_out):
        stops = dict(sources)
        stops.update({id(o): ("new", j) for j, o in enumerate(entries_out) if j != k and id(o) not in sources})
        if id(out) in sources:  # the entry is passed on unchanged
            edges[(sources[id(out)], k)] = []
            continue
        for source, labels in _dependencies(out, stops, names).items():
            edges[(source, k)] = [n for n in names.values() if n in labels]
    order = lambda e: (e[1], e[0] != "x", e[0] if e[0] != "x" else ())  # noqa: E731
    edges = {e: edges[e] for e in sorted(edges, key=order)}  # a fixed order: the DOT text is reproducible
    return StepEdges(state_names(cell, len(entries_out)), edges, tuple(names.values()))


def _dependencies(out, stops, names) -> dict:
    """{source: set of parameter names that scale it on its way to out}, walking out's graph down to
    the stop nodes (the step's inputs and the other entries of the same step)."""
    order, seen, stack = [], set(), [out]
    while stack:  # every node between out and the stops, each once
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        if id(node) not in stops or node is out:
            stack.extend(node.parents)
    memo = {}
    found = {s: set() for s in _reach(out, memo, stops, out)}
    for node in order:
        positions = _SCALING_OPS.get(getattr(node, "op_name", None))
        if positions is None or (id(node) in stops and node is not out):
            continue
        args = [node.parents[i] for i in positions if i < len(node.parents)]
        weights = set().union(*(_params(a, names) for a in args if not _reach(a, memo, stops, out)))
        for a in args:
            for source in _reach(a, memo, stops, out):
                found.setdefault(source, set()).update(weights)
    return found


def _reach(node, memo, stops, out) -> set:
    """The sources node depends on (iterative, memoised in memo)."""
    stack = [node]
    while stack:
        n = stack[-1]
        if id(n) in memo:
            stack.pop()
        elif id(n) in stops and n is not out:
            memo[id(n)] = {stops[id(n)]}
            stack.pop()
        else:
            todo = [p for p in n.parents if id(p) not in memo]
            if todo:
                stack.extend(todo)
                continue
            memo[id(n)] = set().union(*(memo[id(p)] for p in n.parents))
            stack.pop()
    return memo[id(node)]


def _params(node, names) -> set:
    """Names of the cell parameters a data-free subgraph (a weight, its transpose or slice) is made of."""
    found, stack, seen = set(), [node], set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, Parameter) and id(n) in names:
            found.add(names[id(n)])
        stack.extend(n.parents)
    return found


def cell_prefix(model, cell) -> str:
    """The dotted path of ``cell`` inside ``model`` ("rnn.cells.0"), read from the parameter names."""
    own = cell.named_parameters()
    if not own:
        return type(cell).__name__
    first_name, first = own[0]
    for name, p in (model.named_parameters() if isinstance(model, Module) else []):
        if p is first and name.endswith(first_name):
            return name[:-len(first_name)].rstrip(".") or type(cell).__name__
    return type(cell).__name__
