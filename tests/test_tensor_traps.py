"""The NumPy and PyTorch traps of the tensor API: each one works or fails with a message saying what to write."""
from __future__ import annotations

import numpy as np
import pytest

import micrornn as mr
from micrornn import Tensor, nn


# ---- transpose keeps NumPy's meaning; the PyTorch reading is refused --------------------------

def test_transpose_with_an_explicit_identity_permutation_is_refused():
    t = Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"use swapaxes\(0, 1\).*transpose\(\) with no axes"):
        t.transpose(0, 1)
    assert t.transpose(1, 0).shape == (3, 2) and t.transpose().shape == (3, 2)
    assert Tensor(np.zeros(3)).transpose(0).shape == (3,)  # 1-d: nothing a swap could mean


def test_swapaxes_and_permute():
    data = np.arange(24.0).reshape(2, 3, 4)
    t = Tensor(data)
    np.testing.assert_array_equal(t.swapaxes(0, 1).data, np.swapaxes(data, 0, 1))
    np.testing.assert_array_equal(t.swapaxes(-1, 0).data, np.swapaxes(data, -1, 0))
    np.testing.assert_array_equal(t.permute(2, 0, 1).data, data.transpose(2, 0, 1))
    with pytest.raises(ValueError, match="not a permutation"):
        t.permute(0, 0, 1)


# ---- mixed float dtypes ------------------------------------------------------------------------

def test_mixing_float32_and_float64_tensors_raises_with_the_fix():
    a, b = Tensor(np.ones(3, dtype=np.float32)), Tensor(np.ones(3))
    with pytest.raises(TypeError, match=r"add: operands have different float dtypes \(float32 and float64\).*astype"):
        a + b


def test_a_float32_model_fed_float64_inputs_says_so():
    mr.manual_seed(0)
    model = nn.Linear(3, 2, dtype=np.float32)
    with pytest.raises(TypeError, match="a float32 model needs float32 inputs"):
        model(np.ones((4, 3)))
    out = model(np.ones((4, 3), dtype=np.float32))
    assert out.dtype == np.float32


@pytest.mark.parametrize("other", [2, 0.5, [1.0, 2.0, 3.0], np.float64(0.5), np.arange(3), np.array([True, False, True])])
def test_numbers_lists_and_integer_arrays_take_the_tensor_dtype(other):
    t = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    assert (t * other).dtype == np.float32
    assert (other * t).dtype == np.float32
    assert (t - other).dtype == np.float32


# ---- indices -----------------------------------------------------------------------------------

@pytest.mark.parametrize("index", [1.0, np.array([0.0, 1.0]), (0, 1.5), [0.0, 2.0], Tensor([0.0, 1.0])])
def test_float_indices_say_they_must_be_integers(index):
    with pytest.raises(IndexError, match="indices must be integers"):
        Tensor(np.zeros((3, 3)))[index]


def test_integer_and_boolean_indices_still_work():
    t = Tensor(np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(t[np.array([2, 0])].data, [[4.0, 5.0], [0.0, 1.0]])
    np.testing.assert_array_equal(t[t.sum(axis=1) > 2].data, [[2.0, 3.0], [4.0, 5.0]])


# ---- comparisons -------------------------------------------------------------------------------

def test_comparisons_give_boolean_tensors_without_gradient():
    t = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    for result, expected in [(t < 2, [True, False, False]), (t <= 2, [True, True, False]),
                             (t > 2, [False, False, True]), (t >= 2, [False, True, True]),
                             (t == 2, [False, True, False]), (t != 2, [True, False, True])]:
        assert isinstance(result, Tensor) and result.dtype == bool and not result.requires_grad
        np.testing.assert_array_equal(result.data, expected)
    assert (t == None) is False  # noqa: E711  (comparison with None is identity, as for any object)
    assert len({t, t}) == 1  # tensors stay usable as dictionary keys
