"""micrornn.compile: trace a function once per input signature into a flat program, then replay it.

The first call with a new signature (shapes and dtypes of the tensor and array arguments, values of
the others) runs the function on the engine with a recorder switched on (``state.record``, one check
in ``apply``): every primitive call is written down with the values it read and wrote. Later calls
replay that program on plain arrays: each primitive's ``forward`` in order, and for backward each
``vjp`` in reverse with the engine's own gradient accumulation (``backward._Grads``). No Tensor is
made per op; each output is one Tensor whose backward runs the recorded VJPs.

The rule is jax.jit's: shapes are static and Python control flow must not depend on tensor values.
The trace refuses what it can see break that rule: a traced tensor turned into a Python bool, number
or index. See docs/compile.md.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from micrornn.engine.backward import state
from micrornn.engine.program import Call, Derived, Program, Value
from micrornn.engine.tensor import Tensor, _leaf, apply

__all__ = ["compile", "Compiled", "ValueDependentError", "random_array"]


class ValueDependentError(RuntimeError):
    """A function being traced by micrornn.compile read a traced tensor's value into Python."""


def random_array(draw: Callable[[], np.ndarray], dropout_p: float | None = None) -> Tensor:
    """A constant Tensor of ``draw()``; inside a compiled function it is a program input that is
    drawn again on every call (dropout's masks), never a value baked into the program.
    ``dropout_p`` says the draw is a dropout mask (kept / (1 - p)), for code generated from a program."""
    out = _leaf(draw())
    if state.record is not None:
        state.record.random(out, (draw, dropout_p))
    return out


class _Tracer:
    """The recorder installed as ``state.record`` while a function is traced."""

    def __init__(self, first_id: int):
        self.first_id = first_id  # tensors numbered below this existed before the trace (parameters)
        self.values, self.arrays, self.keep, self.calls = {}, {}, [], []
        self.kinds = {"input": [], "param": [], "const": [], "random": [], "op": []}

    def add(self, t: Tensor, kind: str, source=None) -> Value:
        """Register tensor t as a value of the given kind."""
        v = Value(t.data, kind, source, t.requires_grad, t.name)
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

    def random(self, out, draw) -> None:
        """Record a random draw: a program input drawn again on every call."""
        self.add(out, "random", draw)

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


def _flatten(tree, leaves: list, key: list):
    """Append the tensors and arrays of nested tuples/lists/dicts to ``leaves`` and describe the tree
    (shapes and dtypes of leaves, values of everything else) in ``key``."""
    if isinstance(tree, Tensor):
        leaves.append(tree)
        key.append(("T", tree.data.shape, tree.data.dtype.str, tree.requires_grad))
    elif isinstance(tree, np.ndarray):
        leaves.append(tree)
        key.append(("A", tree.shape, tree.dtype.str))
    elif isinstance(tree, (tuple, list)):
        key.append((type(tree).__name__, len(tree)))
        for item in tree:
            _flatten(item, leaves, key)
    elif isinstance(tree, dict):
        key.append(("dict", tuple(tree)))
        for item in tree.values():
            _flatten(item, leaves, key)
    else:
        try:
            hash(tree)
        except TypeError:
            raise TypeError(f"micrornn.compile: argument of type {type(tree).__name__} is neither a tensor, an "
                            "array nor a hashable value; the signature of a call keys its program") from None
        key.append(("S", type(tree).__name__, tree))


def _rebuild(tree, leaves):
    """The tree with its tensor and array leaves taken in order from the iterator ``leaves``."""
    if isinstance(tree, (Tensor, np.ndarray)):
        return next(leaves)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_rebuild(item, leaves) for item in tree)
    if isinstance(tree, dict):
        return {k: _rebuild(v, leaves) for k, v in tree.items()}
    return tree


def _modules(fn) -> list:
    """The Modules a function belongs to: itself, its ``__self__``, the Modules in its closure and the
    global names its code reads."""
    found = [fn, getattr(fn, "__self__", None)]
    found += [cell.cell_contents for cell in (getattr(fn, "__closure__", None) or ()) if _has_contents(cell)]
    code, scope = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
    found += [scope.get(name) for name in (code.co_names if code is not None else ())]
    unique = {id(m): m for m in found if callable(getattr(m, "named_parameters", None))}
    return list(unique.values())


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:  # an empty closure cell
        return False


