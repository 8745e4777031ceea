"""micrornn.compile: trace a function once per input signature into a flat program, then replay it.

The first call with a new signature (shapes and dtypes of the tensor and array arguments, values of
the others) runs the function on the engine with a recorder switched on (``state.record``, one check
in ``apply``): every primitive call is written down with the values it read and wrote. Later calls
replay that program on plain arrays: each primitive's ``forward`` in order, and for backward each
``vjp`` in reverse with the engine's own gradient accumulation (``backward.ArrayGrads``). No Tensor is
made per op; each output is one Tensor whose backward runs the recorded VJPs.

The rule is jax.jit's: shapes are static and Python control flow must not depend on tensor values.
The trace refuses what it can see break that rule: a traced tensor turned into a Python bool, number
or index. See docs/compile.md.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from micrornn.engine.backward import state
from micrornn.engine.program import Program
from micrornn.engine.tensor import Tensor, _leaf
from micrornn.engine.trace import Tracer, ValueDependentError, check_same_program, random_array

__all__ = ["compile", "Compiled", "ValueDependentError", "random_array"]


class _Static:
    """An argument named static: its value (an array's bytes) keys the program and the trace sees it as it is."""

    __slots__ = ("value", "key")

    def __init__(self, value):
        data = value.data if isinstance(value, Tensor) else value
        if isinstance(data, np.ndarray):
            self.key = ("static array", data.shape, data.dtype.str, data.tobytes())
        elif isinstance(data, (tuple, list)) and all(isinstance(v, (int, np.integer)) for v in data):
            self.key = ("static ints", tuple(int(v) for v in data))
        else:
            try:
                hash(data)
            except TypeError:
                raise TypeError(f"micrornn.compile: the static argument of type {type(data).__name__} is neither an "
                                "array nor hashable; its value keys the program") from None
            self.key = ("static", type(data).__name__, data)
        self.value = value


def _flatten(tree, leaves: list, key: list):
    """Append the tensors and arrays of nested tuples/lists/dicts to ``leaves`` and describe the tree
    (shapes and dtypes of leaves, values of everything else) in ``key``."""
    if isinstance(tree, _Static):
        key.append(tree.key)
    elif isinstance(tree, Tensor):
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
    if isinstance(tree, _Static):
        return tree.value
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
        cell.cell_contents  # noqa: B018 (reading an empty cell raises: the read is the test)
        return True
    except ValueError:  # an empty closure cell
        return False


class Compiled:
    """A function that traces itself once per input signature and replays the program afterwards."""

    def __init__(self, fn: Callable, static_argnums=(), static_argnames=()):
        if not callable(fn):
            raise TypeError(f"micrornn.compile: expected a callable, got {type(fn).__name__}")
        self.fn, self.__wrapped__ = fn, fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.programs: dict = {}
        self._modules = _modules(fn)
        self.static_argnums = tuple(static_argnums) if isinstance(static_argnums, (tuple, list)) else (static_argnums,)
        self.static_argnames = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        code = getattr(fn, "__code__", None)
        if code is not None:  # a static name of a positional parameter marks its position too
            params = code.co_varnames[:code.co_argcount]
            self.static_argnums += tuple(params.index(n) for n in self.static_argnames if n in params)

    def _marked(self, args, kwargs):
        """args and kwargs with the static arguments wrapped (their values key the program)."""
        if not self.static_argnums and not self.static_argnames:
            return args, kwargs
        args = tuple(_Static(a) if k in self.static_argnums else a for k, a in enumerate(args))
        kwargs = {n: _Static(v) if n in self.static_argnames else v for n, v in kwargs.items()}
        return args, kwargs

    def __repr__(self):
        return f"<micrornn.compile of {self.__name__}: {len(self.programs)} program(s)>"

    def _key(self, args, kwargs):
        leaves, key = [], []
        _flatten((args, kwargs), leaves, key)
        return leaves, (tuple(key), state.grad_enabled, tuple(m.training for m in self._modules
                                                              if hasattr(m, "training")))

    def program(self, *args, **kwargs) -> Program:
        """The program for this call's signature (traced now when it is new)."""
        args, kwargs = self._marked(args, kwargs)
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
        args, kwargs = self._marked(args, kwargs)
        leaves, key = self._key(args, kwargs)
        program = self.programs.get(key)
        if program is None or not program.current():
            program, first = self._trace(key, args, kwargs, leaves)
            return program.outputs_of(program.run(leaves, first), leaves)
        return program.outputs_of(program.run(leaves), leaves)

    def _trace(self, key, args, kwargs, leaves):
        """Trace fn on the call's values, and once more on shuffled values to check that no input value
        was baked in; return the new program and the first trace's random draws."""
        tracer, result = self._record(args, kwargs, [_data(leaf) for leaf in leaves], leaves)
        draws = [v.data for v in tracer.kinds["random"]]
        shuffled = [_shuffled(_data(leaf)) for leaf in leaves]
        if any(not np.array_equal(a, _data(b)) for a, b in zip(shuffled, leaves)):
            try:
                check, _ = self._record(args, kwargs, shuffled, leaves, draws)
            except ValueDependentError:
                raise
            except Exception:  # noqa: BLE001  (shuffled values the function refuses: no check possible)
                check = None
            if check is not None:
                check_same_program(tracer, check, self.__name__)
        outputs = []
        _flatten_outputs(result, outputs)
        outputs = [tracer.value_of(t) for t in outputs]
        names = {}
        for module in self._modules:
            names.update({id(p): n for n, p in module.named_parameters()})
        program = Program(self.__name__, tracer.kinds, tracer.calls, outputs, result, names, grad=state.grad_enabled)
        self.programs[key] = program
        return program, draws

    def _record(self, args, kwargs, arrays, leaves, draws=None):
        """Run fn once with the recorder on, the tensor and array arguments replaced by tensors over
        copies of ``arrays`` (buffers the program owns and refills on every call)."""
        tracer = Tracer(_leaf(np.empty(0))._id + 1, draws)
        stand_ins = []
        for array, leaf in zip(arrays, leaves):
            t = Tensor(np.array(array, copy=True, order="C"), requires_grad=getattr(leaf, "requires_grad", False),
                       name=getattr(leaf, "name", None))
            tracer.add(t, "input")
            stand_ins.append(t)
        previous, state.record = state.record, tracer
        try:
            traced_args, traced_kwargs = _rebuild((args, kwargs), iter(stand_ins))
            result = self.fn(*traced_args, **traced_kwargs)
        finally:
            state.record = previous
        return tracer, result


def _data(leaf) -> np.ndarray:
    return leaf.data if isinstance(leaf, Tensor) else leaf


def _shuffled(array: np.ndarray) -> np.ndarray:
    """The same values in another order (still valid indices, lengths, labels): the checking trace's input."""
    return np.roll(array.reshape(-1), 1).reshape(array.shape)  # differs unless every value is the same


def _flatten_outputs(tree, leaves) -> None:
    """The output tensors of nested tuples/lists (anything else is returned as it was traced)."""
    if isinstance(tree, Tensor):
        leaves.append(tree)
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            _flatten_outputs(item, leaves)


def compile(fn: Callable, static_argnums=(), static_argnames=()) -> Compiled:  # noqa: A001  (as jax.jit)
    """Trace ``fn`` once per input signature into a program of primitive calls and replay it after.

    Tensors and arrays among the arguments are inputs (their shapes and dtypes key the program; NumPy
    arrays reach ``fn`` as constant Tensors); every other argument is static (its value keys the
    program), and so are the arguments at ``static_argnums`` / named in ``static_argnames`` (an array
    there, e.g. ``lengths``, reaches ``fn`` as it is and its values key the program: one program per
    distinct value). The outputs are Tensors whose ``backward()`` fills ``.grad`` as the uncompiled call
    would. A result's arrays are valid until backward has run and the next call replays the program.
    """
    return Compiled(fn, static_argnums, static_argnames)
