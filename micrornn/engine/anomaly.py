"""detect_anomaly(): stop at the first op whose forward or backward makes a NaN or an Inf."""
from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from micrornn.engine.backward import state
from micrornn.engine.ops import IndexGrad, ProductGrad

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class AnomalyError(FloatingPointError):
    """A NaN or Inf appeared; the message names the op, shapes, scope and the user's line."""


def _user_line() -> str:
    """'file:line in function' of the innermost frame outside the micrornn package."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "unknown location"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _where(node: Any) -> str:
    """The scope (layer/step) and user line recorded for a node."""
    scope = f", {node.scope}" if node.scope is not None else ""
    return f"{scope}, created at {node._origin or 'unknown location'}"


def _bad(array: Any) -> str | None:
    """'nan' or 'inf' when the array holds one, else None."""
    if not isinstance(array, (np.ndarray, np.generic)):
        return None
    array = np.asarray(array)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return "nan" if np.isnan(array).any() else "inf"
    return None


def _first_bad_step(array: np.ndarray, last: bool = False) -> str:
    """', first at time step t' for a fused layer's (T, ...) array: its first non-finite step
    (``last``: the latest one, which is where a backward pass through time goes bad first)."""
    bad_steps = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
    if not bad_steps.size:
        return ""
    step = bad_steps[-1] if last else bad_steps[0]
    return f", first at time step {int(step) + 1}"


def _is_fused_layer(node: Any, prim: Any) -> bool:
    """True for a whole-layer primitive (rnn_layer, lstm_layer, ...) whose axis 0 is time."""
    return bool(prim.name.endswith("_layer")) and getattr(node.scope, "step", "none") is None


def check_forward(out: Any, prim: Any, inputs: Sequence[Any]) -> None:
    """Record where ``out`` was made; raise if its value is not finite."""
    out._origin = _user_line()
    kind = _bad(out.data)
    if kind:
        shapes = ", ".join(str(t.shape) for t in inputs)
        step = _first_bad_step(out.data) if _is_fused_layer(out, prim) and out.ndim else ""
        raise AnomalyError(f"detect_anomaly: forward of '{prim.name}' on input shapes {shapes} produced "
                           f"{kind}{step}{_where(out)}")


def _value(g: Any) -> Any:
    """The array a gradient stands for: a lazy weight product is formed, a scatter's values read."""
    if isinstance(g, ProductGrad):
        with np.errstate(over="ignore", invalid="ignore"):  # the overflow is what we report
            return g.a.T @ g.g
    if isinstance(g, IndexGrad):
        return g.values
    return g


def check_backward(node: Any, parent_grads: Sequence[Any], total: Any = None) -> None:
    """Raise if the VJP of ``node``'s op produced a non-finite gradient for one of its inputs, or
    (``total``) if the node's own gradient, summed over its uses, is not finite."""
    kind = _bad(total)
    if kind:
        who = f"'{node.name}'" if node.name else "a leaf tensor" if node.is_leaf else f"the output of '{node.op_name}'"
        raise AnomalyError(f"detect_anomaly: the gradient of {who} of shape {node.shape}, summed over its uses "
                           f"in the graph, is {kind} although each use's share was finite{_where(node)}")
    for k, g in enumerate(parent_grads):
        kind = _bad(_value(g))
        if kind:
            shapes = ", ".join(str(p.shape) for p in node.parents)
            step, timed = "", parent_grads[0]
            if _is_fused_layer(node, node._op) and isinstance(timed, np.ndarray) and timed.ndim:
                step = _first_bad_step(timed, last=True)
            raise AnomalyError(f"detect_anomaly: backward of '{node.op_name}' (input shapes {shapes}) produced "
                               f"{kind} in the gradient of input {k}{step}{_where(node)}")


@contextlib.contextmanager
def detect_anomaly() -> Iterator[None]:
    """Within this context every op checks its outputs and gradients for NaN/Inf (slow; off by default)."""
    previous = state.anomaly, state.check_forward, state.check_backward
    state.anomaly, state.check_forward, state.check_backward = True, check_forward, check_backward
    try:
        yield
    finally:
        state.anomaly, state.check_forward, state.check_backward = previous
