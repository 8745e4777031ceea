"""Tensor methods composed from primitives, with no hand-written backward: sqrt, square, min, var, std,
softmax, log_softmax, permute, swapaxes, squeeze, unsqueeze, split, chunk; and the PyTorch spellings that
mean the same here (t, view, clamp, norm, pow, float, ...: see engine/habits.py for the rules)."""
from __future__ import annotations

import math
import operator

import numpy as np


class ElementCount(int):
    """NumPy's ``x.size`` (the number of elements, an int); calling it as PyTorch's ``x.size()`` says to
    write ``x.shape``."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise TypeError(f"x.size is NumPy's element count (an int, here {int(self)}), not a method; PyTorch's "
                        "x.size() is the shape: write x.shape (or x.shape[i]), and x.numel() for the count")


class TorchSpellings:
    """PyTorch spellings that mean exactly what they mean in PyTorch, written with Tensor methods."""

    __slots__ = ()

    size = property(lambda self: ElementCount(self.data.size), doc="Number of elements (NumPy's size, an int).")

    def numel(self) -> int:
        """Number of elements (PyTorch's numel; NumPy's size)."""
        return int(self.data.size)

    def dim(self) -> int:
        """Number of axes (PyTorch's dim(); NumPy's ndim)."""
        return self.data.ndim

    def t(self):
        """Transpose of a 2-D tensor (0-D and 1-D come back as they are, as in PyTorch)."""
        if self.ndim > 2:
            raise ValueError(f"t() needs a tensor of at most 2 axes, got {self.ndim}; use transpose(axes) "
                             "to permute, or swapaxes(a, b) to exchange two axes")
        return self.transpose() if self.ndim == 2 else self

    def view(self, *shape):
        """Same values in a new shape: reshape (there are no strides to share here)."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
            raise TypeError(f"view({shape[0]!r}): PyTorch's view(dtype) reinterprets the bits; micrornn has "
                            "no such view: use astype(dtype) to convert the values")
        return self.reshape(*shape)

    def flatten(self):
        """The values as one axis (NumPy's and PyTorch's flatten agree)."""
        return self.reshape(-1)

    def clamp(self, min=None, max=None):  # PyTorch's keyword names
        """Values limited to [min, max]: clip(min, max)."""
        return self.clip(min, max)

    def pow(self, exponent):
        """self ** exponent."""
        return self ** exponent

    def norm(self, p=2, axis=None, keepdims=False):
        """The p-norm over ``axis`` (all axes when None): p = 2 (or "fro"), 1 or inf."""
        if p in (2, "fro"):
            return (self * self).sum(axis, keepdims) ** 0.5  # gradient x / |x|, undefined at x = 0
        if p == 1:
            return self.abs().sum(axis, keepdims)
        if p == math.inf:
            return self.abs().max(axis, keepdims)
        raise ValueError(f"norm: p must be 1, 2, 'fro' or inf, got {p!r}")

    def float(self):
        """The values as float32 (PyTorch's float() is 32-bit); the gradient flows back cast."""
        return self.astype(np.float32)

    def double(self):
        """The values as float64; the gradient flows back cast."""
        return self.astype(np.float64)

    def to(self, dtype):
        """astype(dtype) for a NumPy dtype; there are no devices (micrornn runs on the CPU)."""
        if isinstance(dtype, str) and dtype.split(":")[0] in ("cpu", "cuda", "mps", "meta"):
            raise TypeError(f"to({dtype!r}): micrornn has no devices, everything is a NumPy array on the CPU; "
                            "to(dtype) converts the values")
        return self.astype(dtype)

    def requires_grad_(self, requires_grad=True):
        """Mark this leaf as requiring grad (or not), in place; returns it."""
        if self._op is not None:
            raise ValueError("requires_grad_: only a leaf's flag can change; this tensor was made by an op "
                             "(use t.detach().requires_grad_() for a new leaf)")
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"requires_grad_: only floating-point tensors can require grad, got {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def argmax(self, axis=None):
        """Index of the maximum over ``axis`` (a constant integer tensor: no gradient)."""
        return _constant(self, np.argmax(self.data, axis=axis))

    def argmin(self, axis=None):
        """Index of the minimum over ``axis`` (a constant integer tensor: no gradient)."""
        return _constant(self, np.argmin(self.data, axis=axis))

    def repeat(self, *args, **kwargs):
        """Refused: PyTorch's repeat is NumPy's tile and NumPy's repeat is PyTorch's repeat_interleave."""
        raise TypeError("repeat: PyTorch's x.repeat(n) is NumPy's np.tile and NumPy's np.repeat is PyTorch's "
                        "repeat_interleave, so micrornn has neither spelling; use broadcasting (x * ones) or "
                        "micrornn.concatenate([x] * n, axis)")



class CompositeMethods(TorchSpellings):
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
        """exp(log_softmax(a)) over ``axis`` (the one softmax; functional.softmax calls it)."""
        return self.log_softmax(axis).exp()

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
            hint = (f"; to exchange two axes (PyTorch's transpose(a, b)) use swapaxes({axes[0]}, {axes[1]})"
                    if len(axes) == 2 else "")
            raise ValueError(f"{op}: axes {axes} are not a permutation of a {self.ndim}-d tensor's axes{hint}")
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


def _constant(t, array):
    """A constant tensor (no graph) holding ``array``, made without importing Tensor."""
    out = t.detach()
    out.data = np.asarray(array)
    return out


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
