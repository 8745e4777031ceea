"""detect_anomaly(): stop at the first op whose forward or backward makes a NaN or an Inf."""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from micrornn.autograd import state

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class AnomalyError(FloatingPointError):
    """A NaN or Inf appeared; the message names the op, shapes, scope and the user's line."""


def _user_line() -> str:
    """'file:line in function' of the innermost frame outside the micrornn package."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "unknown location"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _where(node) -> str:
    """The scope (layer/step) and user line recorded for a node."""
    scope = f", {node.scope}" if node.scope is not None else ""
    return f"{scope}, created at {node._origin or 'unknown location'}"


def _bad(array) -> str | None:
    """'nan' or 'inf' when the array holds one, else None."""
    if not isinstance(array, (np.ndarray, np.generic)):
        return None
    array = np.asarray(array)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return "nan" if np.isnan(array).any() else "inf"
    return None


def check_forward(out, prim, inputs) -> None:
    """Record where ``out`` was made; raise if its value is not finite."""
    out._origin = _user_line()
    kind = _bad(out.data)
    if kind:
        shapes = ", ".join(str(t.shape) for t in inputs)
        raise AnomalyError(f"detect_anomaly: forward of '{prim.name}' on input shapes {shapes} produced "
                           f"{kind}{_where(out)}")


def check_backward(node, parent_grads) -> None:
    """Raise if the VJP of ``node``'s op produced a non-finite gradient for one of its inputs."""
    for k, g in enumerate(parent_grads):
        kind = _bad(getattr(g, "values", getattr(g, "g", g)))
        if kind:
            shapes = ", ".join(str(p.shape) for p in node.parents)
            raise AnomalyError(f"detect_anomaly: backward of '{node.op_name}' (input shapes {shapes}) produced "
                               f"{kind} in the gradient of input {k}{_where(node)}")


@contextlib.contextmanager
def detect_anomaly():
    """Within this context every op checks its outputs and gradients for NaN/Inf (slow; off by default)."""
    previous = state.anomaly, state.check_forward, state.check_backward
    state.anomaly, state.check_forward, state.check_backward = True, check_forward, check_backward
    try:
        yield
    finally:
        state.anomaly, state.check_forward, state.check_backward = previous
