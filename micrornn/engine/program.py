"""A traced program: a flat list of primitive calls over numbered values, replayed on plain arrays.

``Program.run`` runs each call's ``forward`` in order and keeps what the VJPs need; each output of a
run is one Tensor recorded by ``apply`` (the ``compiled`` primitive, whose parents are the program's
inputs and parameters that require grad) and whose VJP runs ``Program.backward``: the recorded VJPs in
reverse, with the engine's gradient accumulation (``backward.ArrayGrads``: unbroadcast, IndexGrad,
ProductGrad), so the gradients are the uncompiled ones, in the same order of additions.
"""
from __future__ import annotations

import numpy as np

from micrornn.engine import ops
from micrornn.engine.backward import ArrayGrads
from micrornn.engine.tensor import Tensor, _check_float_dtypes, _leaf, apply


class Value:
    """One array of a program: an input, a parameter, a constant, a random draw or an op's output."""

    __slots__ = ("data", "kind", "source", "requires_grad", "name", "shape", "dtype", "label", "scope")

    def __init__(self, data, kind, source, requires_grad, name, scope=None):
        self.data, self.kind, self.source, self.requires_grad, self.name = data, kind, source, requires_grad, name
        self.shape, self.dtype, self.label = data.shape, data.dtype, "?"
        self.scope = scope  # the tensor's scope label when traced (an RNN's layer and step), for pictures

    def __repr__(self):
        return f"{self.label}: {self.type_text()}"

    def type_text(self) -> str:
        """dtype[shape], as in float64[25,1,100]."""
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


class Call:
    """One primitive call: output = prim.forward(*inputs, **attrs); needs is None when no gradient flows."""

    __slots__ = ("prim", "inputs", "output", "attrs", "needs", "convert")

    def __init__(self, prim, inputs, output, attrs, needs, convert):
        self.prim, self.inputs, self.output, self.attrs = prim, inputs, output, attrs
        self.needs, self.convert = needs, convert


class Derived:
    """A forward-only step recorded outside the primitive table (a comparison, a detach)."""

    __slots__ = ("name", "compute")

    def __init__(self, name, compute):
        self.name, self.compute = name, compute

    def forward(self, *arrays):
        return self.compute(*arrays), None


class _Run:
    """One replay: its generation (results go stale at the next replay), saved arrays and outputs."""

    __slots__ = ("program", "generation", "saved", "outputs")

    def __init__(self, program, generation, saved):
        self.program, self.generation, self.saved, self.outputs = program, generation, saved, []


def _no_higher(g, out, xs, saved, needs):
    raise NotImplementedError(
        f"grad(..., create_graph=True) through the compiled program '{saved[0].program.name}': a compiled "
        "program replays first-order VJPs only; higher order stays on the uncompiled path (call the "
        "function itself, compiled.__wrapped__)")


def _no_jvp(ts, saved, out):
    raise NotImplementedError("jvp through a compiled program: call the function uncompiled (compiled.__wrapped__)")


def _output_forward(*arrays, run, index):
    return run.outputs[index], (run, index)


def _output_vjp(g, saved, needs):
    # d(output k)/d(inputs): the program's recorded VJPs run backward from output k
    run, index = saved
    return run.program.backward(run, index, g, needs)


COMPILED = ops.Primitive("compiled", _output_forward, _output_vjp, fresh=True, dvjp=_no_higher, jvp=_no_jvp)


