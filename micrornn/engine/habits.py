"""PyTorch habits on a NumPy-first engine: spellings that mean the same here work, the ambiguous ones
raise an error that says what to write.

Where PyTorch and NumPy disagree, micrornn keeps NumPy's meaning (``x.size`` is the element count,
``x.std()`` divides by n, ``x.max(0)`` returns values only). The rule for keywords: PyTorch's
``dim=``, ``keepdim=``, ``unbiased=`` and ``correction=`` are refused with the NumPy spelling
(``axis=``, ``keepdims=``, ``ddof=``), never silently translated, so a reader of the code sees one
vocabulary. The methods that are plain aliases live in ``composites.TorchSpellings`` (mixed into Tensor); this
module wraps the Tensor methods that take an axis with the keyword check, and adds ``cat``.
"""
from __future__ import annotations

import functools

from micrornn.engine.tensor import Tensor, concatenate as _concatenate, stack as _stack

# PyTorch keyword -> how to write it here, given the value the user passed
TORCH_KEYWORDS = {
    "dim": lambda v: f"axis={v!r}",
    "keepdim": lambda v: f"keepdims={v!r}",
    "unbiased": lambda v: f"ddof={1 if v else 0}",
    "correction": lambda v: f"ddof={v!r}",
}

# Tensor methods that take an axis (NumPy's keywords); each refuses PyTorch's keywords by name
AXIS_METHODS = ("sum", "mean", "max", "min", "var", "std", "logsumexp", "softmax", "log_softmax", "squeeze",
                "unsqueeze", "expand_dims", "chunk", "split", "any", "all", "argmax", "argmin", "norm", "swapaxes")


def refuse_torch_keywords(op: str, kwargs: dict) -> None:
    """TypeError naming the NumPy spelling when ``kwargs`` holds a PyTorch-only keyword (dim=, keepdim=, ...)."""
    for key, value in kwargs.items():
        if key in TORCH_KEYWORDS:
            raise TypeError(f"{op}({key}={value!r}): micrornn follows NumPy: use {TORCH_KEYWORDS[key](value)}")


def numpy_keywords(method):
    """``method`` with PyTorch's dim=/keepdim=/unbiased=/correction= refused with the NumPy spelling."""
    op = method.__name__

    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        if kwargs:
            refuse_torch_keywords(op, kwargs)
        return method(self, *args, **kwargs)
    checked.__wrapped_for_habits__ = True
    return checked


def install_keyword_checks(cls) -> None:
    """Wrap each method of AXIS_METHODS on ``cls`` (once) so PyTorch keywords get a NumPy hint."""
    for name in AXIS_METHODS:
        method = getattr(cls, name, None)
        if method is not None and not getattr(method, "__wrapped_for_habits__", False):
            setattr(cls, name, numpy_keywords(method))


def cat(tensors, axis=0, **kwargs):
    """PyTorch's cat: concatenate(tensors, axis) (dim= is refused with the NumPy spelling)."""
    refuse_torch_keywords("cat", kwargs)
    if kwargs:
        raise TypeError(f"cat: unexpected arguments {sorted(kwargs)}")
    return _concatenate(tensors, axis)


install_keyword_checks(Tensor)  # engine/__init__ imports this module, as it does numpy_protocol
stack = numpy_keywords(_stack)  # micrornn.stack(ts, dim=0) says "use axis=0"
concatenate = numpy_keywords(_concatenate)
