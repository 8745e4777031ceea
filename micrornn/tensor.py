"""Tensor: a NumPy array that records the ops applied to it, and back-propagates through them."""
from __future__ import annotations

import contextlib
import itertools
import operator

import numpy as np

from micrornn import ops
from micrornn.autograd import backward as _backward, state

_FLOAT_KINDS = "f"
_creation_numbers = itertools.count()  # parents are always numbered before their outputs


class Tensor:
    """An ndarray node of the computation graph; float64 unless told otherwise."""

    __slots__ = ("data", "grad", "requires_grad", "name", "_op", "_parents", "_saved", "_needs",
                 "_scope", "_retain", "_origin", "_id", "__weakref__")
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

    def backward(self, grad=None, retain_graph=False, create_graph=False) -> None:
        """Back-propagate from this tensor, accumulating into the ``.grad`` of leaves."""
        if create_graph:
            raise ValueError("backward(create_graph=True): .grad holds plain arrays, so a gradient graph "
                             "has nowhere to live; use micrornn.grad(loss, params, create_graph=True), which "
                             "returns the gradients as Tensors that can be differentiated again")
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

    def exp(self): return apply(ops.EXP, self)
    def log(self): return apply(ops.LOG, self)
    def tanh(self): return apply(ops.TANH, self)
    def sigmoid(self): return apply(ops.SIGMOID, self)
    def relu(self): return apply(ops.RELU, self)

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
        """Permute axes (reverse them when none are given)."""
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        if not axes:
            return apply(ops.TRANSPOSE, self, axes=None)
        axes = _axis(tuple(axes), self.ndim, "transpose")
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of a {self.ndim}-d tensor's axes")
        return apply(ops.TRANSPOSE, self, axes=axes)

    @property
    def T(self):
        """Axes reversed."""
        return self.transpose()

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
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


def as_tensor(x) -> Tensor:
    """x itself when it is a Tensor, else a new constant Tensor of it."""
    return x if isinstance(x, Tensor) else Tensor(x)


def _fill(t: Tensor, array, requires_grad: bool, name) -> None:
    """Set every slot of a new tensor: the one place that lists them."""
    t.data, t.grad, t.requires_grad, t.name = array, None, requires_grad, name
    t._op = t._parents = t._saved = t._needs = t._origin = None
    t._scope, t._retain, t._id = state.scope, False, next(_creation_numbers)


def _leaf(array, requires_grad=False) -> Tensor:
    """Fast constructor for a leaf around an existing array (no copy, no checks)."""
    t = Tensor.__new__(Tensor)
    _fill(t, array, requires_grad, None)
    return t


def _lift(value, like: Tensor) -> Tensor:
    """Wrap a Python number or array as a constant, keeping ``like``'s float dtype for scalars."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (int, float)) and like.data.dtype.kind == "f":
        return _leaf(np.asarray(value, dtype=like.data.dtype))
    return _leaf(np.asarray(value))


def apply(prim: ops.Primitive, *inputs: Tensor, **attrs) -> Tensor:
    """Run a primitive's forward; record it in the graph when an input requires grad."""
    arrays = [t.data for t in inputs]
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
    if state.anomaly:
        state.check_forward(out, prim, inputs)
    if state.push_tangent is not None:
        state.push_tangent(out, prim, inputs, saved)
    return out


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