class Compiled:
    """A function that traces itself once per input signature and replays the program afterwards."""

    def __init__(self, fn: Callable):
        if not callable(fn):
            raise TypeError(f"micrornn.compile: expected a callable, got {type(fn).__name__}")
        self.fn, self.__wrapped__ = fn, fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.programs: dict = {}
        self._modules = _modules(fn)

    def __repr__(self):
        return f"<micrornn.compile of {self.__name__}: {len(self.programs)} program(s)>"

    def _key(self, args, kwargs):
        leaves, key = [], []
        _flatten((args, kwargs), leaves, key)
        return leaves, (tuple(key), state.grad_enabled, tuple(m.training for m in self._modules
                                                              if hasattr(m, "training")))

    def program(self, *args, **kwargs) -> Program:
        """The program for this call's signature (traced now when it is new)."""
        leaves, key = self._key(args, kwargs)
        program = self.programs.get(key)
        if program is None or not program.current():
            program = self._trace(key, args, kwargs, leaves)[0]
        return program

    def __call__(self, *args, **kwargs):
        if state.push_tangent is not None:
            raise NotImplementedError(
                f"jvp through micrornn.compile({self.__name__}): a compiled program has reverse mode only; "
                "higher order and forward mode stay on the uncompiled path: pass the function itself "
                f"(compiled.__wrapped__) to micrornn.jvp")
        if state.record is not None:  # called inside another trace: its ops go into that program
            return self.fn(*args, **kwargs)
        leaves, key = self._key(args, kwargs)
        program = self.programs.get(key)
        if program is None or not program.current():
            program, first = self._trace(key, args, kwargs, leaves)
            return program.outputs_of(program.run(leaves, first), leaves)
        return program.outputs_of(program.run(leaves), leaves)

    def _trace(self, key, args, kwargs, leaves):
        """Run fn once with the recorder on; return the new program and the trace's random draws."""
        tracer = _Tracer(_leaf(np.empty(0))._id + 1)
        stand_ins = []
        for leaf in leaves:  # the function sees tensors over buffers the program owns and refills
            data = leaf.data if isinstance(leaf, Tensor) else leaf
            t = Tensor(np.array(data, copy=True), requires_grad=getattr(leaf, "requires_grad", False),
                       name=getattr(leaf, "name", None))
            tracer.add(t, "input")
            stand_ins.append(t)
        previous, state.record = state.record, tracer
        try:
            traced_args, traced_kwargs = _rebuild((args, kwargs), iter(stand_ins))
            result = self.fn(*traced_args, **traced_kwargs)
        finally:
            state.record = previous
        out_leaves = []
        _flatten_outputs(result, out_leaves)
        outputs = [tracer.value_of(t) for t in out_leaves]
        names = {}
        for module in self._modules:
            names.update({id(p): n for n, p in module.named_parameters()})
        program = Program(self.__name__, tracer.kinds, tracer.calls, outputs, result, names, grad=state.grad_enabled)
        self.programs[key] = program
        return program, [v.data for v in tracer.kinds["random"]]


def _flatten_outputs(tree, leaves) -> None:
    """The output tensors of nested tuples/lists (anything else is returned as it was traced)."""
    if isinstance(tree, Tensor):
        leaves.append(tree)
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            _flatten_outputs(item, leaves)


def compile(fn: Callable) -> Compiled:  # noqa: A001  (micrornn.compile, as jax.jit / torch.compile)
    """Trace ``fn`` once per input signature into a program of primitive calls and replay it after.

    Tensors and arrays among the arguments are inputs (their shapes and dtypes key the program; NumPy
    arrays reach ``fn`` as constant Tensors); every other argument is static (its value keys the
    program). The outputs are Tensors whose ``backward()`` fills ``.grad`` as the uncompiled call
    would. A result's arrays are valid until backward has run and the next call replays the program.
    """
    return Compiled(fn)
