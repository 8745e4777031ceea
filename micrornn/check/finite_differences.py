"""Gradient checking: autograd against central finite differences, element by element."""
from __future__ import annotations

import warnings

import numpy as np

from micrornn.engine.guard import writable_data
from micrornn.engine.transforms import grad
from micrornn.engine.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised by gradcheck when an autograd gradient disagrees with the numerical one."""


def _scalar_of(fn, inputs) -> float:
    """fn(*inputs) reduced to a Python float (summed when it is not a scalar)."""
    out = fn(*inputs)
    return float(np.sum(out.data if isinstance(out, Tensor) else out))


def _check_step(eps, atol=0.0, rtol=0.0, who="gradcheck") -> None:
    """Refuse a step that is not a finite positive number, and negative or NaN tolerances."""
    for name, value, positive in (("eps", eps, True), ("atol", atol, False), ("rtol", rtol, False)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{who}: {name} must be a number, got {type(value).__name__}") from None
        if not np.isfinite(number) or number < 0 or (positive and number == 0):
            need = "a finite number > 0" if positive else "a finite number >= 0"
            raise ValueError(f"{who}: {name} must be {need}, got {value!r}")


def _flat_view(t: Tensor, who: str) -> np.ndarray:
    """t's data as a flat view, so that writing an element perturbs t itself."""
    if not t.data.flags.c_contiguous:
        raise ValueError(f"{who}: input data must be contiguous (shape {t.shape}); pass a copy, "
                         "e.g. Tensor(np.ascontiguousarray(a))")
    return writable_data(t).reshape(-1)  # a copy first when a live graph holds it read-only


def numerical_grad(fn, inputs, eps=1e-6) -> list:
    """Central differences (f(x+eps) - f(x-eps)) / 2eps of sum(fn(*inputs)) for each input tensor."""
    _check_step(eps, who="numerical_grad")
    grads = []
    with no_grad():
        for t in inputs:
            flat = _flat_view(t, "numerical_grad")  # a view: perturbs t.data in place
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
    _check_step(eps, atol, rtol)
    cotangent, analytic = autograd_grads(fn, inputs)
    projected = lambda *xs: fn(*xs) * cotangent  # noqa: E731  (checks every output, not just the sum)
    numeric = numerical_grad(projected, [t for t in inputs], eps)
    for k, (t, a, n) in enumerate(zip(inputs, analytic, numeric)):
        if not t.requires_grad:
            continue
        bad = _disagree(a, n, atol, rtol)
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


def _first_order_directional(fn, inputs, wanted, u, vs) -> float:
    """<grad <u, fn(inputs)>, v> with first-order gradients only (the function gradgradcheck differences)."""
    out = fn(*inputs)
    grads = grad((out * u).sum(), wanted) if out.requires_grad else [np.zeros(t.shape) for t in wanted]
    return float(sum(np.sum(g.data * v) for g, v in zip(grads, vs)))


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0) -> bool:
    """Check second derivatives: for random u and v, the Hessian-vector product H v of <u, fn(inputs)>
    computed by grad(create_graph=True) against central differences of the first-order gradient
    <grad, v>, element by element, with |a - n| <= atol + rtol*|n|."""
    inputs = list(inputs)
    _check_dtypes(inputs)
    _check_step(eps, atol, rtol, "gradgradcheck")
    wanted = [t for t in inputs if t.requires_grad]
    if not wanted:
        raise ValueError("gradgradcheck: no input requires grad")
    rng = np.random.default_rng(seed)
    out = fn(*inputs)
    u = rng.standard_normal(out.shape).astype(out.dtype)
    vs = [rng.standard_normal(t.shape).astype(t.dtype) for t in wanted]
    grads = grad((out * u).sum(), wanted, create_graph=True)
    directional = [(g * v).sum() for g, v in zip(grads, vs) if g.requires_grad]
    if directional:
        analytic = [g.data.astype(np.float64) for g in grad(sum(directional[1:], directional[0]), wanted)]
    else:  # the gradient does not depend on the inputs: every second derivative is 0
        analytic = [np.zeros(t.shape) for t in wanted]
    del out, grads, directional  # their graphs hold the inputs read-only; the differences perturb them
    for t, a in zip(wanted, analytic):
        n = _numerical_directional(fn, inputs, wanted, u, vs, t, eps)
        bad = _disagree(a, n, atol, rtol)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            name = f" '{t.name}'" if t.name else ""
            message = (f"gradgradcheck: input {_position(inputs, t)}{name} of shape {t.shape}, element {idx}: second "
                       f"derivative (H v) {float(a[idx])!r} vs finite differences of the gradient "
                       f"{float(n[idx])!r} (|diff| {abs(float(a[idx] - n[idx])):.3g} > "
                       f"{atol + rtol * abs(float(n[idx])):.3g}); {int(bad.sum())} of {bad.size} elements disagree")
            if raise_exception:
                raise GradcheckError(message)
            return False
    return True


def _numerical_directional(fn, inputs, wanted, u, vs, t, eps) -> np.ndarray:
    """d<grad, v>/dt by central differences, perturbing t's data in place element by element."""
    flat = _flat_view(t, "gradgradcheck")
    result = np.zeros(t.data.size)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = _first_order_directional(fn, inputs, wanted, u, vs)
        flat[i] = original - eps
        minus = _first_order_directional(fn, inputs, wanted, u, vs)
        flat[i] = original
        result[i] = (plus - minus) / (2 * eps)
    return result.reshape(t.shape)


def _disagree(a, n, atol, rtol) -> np.ndarray:
    """Where |a - n| <= atol + rtol*|n| fails; a NaN on either side always fails."""
    return ~(np.abs(a - n) <= atol + rtol * np.abs(n))


def max_error(a, b) -> float:
    """Largest |a - b| over all elements."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0


def _position(inputs, tensor) -> int:
    """Index of ``tensor`` in ``inputs`` by identity (``==`` on tensors compares elements)."""
    return next(i for i, x in enumerate(inputs) if x is tensor)
