"""The recorder behind micrornn.compile, and the check that a trace did not bake input values in.

``Tracer`` is installed as ``state.record`` while a function is traced: ``apply`` reports every
primitive call to it, comparisons and ``detach`` report forward-only steps, ``random_array`` reports
random draws, and conversions to Python values ask it first (``read``), so that a traced value never
silently becomes a constant. ``check_same_program`` compares two traces of one function made on
different input values: any constant or attribute that differs was computed from the inputs outside
the engine (NumPy on ``.data``, ``np.asarray(t)``...) and would be replayed stale.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from micrornn.engine.backward import state
from micrornn.engine.program import Call, Derived, Value, arrays_in
from micrornn.engine.tensor import Tensor, _leaf

class ValueDependentError(RuntimeError):
    """A function being traced by micrornn.compile read a traced tensor's value into Python."""


def random_array(draw: Callable[[], np.ndarray], dropout_p: float | None = None) -> Tensor:
    """A constant Tensor of ``draw()``; inside a compiled function it is a program input that is
    drawn again on every call (dropout's masks), never a value baked into the program.
    ``dropout_p`` says the draw is a dropout mask (kept / (1 - p)), for code generated from a program."""
    if state.record is not None:
        return state.record.random(draw, dropout_p)
    return _leaf(draw())


class Tracer:
    """The recorder installed as ``state.record`` while a function is traced."""

    def __init__(self, first_id: int, replay_draws=None):
        self.first_id = first_id  # tensors numbered below this existed before the trace (parameters)
        self.replay_draws = replay_draws  # a checking trace reuses the first trace's random draws
        self.values, self.arrays, self.keep, self.calls = {}, {}, [], []
        self.kinds = {"input": [], "param": [], "const": [], "random": [], "op": []}

    def add(self, t: Tensor, kind: str, source=None) -> Value:
        """Register tensor t as a value of the given kind."""
        v = Value(t.data, kind, source, t.requires_grad, t.name, t.scope)
        self.values[id(t)] = v
        self.keep.append(t)  # alive until the trace ends, so no id is reused
        self.kinds[kind].append(v)
        if kind != "const":
            self.arrays[id(t.data)] = v
        return v

    def value_of(self, t: Tensor) -> Value:
        """The value of a tensor an op reads: known, a new wrapper of a known array (``where``'s
        condition), a parameter (made before the trace) or a constant."""
        v = self.values.get(id(t))
        if v is None:
            v = self.arrays.get(id(t.data)) if t._id >= self.first_id else None
            if v is not None:
                self.values[id(t)] = v
                self.keep.append(t)
            else:
                v = self.add(t, "param", t) if t._id < self.first_id else self.add(t, "const")
        return v

    def op(self, out, prim, inputs, arrays, attrs) -> None:
        """Record one primitive call (the hook in ``apply``)."""
        ins = tuple(self.value_of(t) for t in inputs)
        convert = any(a is not t.data for a, t in zip(arrays, inputs))  # apply's int -> float rule ran
        needs = tuple(t.requires_grad for t in inputs) if out.requires_grad else None
        self.calls.append(Call(prim, ins, self.add(out, "op"), dict(attrs), needs, convert))

    def derived(self, out, name, compute, *inputs) -> None:
        """Record a value computed outside the primitive table with no gradient (comparisons, detach)."""
        ins = tuple(self.value_of(t) for t in inputs)
        self.calls.append(Call(Derived(name, compute), ins, self.add(out, "op"), {}, None, False))

    def random(self, draw, dropout_p) -> Tensor:
        """A random draw as a program input drawn again on every call; a checking trace reuses the
        first trace's draws (and leaves the random generator alone)."""
        if self.replay_draws is not None:
            out = _leaf(self.replay_draws[len(self.kinds["random"])])
        else:
            out = _leaf(draw())
        self.add(out, "random", (draw, dropout_p))
        return out

    def read(self, t: Tensor, what: str) -> None:
        """Refuse to turn a traced value into a Python value (that would bake it into the program)."""
        v = self.values.get(id(t)) or self.arrays.get(id(t.data))
        traced = v.kind != "const" if v is not None else t._id < self.first_id and t.requires_grad
        if traced:
            raise ValueDependentError(
                f"micrornn.compile: {what} of a traced tensor (shape {t.shape}) reads its value into Python "
                "while the function is traced, so the program would keep this call's value; shapes are static "
                "and control flow must not depend on tensor values: compute it with tensor ops (e.g. "
                "micrornn.where), pass it as a plain (static) argument, or call the function uncompiled")




def check_same_program(first: Tracer, second: Tracer, name: str) -> None:
    """Raise ValueDependentError unless two traces on different input values made the same program
    (calls, constants and attribute arrays that are not views of the inputs)."""
    def fail(what):
        raise ValueDependentError(
            f"micrornn.compile({name}): {what} changed with the input values while the function was traced, so "
            "the program would replay this call's values; it was computed from an input outside the engine (NumPy "
            "on .data, np.asarray of a tensor): compute it with tensor ops, or mark that argument static "
            "(micrornn.compile(fn, static_argnames=('lengths',)) or static_argnums=...)")
    if [c.prim.name for c in first.calls] != [c.prim.name for c in second.calls]:
        fail("the sequence of operations")
    for k, (a, b) in enumerate(zip(first.kinds["const"], second.kinds["const"])):
        if a.data.shape != b.data.shape or not np.array_equal(a.data, b.data, equal_nan=a.data.dtype.kind == "f"):
            fail(f"constant c{k} ({a.type_text()})")
    inputs = [v.data for v in first.kinds["input"]]
    for c1, c2 in zip(first.calls, second.calls):
        for key, value in c1.attrs.items():
            if key == "out":
                continue  # a destination the op writes, not something it reads
            for a, b in zip(arrays_in(value), arrays_in(c2.attrs.get(key))):
                if any(np.may_share_memory(a, buf) for buf in inputs):
                    continue  # a view of an input buffer: refilled on every call
                if a.shape != b.shape or not np.array_equal(a, b):
                    fail(f"the {key}= of a {c1.prim.name} call")
