"""Tensor: a NumPy array that records the ops applied to it, and back-propagates through them."""
from __future__ import annotations

import contextlib
import itertools
import operator

import numpy as np

from micrornn import ops
from micrornn.autograd import backward as _backward, leaf_fingerprints, state

_FLOAT_KINDS = "f"
_creation_numbers = itertools.count()  # parents are always numbered before their outputs


class Tensor:
    """An ndarray node of the computation graph; float64 unless told otherwise."""

    __slots__ = ("data", "grad", "requires_grad", "name", "_op", "_parents", "_saved", "_needs",
                 "_scope", "_retain", "_origin", "_id", "_guard", "__weakref__")
    __array_priority__ = 1000  # make ndarray <op> Tensor call our reflected operators

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        if isinstance(data, Tensor):
            data = data.data
        from_python = not isinstance(data, (np.ndarray, np.generic))
        try:
            array = np.array(data, dtype=dtype)
        except (TypeError, ValueError) as err:
            raise TypeError(f"Tensor: cannot make an array from {type(data).__name__}: {err}") from None
        if array.dtype.kind not in "fiub":
            raise TypeError(f"Tensor: unsupported dtype {array.dtype} (use float, int or bool data)")
        if from_python and dtype is None and requires_grad and array.dtype.kind != "f":
            array = array.astype(np.float64)
        if requires_grad and array.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"Tensor: only floating-point tensors can require grad, got dtype {array.dtype}")
        _fill(self, array, bool(requires_grad), name)

    # ---- attributes ------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape, doc="Shape of the data.")
    dtype = property(lambda self: self.data.dtype, doc="NumPy dtype of the data.")
    ndim = property(lambda self: self.data.ndim, doc="Number of axes.")
    size = property(lambda self: self.data.size, doc="Number of elements.")
    is_leaf = property(lambda self: self._op is None, doc="True when no op created this tensor.")
    op_name = property(lambda self: None if self._op is None else self._op.name, doc="Creating op.")
    parents = property(lambda self: self._parents or (), doc="Inputs of the creating op, in order.")
    scope = property(lambda self: self._scope, doc="Label (e.g. layer/step) active when created.")

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        extra += f", name={self.name!r}" if self.name else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{extra})"

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """A new leaf sharing this data, cut from the graph."""
        return _leaf(self.data)

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        self._retain = True
        return self

    def backward(self, grad=None, retain_graph=False) -> None:
        """Back-propagate from this tensor, accumulating into the ``.grad`` of leaves."""
        _backward(self, grad, retain_graph)

    # ---- arithmetic ------------------------------------------------------------------------
    def __add__(self, other): return apply(ops.ADD, self, _lift(other, self))
    def __radd__(self, other): return apply(ops.ADD, _lift(other, self), self)
    def __sub__(self, other): return apply(ops.SUB, self, _lift(other, self))
    def __rsub__(self, other): return apply(ops.SUB, _lift(other, self), self)
    def __mul__(self, other): return apply(ops.MUL, self, _lift(other, self))
    def __rmul__(self, other): return apply(ops.MUL, _lift(other, self), self)
    def __truediv__(self, other): return apply(ops.DIV, self, _lift(other, self))
    def __rtruediv__(self, other): return apply(ops.DIV, _lift(other, self), self)
    def __pow__(self, other): return apply(ops.POW, self, _lift(other, self))
    def __rpow__(self, other): return apply(ops.POW, _lift(other, self), self)
    def __matmul__(self, other): return apply(ops.MATMUL, self, _lift(other, self))
    def __rmatmul__(self, other): return apply(ops.MATMUL, _lift(other, self), self)
    def __neg__(self): return apply(ops.NEG, self)

    def __abs__(self): return apply(ops.ABS, self)

    def exp(self): return apply(ops.EXP, self)
    def log(self): return apply(ops.LOG, self)
    def tanh(self): return apply(ops.TANH, self)
    def sigmoid(self): return apply(ops.SIGMOID, self)
    def relu(self): return apply(ops.RELU, self)
    def abs(self): return apply(ops.ABS, self)

    def sqrt(self):
        """Square root, as a ** 0.5."""
        return self ** 0.5

    def square(self):
        """a * a."""
        return self * self

    def maximum(self, other):
        """Elementwise maximum with broadcasting; ties share the gradient equally."""
        return apply(ops.MAXIMUM, self, _lift(other, self))

    def minimum(self, other):
        """Elementwise minimum with broadcasting; ties share the gradient equally."""
        return apply(ops.MINIMUM, self, _lift(other, self))

    def clip(self, lo=None, hi=None):
        """Values limited to [lo, hi] (either may be None); gradient 1 inside, 0 where clipped."""
        if lo is None and hi is None:
            raise ValueError("clip: give lo, hi or both")
        for bound in (lo, hi):
            if bound is not None and not isinstance(bound, (int, float, np.integer, np.floating)):
                raise TypeError(f"clip: bounds must be numbers, got {type(bound).__name__}")
        return apply(ops.CLIP, self, lo=lo, hi=hi)

    # ---- comparisons: boolean tensors, never part of the graph -------------------------------
    def _compare(self, other, ufunc):
        """A boolean constant tensor from comparing the data."""
        if other is None:
            return NotImplemented
        return _leaf(np.asarray(ufunc(self.data, _lift(other, self).data)))

    def __lt__(self, other): return self._compare(other, np.less)
    def __le__(self, other): return self._compare(other, np.less_equal)
    def __gt__(self, other): return self._compare(other, np.greater)
    def __ge__(self, other): return self._compare(other, np.greater_equal)
    def __eq__(self, other): return self._compare(other, np.equal)
    def __ne__(self, other): return self._compare(other, np.not_equal)
    __hash__ = object.__hash__  # identity: tensors are graph nodes and dictionary keys

    def any(self, axis=None):
        """Whether any element is true (a boolean constant tensor)."""
        return _leaf(np.asarray(self.data.any(axis=_axis(axis, self.ndim, "any"))))

    def all(self, axis=None):
        """Whether every element is true (a boolean constant tensor)."""
        return _leaf(np.asarray(self.data.all(axis=_axis(axis, self.ndim, "all"))))

    # ---- reductions and shapes -------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (all axes when None)."""
        return apply(ops.SUM, self, axis=_axis(axis, self.ndim, "sum"), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis``: a sum scaled by 1/count."""
        ax = _axis(axis, self.ndim, "mean")
        count = self.data.size if ax is None else int(np.prod([self.shape[a] for a in np.atleast_1d(ax)]))
        if count == 0:
            raise ValueError(f"mean: no elements to average over (shape {self.shape}, axis {axis})")
        return self.sum(ax, keepdims) * (1.0 / count)

    def max(self, axis=None, keepdims=False):
        """Maximum over ``axis``; ties share the gradient equally."""
        return apply(ops.MAX, self, axis=_axis(axis, self.ndim, "max"), keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        """Minimum over ``axis``, as -max(-a); ties share the gradient equally."""
        return -((-self).max(axis, keepdims))

    def var(self, axis=None, ddof=0, keepdims=False):
        """Variance mean((a - mean a)^2) over ``axis``, divided by count - ddof (NumPy's default ddof=0)."""
        ax = _axis(axis, self.ndim, "var")
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

    def logsumexp(self, axis=-1, keepdims=False):
        """log(sum(exp(x))) over ``axis``, computed without overflow."""
        if isinstance(axis, (tuple, list)):
            raise TypeError(f"logsumexp: axis must be one int, got {axis!r}")
        return apply(ops.LOGSUMEXP, self, axis=_axis(axis, self.ndim, "logsumexp"), keepdims=keepdims)

    def reshape(self, *shape):
        """Same values in a new shape; accepts ``reshape(2, 3)`` or ``reshape((2, 3))``."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return apply(ops.RESHAPE, self, shape=tuple(shape))

    def transpose(self, *axes):
        """Permute axes as NumPy does: ``transpose()`` reverses them, ``transpose(p)`` applies p."""
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        if not axes:
            return apply(ops.TRANSPOSE, self, axes=None)
        axes = self._permutation(axes, "transpose")
        if axes == tuple(range(self.ndim)) and self.ndim >= 2:
            raise ValueError(f"transpose{axes}: an explicit identity permutation changes nothing (NumPy's "
                             f"meaning); to swap two axes use swapaxes({axes[0]}, {axes[1]}), to reverse "
                             "them all call transpose() with no axes")
        return apply(ops.TRANSPOSE, self, axes=axes)

    def permute(self, *axes):
        """Reorder the axes: output axis i is input axis axes[i] (PyTorch's permute)."""
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return apply(ops.TRANSPOSE, self, axes=self._permutation(axes, "permute"))

    def swapaxes(self, axis1, axis2):
        """Exchange two axes (what PyTorch's ``transpose(a, b)`` does)."""
        order = list(range(self.ndim))
        a, b = _axis((axis1, axis2), self.ndim, "swapaxes")
        order[a], order[b] = order[b], order[a]
        return apply(ops.TRANSPOSE, self, axes=tuple(order))

    def _permutation(self, axes, op) -> tuple:
        """``axes`` checked to be a permutation of this tensor's axes (negative axes allowed)."""
        axes = _axis(tuple(axes), self.ndim, op)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"{op}: axes {axes} are not a permutation of a {self.ndim}-d tensor's axes")
        return axes

    def squeeze(self, axis=None):
        """Drop axes of length 1 (all of them, or the given ones, which must have length 1)."""
        if axis is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        axes = np.atleast_1d(_axis(axis, self.ndim, "squeeze"))
        wrong = [int(a) for a in axes if self.shape[a] != 1]
        if wrong:
            raise ValueError(f"squeeze: axis {wrong[0]} has length {self.shape[wrong[0]]}, not 1")
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if i not in axes))

    def unsqueeze(self, axis):
        """Insert an axis of length 1 at ``axis`` (also called expand_dims)."""
        axis = _axis(axis, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    expand_dims = unsqueeze

    def chunk(self, pieces, axis=0):
        """``pieces`` equal parts along ``axis`` (e.g. the 4 gates of an LSTM's (B, 4H) block)."""
        axis = _axis(axis, self.ndim, "chunk")
        if isinstance(pieces, bool) or not isinstance(pieces, (int, np.integer)) or pieces <= 0:
            raise ValueError(f"chunk: the number of pieces must be a positive integer, got {pieces!r}")
        if self.shape[axis] % pieces:
            raise ValueError(f"chunk: axis {axis} of length {self.shape[axis]} does not split into {pieces} "
                             "equal pieces; give the sizes with split([...])")
        return self.split([self.shape[axis] // pieces] * int(pieces), axis)

    def split(self, sizes, axis=0):
        """Pieces of the given ``sizes`` (a list that sums to the axis length) along ``axis``."""
        axis = _axis(axis, self.ndim, "split")
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

    def clone(self):
        """A copy of the data that stays in the graph (the gradient flows through unchanged)."""
        if self.requires_grad and state.grad_enabled:
            return apply(ops.ASTYPE, self, dtype=self.dtype)
        return _leaf(self.data.copy())

    def astype(self, dtype):
        """The values in another dtype; a float-to-float cast passes the gradient back cast."""
        dtype = np.dtype(dtype)
        if self.requires_grad and dtype.kind != "f":
            return _leaf(self.data.astype(dtype))  # integer or boolean values carry no gradient
        return apply(ops.ASTYPE, self, dtype=dtype)

    @property
    def T(self):
        """Axes reversed."""
        return self.transpose()

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        _check_index(index)
        return apply(ops.GETITEM, self, index=index)


def _axis(axis, ndim=None, op="axis"):
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


def _check_index(index) -> None:
    """Refuse float indices with a message that says indices must be integers."""
    for item in index if isinstance(index, tuple) else (index,):
        dtype = getattr(item, "dtype", None)
        if dtype is not None and dtype.kind in "fc":
            what = f"an array of dtype {dtype}"
        elif isinstance(item, float) or (isinstance(item, list) and any(isinstance(v, float) for v in item)):
            what = repr(item)
        else:
            continue
        raise IndexError(f"getitem: indices must be integers (or slices, booleans), got {what}; "
                         "convert with int(i) or .astype(int)")


def as_tensor(x) -> Tensor:
    """x itself when it is a Tensor, else a new constant Tensor of it."""
    return x if isinstance(x, Tensor) else Tensor(x)


def _fill(t: Tensor, array, requires_grad: bool, name) -> None:
    """Set every slot of a new tensor: the one place that lists them."""
    t.data, t.grad, t.requires_grad, t.name = array, None, requires_grad, name
    t._op = t._parents = t._saved = t._needs = t._origin = t._guard = None
    t._scope, t._retain, t._id = state.scope, False, next(_creation_numbers)


def _leaf(array, requires_grad=False) -> Tensor:
    """Fast constructor for a leaf around an existing array (no copy, no checks)."""
    t = Tensor.__new__(Tensor)
    _fill(t, array, requires_grad, None)
    return t


def _lift(value, like: Tensor) -> Tensor:
    """Wrap a number, list or array as a constant; with a float ``like``, numbers, lists and integer
    or boolean arrays take ``like``'s dtype (a float array keeps its own: see ``_check_float_dtypes``)."""
    if isinstance(value, Tensor):
        return value
    if like.data.dtype.kind == "f":
        if isinstance(value, (int, float, list, np.generic)):
            return _leaf(np.asarray(value, dtype=like.data.dtype))
        if isinstance(value, np.ndarray) and value.dtype.kind in "iub":
            return _leaf(value.astype(like.data.dtype))
    return _leaf(np.asarray(value))


def apply(prim: ops.Primitive, *inputs: Tensor, **attrs) -> Tensor:
    """Run a primitive's forward; record it in the graph when an input requires grad."""
    arrays = [t.data for t in inputs]
    first = arrays[0].dtype
    for array in arrays:
        if array.dtype is not first:
            _check_float_dtypes(prim, arrays)
            break
    try:
        data, saved = prim.forward(*arrays, **attrs)
    except (ValueError, IndexError, TypeError) as err:
        shapes = " and ".join(str(a.shape) for a in arrays)
        raise type(err)(f"{prim.name}: cannot apply to shapes {shapes}{_attrs_text(attrs)}: {err}") from None
    out = _leaf(data if type(data) is np.ndarray else np.asarray(data))  # 0-d results stay ndarrays
    needs = tuple([t.requires_grad for t in inputs])
    if True in needs and state.grad_enabled:
        out.requires_grad = True
        out._op, out._parents, out._saved, out._needs = prim, inputs, saved, needs
        for t in inputs:  # a parameter edited in place before backward is caught there
            if t._op is None and t.requires_grad:
                out._guard = leaf_fingerprints(inputs)
                break
    if state.anomaly:
        state.check_forward(out, prim, inputs)
    return out


def _check_float_dtypes(prim, arrays) -> None:
    """The dtype rule: one op never mixes float dtypes (no silent float32 -> float64 promotion)."""
    floats = sorted({str(a.dtype) for a in arrays if a.dtype.kind == "f"})
    if len(floats) > 1:
        raise TypeError(f"{prim.name}: operands have different float dtypes ({' and '.join(floats)}); "
                        "micrornn does not promote between float dtypes: convert one side first, e.g. "
                        f"x.astype(np.{floats[0]}) (a float32 model needs float32 inputs)")


def _attrs_text(attrs) -> str:
    """Describe an op's attributes for an error message."""
    return "".join(f", {k}={v!r}" for k, v in attrs.items() if k != "index") if attrs else ""


def matmul_add(a, b, c) -> Tensor:
    """a @ b + c in one op and one buffer (the RNN step's ``h W^T + x_t U^T``)."""
    a = as_tensor(a)
    return apply(ops.MATMUL_ADD, a, _lift(b, a), _lift(c, a))


def _joinable(tensors, op):
    """A non-empty list of Tensors (numbers and arrays lifted to the first one's dtype)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: needs at least one tensor")
    first = as_tensor(tensors[0])
    return [_lift(t, first) for t in tensors]


def where(cond, a, b) -> Tensor:
    """a where cond is true, else b (broadcast); the gradient goes to the side that was chosen."""
    cond = cond.data if isinstance(cond, Tensor) else np.asarray(cond)
    if cond.dtype != bool:
        raise TypeError(f"where: the condition must be boolean (e.g. x > 0), got dtype {cond.dtype}")
    like = a if isinstance(a, Tensor) else as_tensor(b) if isinstance(b, Tensor) else as_tensor(a)
    return apply(ops.WHERE, _leaf(cond), _lift(a, like), _lift(b, like))


def maximum(a, b) -> Tensor:
    """Elementwise maximum of two tensors (or a tensor and a number)."""
    return as_tensor(a).maximum(b) if isinstance(a, Tensor) or not isinstance(b, Tensor) else b.maximum(a)


def minimum(a, b) -> Tensor:
    """Elementwise minimum of two tensors (or a tensor and a number)."""
    return as_tensor(a).minimum(b) if isinstance(a, Tensor) or not isinstance(b, Tensor) else b.minimum(a)


def stack(tensors, axis=0) -> Tensor:
    """Join tensors of equal shape along a new axis."""
    tensors = _joinable(tensors, "stack")
    return apply(ops.STACK, *tensors, axis=_axis(axis, tensors[0].ndim + 1, "stack"))


def concatenate(tensors, axis=0) -> Tensor:
    """Join tensors along an existing axis."""
    tensors = _joinable(tensors, "concatenate")
    return apply(ops.CONCATENATE, *tensors, axis=_axis(axis, tensors[0].ndim, "concatenate"))


@contextlib.contextmanager
def no_grad():
    """Within this context no graph is recorded (for evaluation and parameter updates)."""
    previous, state.grad_enabled = state.grad_enabled, False
    try:
        yield
    finally:
        state.grad_enabled = previous


def is_grad_enabled() -> bool:
    """Whether ops currently record the graph."""
    return state.grad_enabled


@contextlib.contextmanager
def scope(label):
    """Tag every tensor created inside with ``label`` (the RNN uses it for layer and time step)."""
    previous, state.scope = state.scope, label
    try:
        yield
    finally:
        state.scope = previous
