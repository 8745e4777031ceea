"""Tensor methods composed from primitives, with no hand-written backward: sqrt, square, min, var, std,
softmax, log_softmax, permute, swapaxes, squeeze, unsqueeze, split, chunk."""
from __future__ import annotations

import operator

import numpy as np


class CompositeMethods:
    """Mixed into Tensor: every method here is built from other Tensor methods."""

    __slots__ = ()

    def sqrt(self):
        """Square root, as a ** 0.5."""
        return self ** 0.5

    def square(self):
        """a * a."""
        return self * self

    def min(self, axis=None, keepdims=False):
        """Minimum over ``axis``, as -max(-a); ties share the gradient equally."""
        return -((-self).max(axis, keepdims))

    def var(self, axis=None, ddof=0, keepdims=False):
        """Variance mean((a - mean a)^2) over ``axis``, divided by count - ddof (NumPy's default ddof=0)."""
        ax = normalize_axis(axis, _with_axes(self, "var", axis), "var")
        count = self.data.size if ax is None else int(np.prod([self.shape[a] for a in np.atleast_1d(ax)]))
        if count - ddof <= 0:
            raise ValueError(f"var: {count} elements leave no degrees of freedom with ddof={ddof}")
        centred = self - self.mean(ax, keepdims=True)
        return (centred * centred).sum(ax, keepdims) * (1.0 / (count - ddof))

    def std(self, axis=None, ddof=0, keepdims=False):
        """Standard deviation: the square root of var()."""
        return self.var(axis, ddof, keepdims) ** 0.5

    def softmax(self, axis=-1):
        """exp(a - logsumexp(a)) over ``axis``."""
        return (self - self.logsumexp(axis, keepdims=True)).exp()

    def log_softmax(self, axis=-1):
        """a - logsumexp(a) over ``axis``."""
        return self - self.logsumexp(axis, keepdims=True)

    def permute(self, *axes):
        """Reorder the axes: output axis i is input axis axes[i] (PyTorch's permute)."""
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return self._permuted(self._permutation(axes, "permute"))

    def swapaxes(self, axis1, axis2):
        """Exchange two axes (what PyTorch's ``transpose(a, b)`` does)."""
        order = list(range(self.ndim))
        a, b = normalize_axis((axis1, axis2), _with_axes(self, "swapaxes"), "swapaxes")
        order[a], order[b] = order[b], order[a]
        return self._permuted(tuple(order))

    def _permutation(self, axes, op) -> tuple:
        """``axes`` checked to be a permutation of this tensor's axes (negative axes allowed)."""
        axes = normalize_axis(tuple(axes), self.ndim, op)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"{op}: axes {axes} are not a permutation of a {self.ndim}-d tensor's axes")
        return axes

    def squeeze(self, axis=None):
        """Drop axes of length 1 (all of them, or the given ones, which must have length 1)."""
        if axis is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        axes = np.atleast_1d(normalize_axis(axis, _with_axes(self, "squeeze"), "squeeze"))
        wrong = [int(a) for a in axes if self.shape[a] != 1]
        if wrong:
            raise ValueError(f"squeeze: axis {wrong[0]} has length {self.shape[wrong[0]]}, not 1")
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if i not in axes))

    def unsqueeze(self, axis):
        """Insert an axis of length 1 at ``axis`` (an int, or several as in NumPy's expand_dims)."""
        added = len(axis) if isinstance(axis, (tuple, list)) else 1
        axes = np.atleast_1d(normalize_axis(axis, self.ndim + added, "unsqueeze")).tolist()
        if len(set(axes)) != added:
            raise ValueError(f"unsqueeze: repeated axis in {axis!r}")
        rest = iter(self.shape)
        return self.reshape(tuple(1 if i in axes else next(rest) for i in range(self.ndim + added)))

    expand_dims = unsqueeze

    def chunk(self, pieces, axis=0):
        """``pieces`` equal parts along ``axis`` (e.g. the 4 gates of an LSTM's (B, 4H) block)."""
        axis = normalize_axis(axis, _with_axes(self, "chunk"), "chunk")
        if isinstance(pieces, bool) or not isinstance(pieces, (int, np.integer)) or pieces <= 0:
            raise ValueError(f"chunk: the number of pieces must be a positive integer, got {pieces!r}")
        if self.shape[axis] % pieces:
            raise ValueError(f"chunk: axis {axis} of length {self.shape[axis]} does not split into {pieces} "
                             "equal pieces; give the sizes with split([...])")
        return self.split([self.shape[axis] // pieces] * int(pieces), axis)

    def split(self, sizes, axis=0):
        """Pieces of the given ``sizes`` (a list that sums to the axis length) along ``axis``."""
        axis = normalize_axis(axis, _with_axes(self, "split"), "split")
        if not isinstance(sizes, (list, tuple)):
            raise TypeError(f"split: give the piece sizes as a list, e.g. split([H, H, H]), got {sizes!r}; "
                            "for n equal pieces use chunk(n) (NumPy's split(n) and PyTorch's split(n) "
                            "disagree on what n means, so micrornn accepts neither)")
        if any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0 for n in sizes) \
                or sum(sizes) != self.shape[axis]:
            raise ValueError(f"split: sizes {list(sizes)} must be non-negative integers summing to the length "
                             f"{self.shape[axis]} of axis {axis} (sizes, not NumPy's cut indices)")
        lead, start, pieces = (slice(None),) * axis, 0, []
        for n in sizes:
            pieces.append(self[lead + (slice(start, start + int(n)),)])
            start += int(n)
        return pieces


def _with_axes(t, op, axis=0) -> int:
    """t.ndim, after refusing an explicit axis of a 0-d tensor (which has none)."""
    if t.ndim == 0 and axis is not None:
        raise ValueError(f"{op}: a 0-d tensor has no axis to work along")
    return t.ndim


def normalize_axis(axis, ndim=None, op="axis"):
    """An axis argument as an int, a tuple of ints, or None; checked against ``ndim`` when given."""
    if axis is None:
        return None
    try:
        axes = (operator.index(axis),) if not isinstance(axis, (tuple, list)) else tuple(map(operator.index, axis))
    except TypeError:
        raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}") from None
    if ndim is not None:
        for a in axes:
            if not -max(ndim, 1) <= a < max(ndim, 1):
                raise ValueError(f"{op}: axis {a} is out of range for a {ndim}-d tensor")
        axes = tuple(a % max(ndim, 1) for a in axes)
    return axes[0] if not isinstance(axis, (tuple, list)) else axes
