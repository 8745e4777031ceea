"""The scalar engine Value: each op against central differences and against the Tensor engine."""
from __future__ import annotations

import gc
import math

import numpy as np
import pytest

from micrornn import Tensor, Value

EPS = 1e-6


def close(actual, expected, rtol=1e-7, atol=1e-9):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def central_differences(fn, xs):
    """d fn / d x_i for plain floats xs, with fn evaluated on constant Values."""
    grads = []
    for i in range(len(xs)):
        plus = list(xs)
        minus = list(xs)
        plus[i] += EPS
        minus[i] -= EPS
        f_plus = fn(*[Value(v) for v in plus]).data
        f_minus = fn(*[Value(v) for v in minus]).data
        grads.append((f_plus - f_minus) / (2 * EPS))
    return grads


def value_grads(fn, xs):
    """(output, [d out / d x_i]) from Value.backward."""
    vs = [Value(v) for v in xs]
    out = fn(*vs)
    out.backward()
    return out.data, [v.grad for v in vs]


def tensor_grads(fn, xs):
    """(output, [d out / d x_i]) from the Tensor engine on 0-d float64 tensors."""
    ts = [Tensor(v, requires_grad=True) for v in xs]
    out = fn(*ts)
    out.backward()
    return float(out.data), [0.0 if t.grad is None else float(t.grad) for t in ts]