class Program:
    """The calls of one traced signature, with its inputs, parameters, constants, random draws, outputs."""

    def __init__(self, name, kinds, calls, outputs, result, names, grad):
        self.name, self.calls, self.outputs, self.grad = name, calls, outputs, grad
        self.result = _skeleton(result)  # the returned structure, without the trace's tensors (and graph)
        self.inputs, self.params = kinds["input"], kinds["param"]
        self.consts, self.randoms = kinds["const"], kinds["random"]
        self.grad_calls = [c for c in calls if c.needs is not None]
        self.grad_inputs = [i for i, v in enumerate(self.inputs) if v.requires_grad]
        self.grad_params = [v for v in self.params if v.requires_grad]
        self.grad_values = [self.inputs[i] for i in self.grad_inputs] + self.grad_params
        self.generation = 0
        for prefix, values in (("a", self.inputs), ("c", self.consts), ("r", self.randoms), ("v", kinds["op"])):
            for k, v in enumerate(values):
                v.label = f"{prefix}{k}"
        for k, v in enumerate(self.params):
            v.label, v.name = f"p{k}", names.get(id(v.source), v.name)
        self.copy_out = [_shares_buffer(v, calls, self) for v in outputs]
        self.forward_plan = [(c.prim.forward, c.inputs, c.output, c.attrs or None, c.needs is not None, c.convert,
                              c.prim, 0 if c.convert else len(c.inputs)) for c in calls]  # 0: the general call
        self.backward_plan = [(c.output, None, c.needs, c.inputs[0]) if _basic_getitem(c) else
                              (c.output, c.prim.vjp, c.needs, _targets(c)) for c in reversed(self.grad_calls)]
        returned = {id(v) for v in outputs}
        self.intermediates = [(v, _stand_in(v)) for v in kinds["op"] if id(v) not in returned]  # freed after a forward

    def current(self) -> bool:
        """False when a parameter changed shape, dtype or requires_grad since the trace (retrace)."""
        return all(v.source.data.shape == v.shape and v.source.data.dtype == v.dtype
                   and v.source.requires_grad == v.requires_grad for v in self.params)

    def run(self, leaves, randoms=None) -> _Run:
        """Replay the forward on new input arrays; ``randoms``: draws to use instead of new ones."""
        for v, leaf in zip(self.inputs, leaves):
            np.copyto(v.data, leaf.data if type(leaf) is not np.ndarray else leaf)
        for v in self.params:
            v.data = v.source.data
        for k, v in enumerate(self.randoms):
            v.data = v.source[0]() if randoms is None else randoms[k]
        self.generation += 1
        saved = [] if self.grad and self.grad_calls and self.grad_values else None
        keep = saved.append if saved is not None else None
        ndarray = np.ndarray
        for forward, inputs, output, attrs, grad, convert, prim, arity in self.forward_plan:
            if arity == 1:  # one and two inputs spelled out: a list per call costs more than most ops' Python
                data, kept = forward(inputs[0].data, **attrs) if attrs else forward(inputs[0].data)
            elif arity == 2:
                a, b = inputs
                data, kept = forward(a.data, b.data, **attrs) if attrs else forward(a.data, b.data)
            else:
                arrays = [v.data for v in inputs]
                if convert:
                    arrays = _check_float_dtypes(prim, arrays)
                data, kept = forward(*arrays, **attrs) if attrs else forward(*arrays)
            output.data = data if type(data) is ndarray else np.asarray(data)
            if grad and keep is not None:
                keep(kept)
        for v, stand_in in self.intermediates:  # what the VJPs need is in saved; the rest is freed now, not next call
            v.data = stand_in
        return _Run(self, self.generation, saved)

    def outputs_of(self, run: _Run, leaves):
        """The run's outputs in the structure the function returned: Tensors whose VJP is the program's."""
        parents = [leaves[i] for i in self.grad_inputs] + [v.source for v in self.grad_params]
        made = []
        for k, v in enumerate(self.outputs):
            run.outputs.append(v.data.copy() if self.copy_out[k] else v.data)
            if v.kind == "param":
                made.append(v.source)
            elif v.kind == "input" and isinstance(leaves[self.inputs.index(v)], Tensor):
                made.append(leaves[self.inputs.index(v)])
            elif run.saved is not None and v.requires_grad and v.kind == "op":
                made.append(apply(COMPILED, *parents, run=run, index=k))
            else:
                made.append(_leaf(run.outputs[k]))
        return _rebuild_outputs(self.result, iter(made))

    def backward(self, run: _Run, index: int, g, needs) -> tuple:
        """Gradients of the parents (inputs, then parameters, that require grad) from output ``index``."""
        if run.generation != self.generation:
            raise RuntimeError(
                f"backward through a result of the compiled '{self.name}' after a later call of it: the program "
                "reuses its buffers on every call, so back-propagate each result before the next call (or call "
                "the function uncompiled, compiled.__wrapped__)")
        grads = ArrayGrads()
        grads.add(self.outputs[index], g)
        dense, owned, pending, add, ndarray = grads.dense, grads.owned, grads.pending, grads.add, np.ndarray
        owned_buffer = grads._owned_buffer
        for (out, vjp, needs_k, targets), saved in zip(self.backward_plan, reversed(run.saved)):
            if pending and out in pending:
                grads._fold(out)
            gk = dense.pop(out, None)
            if gk is None:
                continue
            if vjp is None:  # a[int or slice]: g goes straight into a's buffer (what IndexGrad.add_into does)
                owned_buffer(targets)[saved] += gk
                continue
            parent_grads = vjp(gk, saved, needs_k)
            for i, v, fresh in targets:
                pg = parent_grads[i]
                if pg is None:
                    continue
                if type(pg) is ndarray and v not in dense and pg.shape == v.shape:  # ArrayGrads.add's first arrival
                    dense[v] = pg
                    if fresh:
                        owned.add(v)
                else:
                    add(v, pg, fresh)
        result = []
        for v, need in zip(self.grad_values, needs):
            gv, owned = grads.pop(v) if need else (None, False)
            if gv is not None and gv.dtype != v.dtype:
                gv, owned = gv.astype(v.dtype), True
            if gv is not None and gv.shape != v.shape:
                gv, owned = np.broadcast_to(gv, v.shape), False
            result.append(gv if gv is None or (owned and gv.flags.writeable) else np.array(gv))
        return tuple(result)

    def __str__(self):
        head = ", ".join(f"{v.label}: {v.type_text()}" for v in self.inputs)
        lines = [f"program {self.name}({head})  # {len(self.calls)} calls"]
        for v in self.params:
            lines.append(f"  {v.label} = param {v.name or '(unnamed)'}  {v.type_text()}"
                         + ("" if v.requires_grad else "  (no grad)"))
        for v in self.consts:
            value = f" = {np.array2string(v.data, precision=4, separator=',')}" if v.data.size <= 4 else ""
            lines.append(f"  {v.label} = const {v.type_text()}{value}")
        for v in self.randoms:
            lines.append(f"  {v.label} = random {v.type_text()}  (drawn on every call)")
        for call in self.calls:
            args = ", ".join([v.label for v in call.inputs] + [f"{k}={_attr_text(a)}" for k, a in call.attrs.items()])
            grad = "" if call.needs is not None or isinstance(call.prim, Derived) else "  (no grad)"
            lines.append(f"  {call.output.label} = {call.prim.name}({args})  # {call.output.type_text()}{grad}")
        lines.append("  return " + ", ".join(v.label for v in self.outputs))
        return "\n".join(lines)


