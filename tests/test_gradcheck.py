"""micrornn.check.finite_differences: it passes correct gradients, catches wrong ones, and leaves inputs as it found them."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from micrornn import Tensor, stack
from micrornn.check.finite_differences import GradcheckError, autograd_grads, gradcheck, numerical_grad


def leaf(values, dtype=np.float64):
    return Tensor(np.array(values, dtype=dtype), requires_grad=True)


def wrong(x):
    """(x.detach() * x).sum(): autograd sees x, the true derivative is 2x."""
    return (x.detach() * x).sum()


def test_passes_correct_functions():
    x, w = leaf([[0.5, -1.0, 2.0]]), leaf([[1.0], [0.3], [-0.7]])
    assert gradcheck(lambda x, w: (x @ w).tanh() * x.sum(), [x, w]) is True
    assert gradcheck(lambda x: (x * x).exp().sum(axis=0), [leaf([[0.1, 0.2], [0.3, -0.4]])]) is True


def test_catches_a_wrong_gradient_without_raising():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float64 input: no warning expected
        assert gradcheck(wrong, [leaf([1.0, 2.0, 3.0])], raise_exception=False) is False


def test_raises_with_input_element_and_both_values():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    cotangent, _ = autograd_grads(lambda x: wrong(x) * Tensor(np.ones(1)), [x])  # same output shape (1,)
    v = float(cotangent[0])
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda c, x: wrong(x) * c, [Tensor(np.ones(1)), x])  # input 1 is wrong; 0 needs no grad
    message = str(info.value)
    assert "input 1" in message and "element (0, 0)" in message
    number = r"(?:np\.float64\()?([-+0-9.e]+)"
    autograd_value = float(re.search("autograd " + number, message).group(1))
    numeric_value = float(re.search("numerical " + number, message).group(1))
    np.testing.assert_allclose(autograd_value, v * 1.0, rtol=1e-12, atol=0)  # x[0, 0] * v
    np.testing.assert_allclose(numeric_value, 2 * v * 1.0, rtol=1e-6, atol=1e-8)
    assert isinstance(info.value, AssertionError)  # pytest shows it like a failed assert


def test_names_the_input_when_it_has_a_name():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True, name="weights")
    with pytest.raises(GradcheckError, match="input 0 'weights'"):
        gradcheck(wrong, [x])


def test_checks_every_output_not_only_their_sum():
    # each output's gradient is wrong, but the errors cancel in the sum of the outputs
    def swapped(x):
        a = x[0].detach() + x[1] - x[1].detach()  # value x0, autograd says d/dx1
        b = x[1].detach() + x[0] - x[0].detach()  # value x1, autograd says d/dx0
        return stack([a, b])

    x = leaf([0.5, -1.5])
    assert gradcheck(lambda x: swapped(x).sum(), [x]) is True  # the sum alone cannot tell
    assert gradcheck(swapped, [x], raise_exception=False) is False


def test_numerical_grad_of_a_known_function():
    x, y = leaf([[0.5, -1.0], [2.0, 0.25]]), leaf([3.0, -2.0])
    grads = numerical_grad(lambda x, y: (x * x * y).sum(), [x, y])
    np.testing.assert_allclose(grads[0], 2 * x.data * y.data, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(grads[1], (x.data ** 2).sum(axis=0), rtol=1e-7, atol=1e-8)
    assert grads[0].shape == (2, 2) and grads[1].shape == (2,)
    np.testing.assert_allclose(x.data, [[0.5, -1.0], [2.0, 0.25]], rtol=0, atol=0)  # restored


def test_float32_input_warns():
    x = leaf([0.5, 1.5], dtype=np.float32)
    with pytest.warns(UserWarning, match="float32"):
        gradcheck(lambda x: (x * x).sum(), [x], raise_exception=False)


@pytest.mark.parametrize("bad", [Tensor(np.array([1, 2])), np.array([1.0, 2.0])], ids=["int Tensor", "ndarray"])
def test_non_float_tensor_inputs_are_refused(bad):
    with pytest.raises(TypeError, match="input 0"):
        gradcheck(lambda x: x * 2.0, [bad])


def test_input_grads_are_restored():
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    held = np.array([7.0, 8.0])
    x.grad = held
    assert gradcheck(lambda x, y: x * y, [x, y])
    assert x.grad is held
    np.testing.assert_allclose(held, [7.0, 8.0], rtol=0, atol=0)
    assert y.grad is None
    assert not gradcheck(wrong, [x], raise_exception=False)
    assert x.grad is held


def test_input_not_used_by_fn_has_zero_gradient():
    x, unused = leaf([1.0, 2.0]), leaf([3.0])
    assert gradcheck(lambda x, u: x * 3.0, [x, unused])


def test_tolerances_are_applied():
    # a gradient off by 1e-4 (relative) passes at rtol 1e-3 and fails at rtol 1e-6
    def slightly_wrong(x):
        return x * x.detach() * 1e-4 + x * x  # autograd: 2x + 1e-4 x; true: 2x + 2e-4 x

    x = leaf([1.0, -2.0, 0.5])
    assert gradcheck(slightly_wrong, [x], rtol=1e-3, atol=0)
    assert not gradcheck(slightly_wrong, [x], rtol=1e-6, atol=0, raise_exception=False)