# functions written once, run on both engines (same op vocabulary)
EXPRESSIONS = {
    "add": (lambda a, b: a + b, [0.7, -1.3]),
    "sub": (lambda a, b: a - b, [0.7, -1.3]),
    "mul": (lambda a, b: a * b, [0.7, -1.3]),
    "div": (lambda a, b: a / b, [0.7, -1.3]),
    "neg": (lambda a: -a, [0.4]),
    "pow number": (lambda a: a ** 3, [0.8]),
    "pow fractional": (lambda a: a ** 2.5, [1.3]),
    "pow negative": (lambda a: a ** -1.5, [1.3]),
    "pow Value": (lambda a, b: a ** b, [1.7, 0.6]),
    "exp": (lambda a: a.exp(), [0.3]),
    "log": (lambda a: a.log(), [0.3]),
    "tanh": (lambda a: a.tanh(), [-0.8]),
    "sigmoid": (lambda a: a.sigmoid(), [-0.8]),
    "sigmoid positive": (lambda a: a.sigmoid(), [1.4]),
    "relu positive": (lambda a: a.relu(), [0.9]),
    "relu negative": (lambda a: a.relu(), [-0.9]),
    "radd": (lambda a: 2.0 + a, [0.5]),
    "rsub": (lambda a: 2.0 - a, [0.5]),
    "rmul": (lambda a: 3 * a, [0.5]),
    "rtruediv": (lambda a: 2.0 / a, [0.5]),
    "rpow": (lambda a: 2.0 ** a, [0.5]),
    "number ops": (lambda a: (a + 1) * 2 - 3 / (a - 4), [0.5]),
    "mixed": (lambda a, b: ((a * b).tanh() + (a / b).exp() - (b * b + 1).log()) * a.sigmoid(), [0.6, -1.1]),
    "neuron": (lambda w, x, b: (w * x + b).tanh() ** 2 + (w - x).relu(), [0.4, 1.2, -0.3]),
    "shared": (lambda a: a * a * a + a / (a + 2) + a, [0.9]),
}


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_value_matches_central_differences(name):
    fn, xs = EXPRESSIONS[name]
    _, grads = value_grads(fn, xs)
    close(grads, central_differences(fn, xs), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_value_matches_tensor_engine(name):
    fn, xs = EXPRESSIONS[name]
    v_out, v_grads = value_grads(fn, xs)
    t_out, t_grads = tensor_grads(fn, xs)
    close(v_out, t_out, rtol=1e-13, atol=1e-15)
    close(v_grads, t_grads, rtol=1e-12, atol=1e-15)


def test_forward_values():
    a, b = Value(1.5), Value(-0.5)
    close([(a + b).data, (a - b).data, (a * b).data, (a / b).data, (a ** 2).data, (a ** b).data],
          [1.0, 2.0, -0.75, -3.0, 2.25, 1.5 ** -0.5], rtol=1e-15, atol=0)
    close([a.exp().data, a.log().data, b.tanh().data, b.sigmoid().data, b.relu().data, (-a).data],
          [math.exp(1.5), math.log(1.5), math.tanh(-0.5), 1 / (1 + math.exp(0.5)), 0.0, -1.5],
          rtol=1e-15, atol=0)


def test_reflected_ops_with_python_numbers():
    a = Value(4.0)
    results = [2 + a, 2 - a, 2 * a, 2 / a, 2 ** a, a + 2, a - 2, a * 2, a / 2, a ** 2]
    close([r.data for r in results], [6.0, -2.0, 8.0, 0.5, 16.0, 6.0, 2.0, 8.0, 2.0, 16.0], rtol=1e-15, atol=0)
    assert all(isinstance(r, Value) for r in results)
    y = 2 - a
    y.backward()
    close(a.grad, -1.0, rtol=0, atol=0)


def test_value_pow_value():
    a, b = Value(2.0), Value(3.0)
    y = a ** b
    y.backward()
    close(y.data, 8.0, rtol=1e-15, atol=0)
    close(a.grad, 3.0 * 4.0, rtol=1e-15, atol=0)
    close(b.grad, 8.0 * math.log(2.0), rtol=1e-15, atol=0)


@pytest.mark.parametrize("x", [1000.0, -1000.0])
def test_tanh_sigmoid_saturate_finite_and_exact(x):
    v = Value(x)
    t, s = v.tanh(), v.sigmoid()
    close(t.data, math.copysign(1.0, x), rtol=0, atol=0)
    close(s.data, 1.0 if x > 0 else 0.0, rtol=0, atol=1e-300)
    (t + s).backward()
    assert math.isfinite(v.grad)
    close(v.grad, 0.0, rtol=0, atol=1e-300)


def test_exp_overflow_gives_inf_not_an_exception():
    y = Value(1000.0).exp()
    assert math.isinf(y.data) and y.data > 0
    close(Value(-1000.0).exp().data, 0.0, rtol=0, atol=1e-300)


@pytest.mark.parametrize("x", [0.0, -1.0])
def test_log_of_non_positive_is_value_error(x):
    with pytest.raises(ValueError, match="log"):
        Value(x).log()


def test_parents_are_ordered_and_x_times_x_gives_2x():
    x = Value(3.0)
    y = x * x
    assert y.parents == (x, x)
    y.backward()
    close(x.grad, 6.0, rtol=0, atol=0)


def test_doubling_twice_gives_4():
    a = Value(1.5)
    b = a + a
    c = b + b
    c.backward()
    close(a.grad, 4.0, rtol=0, atol=0)
    close(b.grad, 2.0, rtol=0, atol=0)


def test_grads_accumulate_across_two_graphs():
    a = Value(2.0)
    (a * 3.0).backward()
    (a * a).backward()
    close(a.grad, 3.0 + 4.0, rtol=0, atol=0)


def test_backward_twice_on_the_same_graph_accumulates():
    a = Value(2.0)
    y = a * a + a
    y.backward()
    y.backward()
    close(a.grad, 2 * 5.0, rtol=0, atol=0)


def test_million_op_chain_backward():
    # the one slow test (a few seconds): 1,000,000 chained ops, no RecursionError, exact gradient
    x, c, d = Value(0.3), Value(1.0000001), Value(0.5)
    y = x
    n = 500_000
    gc.disable()  # millions of objects: the cyclic collector only slows the build down
    try:
        for _ in range(n):
            y = y * c
            y = y + d
        y.backward()
    finally:
        gc.enable()
    close(x.grad, c.data ** n, rtol=1e-9, atol=0)
    close(d.grad, sum(c.data ** k for k in range(n)), rtol=1e-9, atol=0)


def test_backward_through_a_hand_built_node_with_three_parents():
    """Nodes with 1, 2 and more parents take separate paths in backward; each parent gets its share."""
    a, b, c = Value(1.0), Value(2.0), Value(3.0)
    out = Value(6.0, _parents=(a, b, c), _local=(6.0, 3.0, 2.0), _op="abc")
    (out * 2.0).tanh().backward()
    slope = 2.0 * (1.0 - math.tanh(12.0) ** 2)
    assert [a.grad, b.grad, c.grad] == pytest.approx([6.0 * slope, 3.0 * slope, 2.0 * slope], rel=1e-12)


def test_big_backward_leaves_the_garbage_collector_as_it_found_it():
    """backward pauses the cyclic collector for big graphs and restores it, on or off."""
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            x, total = Value(0.5), Value(0.0)
            for _ in range(3000):
                total = total + x * x
            total.backward()
            assert x.grad == pytest.approx(3000.0) and gc.isenabled() == enabled
        finally:
            gc.enable()
