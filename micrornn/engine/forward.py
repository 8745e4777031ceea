"""Forward mode: ``jvp`` carries a tangent beside every value while the function runs.

Each primitive's ``jvp`` rule (beside its VJP in the table) maps the inputs' tangents to the
output's tangent as soon as the output exists, so nothing has to be kept for later: run under
``no_grad()``, the memory does not grow with the length of the computation (for an RNN: with T).
That is real-time recurrent learning for one direction in parameter space.
"""
from __future__ import annotations

import weakref

import numpy as np

from micrornn.engine.backward import state
from micrornn.engine.tensor import Tensor, _leaf, as_tensor


class _Tangents:
    """Tangent arrays keyed by the identity of live Tensors (an entry goes when its Tensor does)."""

    def __init__(self):
        self.table = {}

    def set(self, tensor, tangent) -> None:
        key = id(tensor)
        self.table[key] = (weakref.ref(tensor, lambda _, k=key, table=self.table: table.pop(k, None)), tangent)

    def get(self, tensor):
        entry = self.table.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def push(self, out, prim, inputs, saved, attrs) -> None:
        """Give ``out`` its tangent from its inputs' tangents (the hook that ``apply`` calls)."""
        tangents = tuple(self.get(t) for t in inputs)
        if all(t is None for t in tangents):
            return
        if not prim.has_jvp():
            raise NotImplementedError(f"jvp: primitive '{prim.name}' has no forward-mode rule; register one "
                                      "with defprimitive(..., jvp=...)")
        tangent = prim.tangent(tangents, inputs, saved, out.data, attrs)
        if tangent is None:
            return
        tangent = np.asarray(tangent)
        if tangent.shape != out.shape:  # an input broadcast by the op: its tangent broadcasts too
            tangent = np.broadcast_to(tangent, out.shape)
        if out.dtype.kind == "f" and tangent.dtype != out.dtype:
            tangent = tangent.astype(out.dtype)
        self.set(out, tangent)


def jvp(fn, inputs, tangents) -> tuple:
    """(fn(*inputs), J tangents): the outputs and their directional derivatives along ``tangents``.

    inputs: a Tensor or a sequence of Tensors (arrays are wrapped); tangents: the same structure,
    arrays or Tensors of the inputs' shapes. tangent_outputs has fn's output structure (a Tensor or
    a tuple of them); an output that does not depend on the inputs gets zeros.
    """
    single = isinstance(inputs, (Tensor, np.ndarray))
    xs = [as_tensor(x) for x in ([inputs] if single else list(inputs))]
    ts = [np.asarray(getattr(t, "data", t)) for t in ([tangents] if single else list(tangents))]
    if len(ts) != len(xs):
        raise ValueError(f"jvp: {len(xs)} inputs but {len(ts)} tangents")
    if state.push_tangent is not None:
        raise RuntimeError("jvp: nested jvp calls are not supported (forward-over-forward); "
                           "compose jvp with grad instead")
    record = _Tangents()
    for k, (x, t) in enumerate(zip(xs, ts)):
        if t.shape != x.shape:
            raise ValueError(f"jvp: tangent {k} has shape {t.shape} but input {k} has shape {x.shape}")
        if x.dtype.kind != "f":
            raise TypeError(f"jvp: input {k} has dtype {x.dtype}; tangents need floating-point inputs")
        if t.dtype.kind not in "fiub":  # a complex tangent would lose its imaginary part in the cast
            raise TypeError(f"jvp: tangent {k} has dtype {t.dtype}; tangents must be real numbers")
        if record.get(x) is not None:
            raise ValueError(f"jvp: input {k} appears twice in inputs")
        record.set(x, t.astype(x.dtype, copy=False))
    state.push_tangent = record.push
    try:
        outputs = fn(*xs)
    finally:
        state.push_tangent = None
    if isinstance(outputs, Tensor):
        return outputs, _tangent_of(outputs, record)
    if not isinstance(outputs, (tuple, list)):
        raise TypeError(f"jvp: fn must return a Tensor or a sequence of Tensors, got {type(outputs).__name__}")
    return outputs, tuple(_tangent_of(o, record) for o in outputs)


def _tangent_of(output, record) -> Tensor:
    """An output's tangent as a constant Tensor (zeros when it does not depend on the inputs)."""
    if not isinstance(output, Tensor):
        raise TypeError(f"jvp: fn must return a Tensor or a sequence of Tensors, got {type(output).__name__}")
    tangent = record.get(output)
    return _leaf(np.zeros_like(output.data) if tangent is None else np.array(tangent))
