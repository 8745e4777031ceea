"""The scalar engine's gradients as Values: second and third derivatives of Value expressions."""
from __future__ import annotations

import math

import numpy as np
import pytest

import micrornn as mr
from micrornn import Tensor, Value


def second_derivatives(build, point):
    """Hessian of build(*values) at point via backward(create_graph=True) twice (Value engine)."""
    n = len(point)
    hessian = np.zeros((n, n))
    for i in range(n):
        xs = [Value(p) for p in point]
        build(*xs).backward(create_graph=True)
        gi = xs[i].grad
        for x in xs:
            x.grad = 0.0
        gi.backward()
        hessian[i] = [x.grad for x in xs]
    return hessian


def tensor_hessian(build, point):
    """The same Hessian by the Tensor engine's hvp against unit vectors."""
    rows = []
    for i in range(len(point)):
        e = np.zeros(len(point))
        e[i] = 1.0
        rows.append(mr.hvp(lambda x: build(*[x[k] for k in range(len(point))]), Tensor(np.array(point)), e)[1].data)
    return np.array(rows)


EXPRESSIONS = {
    "mixed": lambda x, y: (x * y).tanh() + x ** 3 / y + (x * x).exp().log() + x.sigmoid() * y - (-x),
    "power of a Value": lambda x, y: x ** y + 2.0 ** x,
    "relu and division": lambda x, y: (x - y).relu() * x / (1.0 + y * y),
}


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_value_hessian_matches_the_tensor_engine(name):
    point = [0.7, 1.3]
    np.testing.assert_allclose(second_derivatives(EXPRESSIONS[name], point), tensor_hessian(EXPRESSIONS[name], point),
                               rtol=1e-12, atol=1e-12)


def test_third_derivative_of_a_power():
    x = Value(1.5)
    (x ** 4).backward(create_graph=True)
    d1, x.grad = x.grad, 0.0
    d1.backward(create_graph=True)
    d2, x.grad = x.grad, 0.0
    d2.backward()
    assert (d1.data, d2.data, x.grad) == pytest.approx((4 * 1.5 ** 3, 12 * 1.5 ** 2, 24 * 1.5), rel=1e-15)


def test_power_with_exponent_zero_is_constant():
    x = Value(0.0)
    (x ** 0 + x).backward(create_graph=True)
    assert x.grad.data == 1.0


def test_value_gradients_without_create_graph_stay_floats():
    x = Value(0.3)
    (x * x).tanh().backward()
    assert isinstance(x.grad, float)
    assert x.grad == pytest.approx(2 * 0.3 * (1 - math.tanh(0.09) ** 2), rel=1e-15)
    y = Value(0.3)
    (y * y).tanh().backward(create_graph=True)
    assert isinstance(y.grad, Value) and y.grad.data == pytest.approx(x.grad, rel=1e-15)
    assert "grad=" in repr(y)
