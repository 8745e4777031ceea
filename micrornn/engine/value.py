"""Value: a scalar autodiff engine where every number is a node (the micrograd idea, made robust).

Each op stores its parents in order (so ``x*x`` keeps both) and the local derivative toward each
parent, computed during the forward; backward is then a loop over an iterative topological order.
"""
from __future__ import annotations

import itertools
import math
from operator import attrgetter

from micrornn.engine.backward import gc_paused

_creation_numbers = itertools.count()  # an op's inputs always exist before its output


class Value:
    """A scalar node: ``data``, ``grad`` and the local derivatives toward its parents."""

    __slots__ = ("data", "grad", "_parents", "_local", "_op", "_g", "_exponent", "_id")

    def __init__(self, data, _parents=(), _local=(), _op=""):
        self.data = float(data)
        self.grad = 0.0
        self._parents = _parents  # ordered tuple of Values
        self._local = _local      # d(self)/d(parent) for each parent, same order
        self._op = _op
        self._g = 0.0             # this backward's gradient, before it is added to .grad
        self._id = next(_creation_numbers)

    def __repr__(self):
        grad = self.grad.data if isinstance(self.grad, Value) else self.grad  # a Value after create_graph
        return f"Value(data={self.data:.6g}, grad={grad:.6g})"

    @property
    def parents(self) -> tuple:
        """The inputs of the op that made this value, in order."""
        return self._parents

    @property
    def op(self) -> str:
        """The op that made this value ('' for a leaf)."""
        return self._op

    # ---- binary ops: local derivatives beside each rule --------------------------------------
    def __add__(self, other):
        other = other if type(other) is Value else _lift(other)  # d(a+b)/da = 1, d(a+b)/db = 1
        return _node(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other):
        other = other if type(other) is Value else _lift(other)  # d(ab)/da = b, d(ab)/db = a
        return _node(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __pow__(self, other):
        if isinstance(other, Value):  # d(a^b)/da = b a^(b-1), d(a^b)/db = a^b log a (a > 0)
            out = _power(self.data, other.data)
            dlog = out * math.log(self.data) if self.data > 0 else math.nan
            return Value(out, (self, other), (_power_slope(self.data, other.data), dlog), "**")
        if not isinstance(other, (int, float)):
            return NotImplemented  # d(a^n)/da = n a^(n-1)
        out = Value(_power(self.data, other), (self,), (_power_slope(self.data, other),), f"**{other:g}")
        out._exponent = other  # for backward(create_graph=True)
        return out

    def __rpow__(self, other):
        return _lift(other) ** self

    def __neg__(self):
        return Value(-self.data, (self,), (-1.0,), "neg")  # d(-a)/da = -1

    def __sub__(self, other):
        other = _lift(other)  # d(a-b)/da = 1, d(a-b)/db = -1
        return Value(self.data - other.data, (self, other), (1.0, -1.0), "-")

    def __truediv__(self, other):
        other = _lift(other)  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        return Value(self.data / other.data, (self, other),
                     (1.0 / other.data, -self.data / (other.data * other.data)), "/")

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return _lift(other) - self

    def __rtruediv__(self, other):
        return _lift(other) / self

    # ---- unary functions ---------------------------------------------------------------------
    def exp(self):
        try:
            out = math.exp(self.data)
        except OverflowError:
            out = math.inf
        return Value(out, (self,), (out,), "exp")  # d(e^a)/da = e^a

    def log(self):
        if self.data <= 0:
            raise ValueError(f"Value.log: log of a non-positive number {self.data!r}")
        return Value(math.log(self.data), (self,), (1.0 / self.data,), "log")  # d(log a)/da = 1/a

    def tanh(self):
        t = math.tanh(self.data)  # math.tanh never overflows
        return Value(t, (self,), (1.0 - t * t,), "tanh")  # d(tanh a)/da = 1 - tanh^2

    def sigmoid(self):
        if self.data >= 0:
            s = 1.0 / (1.0 + math.exp(-self.data))
        else:
            e = math.exp(self.data)
            s = e / (1.0 + e)
        return Value(s, (self,), (s * (1.0 - s),), "sigmoid")  # d(sigmoid a)/da = s (1 - s)

    def relu(self):
        positive = self.data > 0
        return Value(self.data if positive else 0.0, (self,), (1.0 if positive else 0.0,), "relu")

    # ---- backward ----------------------------------------------------------------------------
    def backward(self, create_graph=False) -> None:
        """Add d(self)/d(node) to ``.grad`` of every node of the graph (gradients accumulate).

        create_graph=True makes the gradients Values built from the graph's own nodes, so a
        gradient can be differentiated again: ``x.grad.backward()`` after setting x.grad = 0.0.
        """
        order = _topological_order(self)
        if create_graph:
            _backward_graph(order)
            return
        with gc_paused(len(order)):  # the loop makes no cycles: the collector would only walk the graph
            self._g = 1.0
            for node in order:
                g = node._g
                node._g = 0.0
                node.grad += g
                parents = node._parents
                if len(parents) == 2:  # indexed, not zip(): no allocation per node
                    local = node._local
                    parents[0]._g += local[0] * g
                    parents[1]._g += local[1] * g
                elif len(parents) == 1:
                    parents[0]._g += node._local[0] * g
                else:  # a leaf, or a Value built by hand with more parents
                    for parent, local in zip(parents, node._local):
                        parent._g += local * g


# d(out)/d(parent) as Values, for backward(create_graph=True): (out, *parents) -> one per parent
_LOCAL_VALUES = {
    "+": lambda out, a, b: (1.0, 1.0),
    "-": lambda out, a, b: (1.0, -1.0),
    "*": lambda out, a, b: (b, a),  # d(ab)/da = b, d(ab)/db = a
    "/": lambda out, a, b: (1.0 / b, -out / b),  # d(a/b)/db = -a/b^2 = -out/b
    "**": lambda out, a, b: (b * a ** (b - 1.0), out * a.log() if a.data > 0 else math.nan),
    "neg": lambda out, a: (-1.0,),
    "exp": lambda out, a: (out,),  # d(e^a)/da = e^a
    "log": lambda out, a: (1.0 / a,),
    "tanh": lambda out, a: (1.0 - out * out,),  # d(tanh a)/da = 1 - tanh^2
    "sigmoid": lambda out, a: (out * (1.0 - out),),
    "relu": lambda out, a: (1.0 if a.data > 0 else 0.0,),
}


def _local_values(node) -> tuple:
    """The local derivatives of node toward its parents as Values (or constants)."""
    if node._op.startswith("**") and len(node._parents) == 1:  # a^n: n a^(n-1), 0 for n = 0
        n = node._exponent
        return (0.0 if n == 0 else n * node._parents[0] ** (n - 1),)
    return _LOCAL_VALUES[node._op](node, *node._parents)


def _backward_graph(order) -> None:
    """backward(create_graph=True): the chain rule written with Value ops, so it is a graph too."""
    grads = {order[0]: Value(1.0)}
    for node in order:
        g = grads.pop(node, None)
        if g is None:
            continue
        node.grad = g if not isinstance(node.grad, Value) and node.grad == 0.0 else node.grad + g
        if not node._parents:
            continue
        for parent, local in zip(node._parents, _local_values(node)):
            term = local * g
            grads[parent] = term if parent not in grads else grads[parent] + term


def _power(a: float, b: float) -> float:
    """a ** b as a real number: inf for 0 to a negative power, nan where the result is complex."""
    try:
        out = a ** b
    except ZeroDivisionError:
        return math.inf
    return out if isinstance(out, float | int) else math.nan


def _power_slope(a: float, b: float) -> float:
    """d(a^b)/da = b a^(b-1), with 0 for b = 0 (a constant) and the real-valued power above."""
    return 0.0 if b == 0 else b * _power(a, b - 1)


def _node(data: float, parents: tuple, local: tuple, op: str) -> Value:
    """A new op output (the hot path of + and *: no float() conversion, no argument defaults)."""
    out = _new_value(Value)
    out.data, out.grad, out._parents, out._local, out._op, out._g = data, 0.0, parents, local, op, 0.0
    out._id = next(_creation_numbers)
    return out


_new_value = object.__new__


def _lift(x) -> Value:
    """Wrap a Python number as a constant Value."""
    return x if isinstance(x, Value) else Value(x)


def _topological_order(root: Value) -> list:
    """Every node reachable from root, each before its parents, without recursion.

    A node is always created after its parents, so the reachable nodes sorted by creation number,
    newest first, are in topological order (the tensor engine's rule): one plain walk and one sort.
    """
    seen, stack = {root}, [root]
    while stack:
        for parent in stack.pop()._parents:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return sorted(seen, key=_creation_number, reverse=True)


_creation_number = attrgetter("_id")
