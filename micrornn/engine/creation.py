"""Factories: tensor, zeros, ones, zeros_like, ones_like, randn (seeded by manual_seed), arange."""
from __future__ import annotations

import numpy as np

from micrornn.engine.random import default_rng
from micrornn.engine.tensor import Tensor


def tensor(data, requires_grad=False, dtype=None, name=None) -> Tensor:
    """A new Tensor from data (also reachable as ``micrornn.tensor(...)``)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)


def _shape(shape, op) -> tuple:
    """``f(2, 3)`` or ``f((2, 3))`` as a tuple of non-negative ints."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ValueError(f"{op}: a shape is non-negative integers, got {shape!r}")
    return tuple(int(n) for n in shape)


def zeros(*shape, dtype=np.float64, requires_grad=False) -> Tensor:
    """A tensor of zeros, ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return Tensor(np.zeros(_shape(shape, "zeros"), dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=np.float64, requires_grad=False) -> Tensor:
    """A tensor of ones, ``ones(2, 3)`` or ``ones((2, 3))``."""
    return Tensor(np.ones(_shape(shape, "ones"), dtype=dtype), requires_grad=requires_grad)


def zeros_like(t, dtype=None, requires_grad=False) -> Tensor:
    """Zeros of t's shape (and dtype, unless given)."""
    data = getattr(t, "data", np.asarray(t))
    return Tensor(np.zeros(data.shape, dtype=dtype or data.dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False) -> Tensor:
    """Ones of t's shape (and dtype, unless given)."""
    data = getattr(t, "data", np.asarray(t))
    return Tensor(np.ones(data.shape, dtype=dtype or data.dtype), requires_grad=requires_grad)


def randn(*shape, dtype=np.float64, requires_grad=False, rng=None) -> Tensor:
    """Standard normal samples from the generator ``micrornn.manual_seed`` seeds (or ``rng``)."""
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"randn: normal samples need a float dtype, got {np.dtype(dtype)}")
    values = default_rng(rng).standard_normal(_shape(shape, "randn"))
    return Tensor(values.astype(dtype), requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False) -> Tensor:
    """Evenly spaced values in [start, stop) as NumPy's arange gives them."""
    values = np.arange(start, stop, step, dtype=dtype) if stop is not None else np.arange(start, dtype=dtype)
    return Tensor(values, requires_grad=requires_grad)