def _stand_in(v: Value) -> np.ndarray:
    """A read-only array of v's shape and dtype over one element: what v holds between replays."""
    return np.broadcast_to(np.zeros((), v.dtype), v.shape)


def _basic_getitem(call) -> bool:
    """A gather by ints and slices only (a view): its VJP adds g into one slot of the input's gradient."""
    index = call.attrs.get("index")
    items = index if type(index) is tuple else (index,)
    return (call.prim is ops.GETITEM and not call.convert and call.needs == (True,)
            and all(type(i) is int or type(i) is slice for i in items))


def _targets(call) -> tuple:
    """(input position, value, fresh) for each input of a call that wants a gradient."""
    fresh = call.prim.fresh
    return tuple((i, v, fresh if fresh.__class__ is bool else fresh[i])
                 for i, (v, need) in enumerate(zip(call.inputs, call.needs)) if need)


def _attr_text(value) -> str:
    """A short text for an attribute: arrays by dtype and shape, slices as a:b."""
    if isinstance(value, np.ndarray):
        return f"<{value.dtype}[{','.join(map(str, value.shape))}]>"
    if isinstance(value, slice):
        return ":".join("" if x is None else str(x) for x in (value.start, value.stop)) + (
            "" if value.step is None else f":{value.step}")
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_attr_text, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, np.generic):
        return repr(value.item())
    return repr(value)


def arrays_in(value):
    """The ndarrays inside an attribute (tuples included)."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from arrays_in(item)


def _shares_buffer(out: Value, calls, program: Program) -> bool:
    """Whether an output's array may live in memory the next replay writes again (an ``out=``
    buffer, an input buffer, a constant): such an output is copied when returned."""
    if out.kind != "op":
        return out.kind != "param"  # inputs, constants and draws live in the program's own arrays
    held = [a for c in calls for a in c.attrs.values() for a in arrays_in(a)]
    held += [v.data for v in program.inputs + program.consts]
    return any(np.may_share_memory(out.data, a) for a in held)


class _Output:
    """Marks where an output Tensor sits in the structure a function returned."""

    def __repr__(self):
        return "<output>"


OUTPUT = _Output()


def _skeleton(tree):
    """The returned structure with each Tensor replaced by OUTPUT."""
    if isinstance(tree, Tensor):
        return OUTPUT
    if isinstance(tree, (tuple, list)):
        return type(tree)(_skeleton(item) for item in tree)
    return tree


def _rebuild_outputs(tree, made):
    """The returned structure with each OUTPUT replaced, in order, by this run's Tensor."""
    if tree is OUTPUT:
        return next(made)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_rebuild_outputs(item, made) for item in tree)
    return tree
