"""Gradient checking: autograd against central finite differences, element by element."""
from __future__ import annotations

import sys
import types
import warnings

import numpy as np

from micrornn.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised by gradcheck when an autograd gradient disagrees with the numerical one."""


def _scalar_of(fn, inputs) -> float:
    """fn(*inputs) reduced to a Python float (summed when it is not a scalar)."""
    out = fn(*inputs)
    return float(np.sum(out.data if isinstance(out, Tensor) else out))


def numerical_grad(fn, inputs, eps=1e-6) -> list:
    """Central differences (f(x+eps) - f(x-eps)) / 2eps of sum(fn(*inputs)) for each input tensor."""
    grads = []
    with no_grad():
        for t in inputs:
            flat = t.data.reshape(-1)  # a view: perturbs t.data in place
            if not np.shares_memory(flat, t.data):
                raise ValueError("numerical_grad: input data must be contiguous")
            grad = np.zeros(t.data.size, dtype=np.float64)
            for i in range(flat.size):
                original = flat[i]
                flat[i] = original + eps
                plus = _scalar_of(fn, inputs)
                flat[i] = original - eps
                minus = _scalar_of(fn, inputs)
                flat[i] = original
                grad[i] = (plus - minus) / (2 * eps)
            grads.append(grad.reshape(t.shape))
    return grads


def _check_dtypes(inputs) -> None:
    """Refuse non-float inputs; warn on float32 (differences are then dominated by round-off)."""
    for k, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradcheck: input {k} is a {type(t).__name__}, expected a Tensor")
        if t.dtype.kind != "f":
            raise TypeError(f"gradcheck: input {k} has dtype {t.dtype}; gradients need floating point")
        if t.dtype != np.float64:
            warnings.warn(f"gradcheck: input {k} is {t.dtype}; finite differences need float64 to be "
                          "meaningful (results are likely to fail the default tolerances)", stacklevel=3)


def autograd_grads(fn, inputs, seed=0) -> tuple:
    """(cotangent, grads): backward of sum(v * fn(*inputs)) for a fixed random v."""
    saved = [t.grad for t in inputs]
    for t in inputs:
        t.grad = None
    try:
        out = fn(*inputs)
        cotangent = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
        out.backward(cotangent)
        grads = [np.zeros(t.shape) if t.grad is None else np.array(t.grad, dtype=np.float64)
                 for t in inputs]
    finally:
        for t, g in zip(inputs, saved):
            t.grad = g
    return cotangent, grads


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True) -> bool:
    """Compare autograd and central differences with |a - n| <= atol + rtol*|n| for every element."""
    inputs = list(inputs)
    _check_dtypes(inputs)
    cotangent, analytic = autograd_grads(fn, inputs)
    projected = lambda *xs: fn(*xs) * cotangent  # noqa: E731  (checks every output, not just the sum)
    numeric = numerical_grad(projected, [t for t in inputs], eps)
    for k, (t, a, n) in enumerate(zip(inputs, analytic, numeric)):
        if not t.requires_grad:
            continue
        bad = np.abs(a - n) > atol + rtol * np.abs(n)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            name = f" '{t.name}'" if t.name else ""
            message = (f"gradcheck: input {k}{name} of shape {t.shape}, element {idx}: autograd {float(a[idx])!r} "
                       f"vs numerical {float(n[idx])!r} (|diff| {abs(a[idx] - n[idx]):.3g} > atol + rtol*|numerical| "
                       f"= {atol + rtol * abs(n[idx]):.3g}); {int(bad.sum())} of {bad.size} elements disagree")
            if raise_exception:
                raise GradcheckError(message)
            return False
    return True


def max_error(a, b) -> float:
    """Largest |a - b| over all elements."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0


class _CallableModule(types.ModuleType):
    """This module, callable: ``micrornn.gradcheck(fn, inputs)`` is ``micrornn.gradcheck.gradcheck``."""

    def __call__(self, fn, inputs, *args, **kwargs) -> bool:
        return gradcheck(fn, inputs, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
