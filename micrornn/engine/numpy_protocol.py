"""NumPy meets Tensor: ufuncs the primitive table has run as ops (np.tanh(t) is t.tanh()), a few NumPy
functions map to Tensor methods, and everything else fails with a TypeError naming what to call."""
from __future__ import annotations

import numpy as np

from micrornn.engine.tensor import Tensor, _lift, as_tensor, concatenate, stack, where

# ufunc -> how to run it on Tensors (after numbers and arrays are lifted to constants)
UFUNCS = {
    np.add: lambda a, b: a + b,
    np.subtract: lambda a, b: a - b,
    np.multiply: lambda a, b: a * b,
    np.true_divide: lambda a, b: a / b,
    np.power: lambda a, b: a ** b,
    np.matmul: lambda a, b: a @ b,
    np.maximum: lambda a, b: a.maximum(b),
    np.minimum: lambda a, b: a.minimum(b),
    np.less: lambda a, b: a < b,
    np.less_equal: lambda a, b: a <= b,
    np.greater: lambda a, b: a > b,
    np.greater_equal: lambda a, b: a >= b,
    np.equal: lambda a, b: a == b,
    np.not_equal: lambda a, b: a != b,
    np.negative: lambda a: -a,
    np.positive: lambda a: a,
    np.exp: lambda a: a.exp(),
    np.log: lambda a: a.log(),
    np.tanh: lambda a: a.tanh(),
    np.absolute: lambda a: a.abs(),
    np.sqrt: lambda a: a.sqrt(),
    np.square: lambda a: a.square(),
}


def apply_ufunc(ufunc, method, inputs, kwargs):
    """Run ``ufunc(*inputs)`` as micrornn ops, or raise a TypeError that says what to call instead."""
    name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    if method == "__call__" and not kwargs and _boolean_result(ufunc):  # np.isnan(t): a mask, no gradient
        return Tensor(ufunc(*_plain(list(inputs))))
    if method != "__call__" or ufunc not in UFUNCS:
        raise TypeError(f"{name} is not a micrornn op on Tensors; {_advice(ufunc.__name__)}")
    if kwargs:
        raise TypeError(f"{name}: arguments {sorted(kwargs)} are not supported on Tensors (results are new "
                        "tensors; there is no out=, where= or dtype=)")
    like = next(x for x in inputs if isinstance(x, Tensor))
    return UFUNCS[ufunc](*[_lift(x, like) for x in inputs])


def _boolean_result(ufunc) -> bool:
    """True for ufuncs whose every numeric loop returns booleans (isnan, isfinite, logical_and, ...)."""
    return ufunc.nout == 1 and all(loop.endswith("->?") for loop in ufunc.types if not loop.startswith("O"))


def _advice(name, shown=None) -> str:
    """What to write instead of an unsupported NumPy call on a tensor (``shown``: its dotted name)."""
    method = {"add": "t.sum()", "maximum": "t.max()", "minimum": "t.min()", "logaddexp": "t.logsumexp()"}.get(name)
    if method:
        return f"call {method}"
    return (f"compose it from Tensor ops, define a primitive with micrornn.engine.ops.defprimitive, or use "
            f"{shown or 'np.' + name}(t.detach().numpy()) for a constant result outside the graph")


def _numpy_kwargs_unsupported(name, **kwargs):
    """Refuse NumPy keyword arguments a Tensor method does not have (out=, dtype=, ...)."""
    given = sorted(k for k, v in kwargs.items() if v is not None and v is not np._NoValue)
    if given:
        raise TypeError(f"np.{name}: arguments {given} are not supported on Tensors; call the Tensor method")


def _reduction(method):
    """np.sum(t, axis, ...)-style call mapped to ``t.<method>(axis, keepdims)``."""
    def run(a, axis=None, dtype=None, out=None, keepdims=False, **rest):
        _numpy_kwargs_unsupported(method, dtype=dtype, out=out, **rest)
        return getattr(as_tensor(a), method)(axis=axis, keepdims=bool(keepdims))
    return run


def _spread(method):
    """np.var / np.std mapped to the Tensor method with NumPy's ddof."""
    def run(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **rest):
        _numpy_kwargs_unsupported(method, dtype=dtype, out=out, **rest)
        return getattr(as_tensor(a), method)(axis=axis, ddof=ddof, keepdims=bool(keepdims))
    return run


def _reshape(a, shape, order, newshape):
    """np.reshape(t, shape) (or the older newshape=) as t.reshape(shape); only C order exists."""
    if order != "C":
        raise TypeError(f"np.reshape: order={order!r} is not supported on Tensors (C order only)")
    return as_tensor(a).reshape(shape if shape is not None else newshape)


FUNCTIONS = {
    np.sum: _reduction("sum"), np.mean: _reduction("mean"), np.max: _reduction("max"),
    np.min: _reduction("min"), np.amax: _reduction("max"), np.amin: _reduction("min"), np.var: _spread("var"), np.std: _spread("std"),
    np.reshape: lambda a, shape=None, order="C", newshape=None, copy=None: _reshape(a, shape, order, newshape),
    np.transpose: lambda a, axes=None: as_tensor(a).transpose(*(() if axes is None else (axes,))),
    np.swapaxes: lambda a, axis1, axis2: as_tensor(a).swapaxes(axis1, axis2),
    np.squeeze: lambda a, axis=None: as_tensor(a).squeeze(axis),
    np.expand_dims: lambda a, axis: as_tensor(a).unsqueeze(axis),
    np.clip: lambda a, a_min=None, a_max=None: as_tensor(a).clip(a_min, a_max),
    np.concatenate: lambda arrays, axis=0: concatenate(arrays, axis),
    np.stack: lambda arrays, axis=0: stack(arrays, axis),
    np.where: lambda cond, *a_b: where(cond, *a_b) if a_b else np.nonzero(_plain(cond)),
    np.shape: lambda a: as_tensor(a).shape,
    np.ndim: lambda a: as_tensor(a).ndim,
    np.size: lambda a: as_tensor(a).size,
}


def apply_function(func, args, kwargs):
    """Run a NumPy function on Tensors: mapped ones become Tensor ops; others run on the plain data
    when nothing requires grad, and otherwise raise instead of silently cutting the graph."""
    if func in FUNCTIONS:
        return FUNCTIONS[func](*args, **kwargs)
    tensors = [x for x in _flat(args) + _flat(list(kwargs.values())) if isinstance(x, Tensor)]
    if any(t.requires_grad for t in tensors):
        name = func.__module__.replace("numpy", "np", 1) + "." + func.__name__  # np.linalg.norm, not np.norm
        raise TypeError(f"{name} on a Tensor that requires grad would cut the graph; {_advice(func.__name__, name)}")
    return func(*_plain(args), **{k: _plain(v) for k, v in kwargs.items()})


def _flat(values) -> list:
    """Items of values, one level of lists/tuples opened."""
    out: list = []
    for v in values:
        out.extend(v if isinstance(v, (list, tuple)) else [v])
    return out


def _plain(value):
    """Tensors replaced by their ndarrays (inside lists and tuples too)."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    """Tensor.__array_ufunc__: NumPy hands ufuncs on Tensors to ``apply_ufunc``."""
    return apply_ufunc(ufunc, method, inputs, kwargs)


def _array_function(self, func, types, args, kwargs):
    """Tensor.__array_function__: NumPy hands functions on Tensors to ``apply_function``."""
    return apply_function(func, args, kwargs)


# Installed on Tensor here (engine/__init__ imports this module), so tensor.py need not import it back.
Tensor.__array_ufunc__ = _array_ufunc
Tensor.__array_function__ = _array_function
