"""Tensor: a NumPy array that records the ops applied to it, and back-propagates through them."""
from __future__ import annotations

import contextlib
import itertools
from typing import Any

import numpy as np

from micrornn.engine import ops
from micrornn.engine.composites import CompositeMethods, _with_axes, normalize_axis as _axis
from micrornn.engine.backward import backward as _backward, state
from micrornn.engine.guard import hold, writable_data

_FLOAT_KINDS = "f"
_creation_numbers = itertools.count()  # parents are always numbered before their outputs


class Tensor(CompositeMethods):
    """An ndarray node of the computation graph; float64 unless told otherwise."""

    __slots__ = ("data", "grad", "requires_grad", "name", "_op", "_parents", "_saved", "_needs",
                 "_scope", "_retain", "_origin", "_id", "_guard", "__weakref__")
    data: np.ndarray
    grad: np.ndarray | None
    requires_grad: bool
    name: str | None
    _op: Any
    _parents: tuple | None
    _saved: Any
    _needs: Any
    _scope: Any
    _retain: bool
    _origin: Any
    _id: int
    _guard: Any
    __array_priority__ = 1000  # ndarray <op> Tensor runs as a micrornn op (see __array_ufunc__)

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        if isinstance(data, Tensor):
            data = data.data
        from_python = not isinstance(data, (np.ndarray, np.generic))
        try:
            array = np.array(data, dtype=dtype)
        except (TypeError, ValueError) as err:
            if isinstance(data, (list, tuple)) and any(isinstance(v, Tensor) and v.requires_grad for v in data):
                raise TypeError("Tensor: a list of tensors that require grad would be cut from the graph; "
                                "join them with micrornn.stack(tensors) instead") from None
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

    # ---- conversions: NumPy's rules, and no silent cut of the graph ---------------------------
    def __array__(self, dtype=None, copy=None):
        if self.requires_grad:
            raise TypeError("np.asarray/np.array of a Tensor that requires grad would silently cut the graph: "
                            "use t.detach().numpy() for a constant copy of the values, or t.numpy() for "
                            "the data itself")
        if dtype is None and not copy:
            return self.data
        return np.array(self.data, dtype=dtype, copy=True)

    def _one_element(self, kind):
        """The single element, for float()/int()/bool() (NumPy's rule: exactly one element)."""
        if state.record is not None:
            state.record.read(self, f"{kind.__name__}()")
        if self.data.size != 1:
            if kind is bool:
                raise ValueError(f"the truth value of a tensor with {self.data.size} elements is ambiguous: "
                                 "use t.any() or t.all()")
            raise TypeError(f"{kind.__name__}() needs a one-element tensor, got shape {self.shape}")
        return kind(self.data.reshape(()).item())

    def __float__(self): return self._one_element(float)
    def __int__(self): return self._one_element(int)
    def __bool__(self): return self._one_element(bool)

    def __index__(self):
        if self.data.ndim or self.data.dtype.kind not in "iu":
            raise TypeError(f"only a 0-d integer tensor can be used as an index, got shape {self.shape} "
                            f"and dtype {self.dtype}")
        if state.record is not None:
            state.record.read(self, "an index")
        return int(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if state.record is not None:
            state.record.read(self, "item()")
        if self.data.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """A new leaf sharing this data, cut from the graph."""
        out = _leaf(self.data)
        if state.record is not None:
            state.record.derived(out, "detach", lambda a: a, self)
        return out

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        self._retain = True
        return self

    def backward(self, grad=None, retain_graph=False, create_graph=False) -> None:
        """Back-propagate from this tensor, accumulating into the ``.grad`` of leaves.

        The arrays the graph saved are read-only until it is released: by this call, unless
        retain_graph=True, or when the graph is dropped (see ``micrornn.engine.guard``)."""
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

    def __abs__(self): return apply(ops.ABS, self)

    # ---- in-place operators: ``total += loss`` makes a new node (total is rebound); on a leaf that
    # requires grad (a parameter) ``p -= lr * p.grad`` changes p's data under no_grad(), as in PyTorch
    def _in_place(self, other, ufunc, symbol):
        if self._op is not None or not self.requires_grad:
            return NotImplemented  # Python then runs the ordinary operator and rebinds the name
        if state.grad_enabled:
            raise RuntimeError(f"t {symbol} x: an in-place update of a leaf that requires grad (shape {self.shape}) "
                               "cannot be recorded; update parameters inside micrornn.no_grad(), "
                               "or write p = p - x for a new tensor in the graph")
        data = writable_data(self)  # a copy when a live graph saved it: that graph keeps its values
        ufunc(data, _lift(other, self).data, out=data)
        return self

    def __iadd__(self, other): return self._in_place(other, np.add, "+=")
    def __isub__(self, other): return self._in_place(other, np.subtract, "-=")
    def __imul__(self, other): return self._in_place(other, np.multiply, "*=")
    def __itruediv__(self, other): return self._in_place(other, np.divide, "/=")

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor: use t.item() for its value")
        return (self[i] for i in range(len(self.data)))

    def exp(self): return apply(ops.EXP, self)
    def log(self): return apply(ops.LOG, self)
    def tanh(self): return apply(ops.TANH, self)
    def sigmoid(self): return apply(ops.SIGMOID, self)
    def relu(self): return apply(ops.RELU, self)
    def abs(self): return apply(ops.ABS, self)

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
        plain = lambda b: b.item() if isinstance(b, np.generic) else b  # noqa: E731  (np.float64(0.5): no promotion)
        return apply(ops.CLIP, self, lo=plain(lo), hi=plain(hi))

    # ---- comparisons: boolean tensors, never part of the graph -------------------------------
    def _compare(self, other, ufunc):
        """A boolean constant tensor from comparing the data."""
        if other is None:
            return NotImplemented
        other = _lift(other, self)
        out = _leaf(np.asarray(ufunc(self.data, other.data)))
        if state.record is not None:
            state.record.derived(out, ufunc.__name__, lambda a, b: np.asarray(ufunc(a, b)), self, other)
        return out

    def __lt__(self, other): return self._compare(other, np.less)
    def __le__(self, other): return self._compare(other, np.less_equal)
    def __gt__(self, other): return self._compare(other, np.greater)
    def __ge__(self, other): return self._compare(other, np.greater_equal)
    def __eq__(self, other): return self._compare(other, np.equal)
    def __ne__(self, other): return self._compare(other, np.not_equal)
    __hash__ = object.__hash__  # identity: tensors are graph nodes and dictionary keys

    def _logical(self, other, ufunc, symbol):
        """A boolean (or integer) constant tensor from &, |, ^ of masks: no gradient."""
        operands = [self.data] + ([] if other is None else [_lift(other, self).data])
        for data in operands:
            if data.dtype.kind not in "biu":
                raise TypeError(f"{symbol}: needs boolean or integer tensors, got {data.dtype}; compare first, "
                                "e.g. (x > 0) & (x < 1)")
        out = _leaf(np.asarray(ufunc(*operands)))
        if state.record is not None:
            state.record.derived(out, ufunc.__name__, lambda *a: np.asarray(ufunc(*a)), self,
                                 *([] if other is None else [_lift(other, self)]))
        return out

    def __and__(self, other): return self._logical(other, np.bitwise_and, "&")
    def __rand__(self, other): return self._logical(other, np.bitwise_and, "&")
    def __or__(self, other): return self._logical(other, np.bitwise_or, "|")
    def __ror__(self, other): return self._logical(other, np.bitwise_or, "|")
    def __xor__(self, other): return self._logical(other, np.bitwise_xor, "^")
    def __rxor__(self, other): return self._logical(other, np.bitwise_xor, "^")
    def __invert__(self): return self._logical(None, np.invert, "~")

    def any(self, axis=None):
        """Whether any element is true (a boolean constant tensor)."""
        if state.record is not None:
            state.record.read(self, "any()")
        return _leaf(np.asarray(self.data.any(axis=_axis(axis, self.ndim, "any"))))

    def all(self, axis=None):
        """Whether every element is true (a boolean constant tensor)."""
        if state.record is not None:
            state.record.read(self, "all()")
        return _leaf(np.asarray(self.data.all(axis=_axis(axis, self.ndim, "all"))))

    # ---- reductions and shapes -------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (all axes when None)."""
        return apply(ops.SUM, self, axis=_axis(axis, _with_axes(self, "sum", axis), "sum"), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis``: a sum scaled by 1/count."""
        ax = _axis(axis, _with_axes(self, "mean", axis), "mean")
        count = self.data.size if ax is None else int(np.prod([self.shape[a] for a in np.atleast_1d(ax)]))
        if count == 0:
            raise ValueError(f"mean: no elements to average over (shape {self.shape}, axis {axis})")
        return self.sum(ax, keepdims) * (1.0 / count)

    def max(self, axis=None, keepdims=False):
        """Maximum over ``axis``; ties share the gradient equally."""
        return apply(ops.MAX, self, axis=_axis(axis, _with_axes(self, "max", axis), "max"), keepdims=keepdims)

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

    def _permuted(self, axes):
        """The transpose primitive with an already checked permutation."""
        return apply(ops.TRANSPOSE, self, axes=axes)

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
        if type(index) is not int:  # an int (the unrolled RNN's x[t]) needs no check
            _check_index(index)
        return apply(ops.GETITEM, self, index=index)


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
        if isinstance(value, (int, float)) or (isinstance(value, np.generic) and value.dtype.kind in "fiub"):
            return _leaf(np.asarray(value, dtype=like.data.dtype))
        if isinstance(value, np.ndarray) and value.dtype.kind in "iub":
            return _leaf(value.astype(like.data.dtype))
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":  # a string, None, a complex number, an object
        raise TypeError(f"a Tensor cannot be combined with {type(value).__name__} {_short(value)} (dtype "
                        f"{array.dtype}): use numbers, real arrays or Tensors")
    if like.data.dtype.kind == "f" and isinstance(value, list):
        return _leaf(array.astype(like.data.dtype))
    return _leaf(array)


def _short(value) -> str:
    """repr of a value for a message, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def apply(prim: ops.Primitive, *inputs: Tensor, **attrs) -> Tensor:
    """Run a primitive's forward; record it in the graph when an input requires grad."""
    arrays = [t.data for t in inputs]
    first = arrays[0].dtype
    for array in arrays:
        if array.dtype is not first:
            arrays = _check_float_dtypes(prim, arrays)
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
        kind = type(saved)  # arrays are read-only while the graph lives: an in-place edit fails at the write
        if kind is tuple or kind is np.ndarray:  # (an index or a shape holds nothing)
            out._guard = hold(inputs, saved, out.data)
    if state.anomaly:
        state.check_forward(out, prim, inputs)
    if state.push_tangent is not None:
        state.push_tangent(out, prim, inputs, saved, attrs)
    if state.record is not None:
        state.record.op(out, prim, inputs, arrays, attrs)
    return out


def _check_float_dtypes(prim, arrays) -> list:
    """The dtype rule: one op never mixes float dtypes (no silent float32 -> float64 promotion), and in
    arithmetic an integer operand takes the float operand's dtype (NumPy would make int64 * float32
    float64), as integer arrays and numbers already do in ``_lift``."""
    floats = {a.dtype for a in arrays if a.dtype.kind == "f"}
    if len(floats) > 1:
        floats = sorted(map(str, floats))
        raise TypeError(f"{prim.name}: operands have different float dtypes ({' and '.join(floats)}); "
                        "micrornn does not promote between float dtypes: convert one side first, e.g. "
                        f"x.astype(np.{floats[0]}) (a float32 model needs float32 inputs)")
    if floats and prim in _ARITHMETIC:
        (dtype,) = floats
        skip = 1 if prim is ops.WHERE else 0  # where's condition stays boolean
        return [a.astype(dtype) if i >= skip and a.dtype.kind in "iu" else a for i, a in enumerate(arrays)]
    return arrays


_ARITHMETIC = {ops.ADD, ops.SUB, ops.MUL, ops.DIV, ops.POW, ops.MATMUL, ops.MATMUL_ADD, ops.MAXIMUM, ops.MINIMUM,
               ops.WHERE}


def _attrs_text(attrs) -> str:
    """Describe an op's attributes for an error message."""
    return "".join(f", {k}={_plain_number(v)!r}" for k, v in attrs.items() if k != "index") if attrs else ""


def _plain_number(value):
    """NumPy scalars as Python numbers (also inside tuples), so messages read 1.5, not np.float64(1.5)."""
    if isinstance(value, np.generic):
        return value.item()
    return tuple(map(_plain_number, value)) if isinstance(value, tuple) else value


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
    return apply(ops.CONCATENATE, *tensors, axis=_axis(axis, _with_axes(tensors[0], "concatenate"), "concatenate"))


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


class scope:
    """Tag every tensor created inside ``with scope(label):`` with label (the RNN's layer and step).

    A class rather than a generator: the unrolled RNN enters one per time step, and this costs a
    tenth of a generator-based context manager."""

    __slots__ = ("label", "previous")

    def __init__(self, label):
        self.label = label

    def __enter__(self) -> None:
        self.previous, state.scope = state.scope, self.label

    def __exit__(self, *exc) -> None:
        state.scope = self.previous


Tensor.apply = staticmethod(apply)  # lets the primitive table record Tensor ops without importing this module
