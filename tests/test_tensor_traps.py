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


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("fused", [False, True])
def test_a_float32_sequence_model_fed_float64_raises_on_both_paths(cell, fused):
    mr.manual_seed(0)
    model = nn.SequenceModel(3, 4, 5, cell=cell, fused=fused, dtype=np.float32)
    with pytest.raises(TypeError, match=r"different float dtypes \(float32 and float64\).*x.astype\(np.float32\)"):
        model(np.ones((2, 1, 3)))
    assert model(np.ones((2, 1, 3), dtype=np.float32))[0].dtype == np.float32


@pytest.mark.parametrize("other", [2, 0.5, [1.0, 2.0, 3.0], np.float64(0.5), np.arange(3), np.array([True, False, True])])
def test_numbers_lists_and_integer_arrays_take_the_tensor_dtype(other):
    t = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    assert (t * other).dtype == np.float32
    assert (other * t).dtype == np.float32
    assert (t - other).dtype == np.float32



@pytest.mark.parametrize("other", [np.arange(3), np.array([True, False, True]), np.int64(2)])
def test_integer_and_boolean_tensors_take_the_float_tensor_dtype(other):
    t, const = Tensor(np.ones(3, dtype=np.float32), requires_grad=True), Tensor(other)
    for out in (t * const, const * t, t - const, const / t, t ** const, mr.maximum(const, t),
                mr.where(np.array([True, False, True]), const, t), Tensor(np.eye(3, dtype=int)) @ t):
        assert out.dtype == np.float32
    (t * const).sum().backward()
    assert t.grad.dtype == np.float32


def test_clip_bounds_take_the_tensor_dtype():
    t = Tensor(np.array([0.1, 0.4, 0.9], dtype=np.float32), requires_grad=True)
    out = t.clip(np.float64(0.2), np.float64(0.8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, [0.2, 0.4, 0.8])
    assert np.clip(t, np.float64(0.2), None).dtype == np.float32

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


# ---- NumPy functions on tensors ----------------------------------------------------------------

@pytest.mark.parametrize("call, method", [
    (np.tanh, lambda t: t.tanh()), (np.exp, lambda t: t.exp()), (np.log, lambda t: t.log()),
    (np.abs, lambda t: t.abs()), (np.sqrt, lambda t: t.sqrt()), (np.square, lambda t: t.square()),
    (np.negative, lambda t: -t), (lambda t: np.add(t, 2.0), lambda t: t + 2.0),
    (lambda t: np.subtract(1.0, t), lambda t: 1.0 - t), (lambda t: np.multiply(t, t), lambda t: t * t),
    (lambda t: np.divide(t, 4.0), lambda t: t / 4.0), (lambda t: np.power(t, 3.0), lambda t: t ** 3.0),
    (lambda t: np.maximum(t, 1.0), lambda t: t.maximum(1.0)), (lambda t: np.minimum(0.5, t), lambda t: t.minimum(0.5)),
    (lambda t: np.matmul(t, np.ones((3, 2))), lambda t: t @ np.ones((3, 2))),
    (lambda t: np.ones(3) + t, lambda t: t + 1.0), (lambda t: np.float64(2.0) * t, lambda t: t * 2.0),
])
def test_numpy_ufuncs_the_table_has_run_as_ops(call, method):
    data = np.array([[0.5, 1.0, 2.0], [1.5, 0.25, 3.0]])
    t, ref = Tensor(data, requires_grad=True), Tensor(data.copy(), requires_grad=True)
    out, expected = call(t), method(ref)
    assert isinstance(out, Tensor) and out.requires_grad and out.dtype == expected.dtype
    np.testing.assert_allclose(out.data, expected.data)
    out.sum().backward()
    expected.sum().backward()
    np.testing.assert_allclose(t.grad, ref.grad)


def test_numpy_functions_with_a_tensor_method_run_as_ops():
    t = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    for out, expected in [(np.sum(t, axis=0), [3.0, 5.0, 7.0]), (np.mean(t), 2.5), (np.max(t, axis=1), [2.0, 5.0]),
                          (np.min(t), 0.0), (np.transpose(t).shape, (3, 2)), (np.reshape(t, (3, 2)).shape, (3, 2)),
                          (np.concatenate([t, t]).shape, (4, 3)), (np.stack([t, t], axis=1).shape, (2, 2, 3)),
                          (np.clip(t, 1.0, 4.0), [[1.0, 1.0, 2.0], [3.0, 4.0, 4.0]])]:
        if isinstance(out, Tensor):
            assert out.requires_grad
            out = out.data
        np.testing.assert_allclose(out, expected)
    assert np.shape(t) == (2, 3) and np.ndim(t) == 2 and np.size(t) == 6
    assert np.reshape(t, shape=(6,)).shape == (6,) and np.squeeze(np.expand_dims(t, 0), 0).shape == (2, 3)
    assert np.swapaxes(t, 0, 1).shape == (3, 2) and float(np.var(t)) == pytest.approx(np.var(np.arange(6.0)))
    assert isinstance(np.where(t > 2, t, 0.0), Tensor) and float(np.std(t, ddof=1)) == pytest.approx(1.8708287)
    with pytest.raises(TypeError, match=r"np.sum: arguments \['dtype'\] are not supported"):
        np.sum(t, dtype=np.float32)


def test_numpy_ufuncs_without_a_primitive_name_the_way_out():
    t = Tensor([0.5, 1.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"np.sin is not a micrornn op.*defprimitive.*detach\(\).numpy\(\)"):
        np.sin(t)
    with pytest.raises(TypeError, match=r"np.add.reduce is not a micrornn op on Tensors; call t.sum\(\)"):
        np.add.reduce(t)
    with pytest.raises(TypeError, match="out="):
        np.tanh(t, out=np.zeros(2))
    with pytest.raises(TypeError, match=r"np.linalg.norm on a Tensor that requires grad.*np.linalg.norm\(t.detach"):
        np.linalg.norm(t)


def test_numpy_boolean_ufuncs_give_boolean_tensors_without_gradient():
    t = Tensor([1.0, np.nan, np.inf], requires_grad=True)
    for ufunc, expected in [(np.isnan, [False, True, False]), (np.isfinite, [True, False, False]),
                            (np.isinf, [False, False, True]), (np.signbit, [False, False, False])]:
        out = ufunc(t)
        assert isinstance(out, Tensor) and out.dtype == bool and not out.requires_grad
        np.testing.assert_array_equal(out.data, expected)
    assert bool(np.isfinite(Tensor(2.0) * t[0]))


def test_numpy_where_with_only_a_condition_gives_the_indices():
    rows, = np.where(Tensor([0.5, -1.0, 2.0]) > 0)
    np.testing.assert_array_equal(rows, [0, 2])


def test_numpy_functions_on_a_tensor_that_requires_grad_refuse_to_cut_the_graph():
    t = Tensor([0.5, 1.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"np.cumsum on a Tensor that requires grad would cut the graph"):
        np.cumsum(t)
    np.testing.assert_allclose(np.cumsum(Tensor([0.5, 1.0])), [0.5, 1.5])  # a constant: plain NumPy


def test_asarray_refuses_a_tensor_that_requires_grad_and_works_otherwise():
    t = Tensor([1.0, 2.0], requires_grad=True)
    for convert in (np.asarray, np.array, lambda x: np.array([x, x])):
        with pytest.raises(TypeError, match=r"cut the graph: use t.detach\(\).numpy\(\).*t.numpy\(\)"):
            convert(t)
    plain = Tensor([1.0, 2.0])
    assert np.asarray(plain) is plain.data and np.asarray(plain).dtype == np.float64
    assert np.asarray(plain, dtype=np.float32).dtype == np.float32
    assert np.array(plain) is not plain.data
    np.testing.assert_array_equal(np.asarray(t.detach()), [1.0, 2.0])
    with pytest.raises(TypeError, match=r"join them with micrornn.stack\(tensors\)"):
        Tensor([t, t])
    np.testing.assert_array_equal(Tensor([plain, plain]).data, [[1.0, 2.0], [1.0, 2.0]])


# ---- float(), int(), bool() --------------------------------------------------------------------

def test_scalar_conversions_follow_numpy():
    assert float(Tensor(2.5)) == 2.5 and float(Tensor([[2.5]])) == 2.5
    assert int(Tensor(2.7)) == 2 and int(Tensor([3])) == 3
    assert bool(Tensor(0.0)) is False and bool(Tensor([1.0])) is True
    assert float(Tensor(1.5, requires_grad=True) * 2.0) == 3.0
    assert [10, 20, 30][Tensor(np.int64(2))] == 30
    for convert in (float, int):
        with pytest.raises(TypeError, match=r"one-element tensor, got shape \(2,\)"):
            convert(Tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"ambiguous: use t.any\(\) or t.all\(\)"):
        bool(Tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(Tensor(np.zeros(0)))
    assert bool((Tensor([1.0, 2.0]) > 0).all()) and not bool((Tensor([1.0, 2.0]) > 1.5).all())


# ---- iteration and in-place operators ---------------------------------------------------------

def test_iterating_a_0d_tensor_raises_like_numpy():
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        list(Tensor(5.0))  # was [] (the getitem fallback stopped at once)
    rows = list(Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True))
    assert len(rows) == 3 and rows[2].requires_grad and rows[2].data.tolist() == [4.0, 5.0]


def test_in_place_update_of_a_parameter_under_no_grad_changes_it():
    mr.manual_seed(0)
    lin = nn.Linear(2, 1)
    before = lin.weight.data.copy()
    lin(np.ones((1, 2))).sum().backward()
    with mr.no_grad():
        for p in lin.parameters():
            p -= 0.1 * p.grad  # PyTorch's hand-written SGD step: was a silent no-op (p was rebound)
    np.testing.assert_allclose(lin.weight.data, before - 0.1)
    with mr.no_grad():
        w = lin.weight
        w *= 2.0
        w += np.ones((1, 2))
        w /= 4.0
    assert w is lin.weight
    np.testing.assert_allclose(lin.weight.data, ((before - 0.1) * 2.0 + 1.0) / 4.0)


def test_in_place_update_of_a_parameter_outside_no_grad_raises_and_graph_values_accumulate():
    w = nn.Parameter(np.ones(2))
    with pytest.raises(RuntimeError, match=r"t -= x: an in-place update of a leaf that requires grad.*no_grad\(\)"):
        w -= 0.1
    np.testing.assert_array_equal(w.data, [1.0, 1.0])
    total = 0.0
    for k in range(3):
        total += (w * k).sum()  # a loss accumulated in the graph stays a new node each time
    total.backward()
    np.testing.assert_array_equal(w.grad, [3.0, 3.0])


def test_boolean_masks_combine_with_and_or_xor_not():
    x = Tensor([0.5, 2.0, -1.0], requires_grad=True)
    for out, expected in [((x > 0) & (x < 1), [True, False, False]), ((x < 0) | (x > 1), [False, True, True]),
                          ((x > 0) ^ (x > 1), [True, False, False]), (~(x > 0), [False, False, True]),
                          ((x > 0) & np.array([False, True, True]), [False, True, False]),
                          (np.logical_and(x > 0, x < 1), [True, False, False]), (np.logical_not(x > 0), [False, False, True])]:
        assert isinstance(out, Tensor) and out.dtype == bool and not out.requires_grad
        np.testing.assert_array_equal(out.data, expected)
    with pytest.raises(TypeError, match=r"&: needs boolean or integer tensors, got float64; compare first, e.g. \(x > 0\)"):
        x & (x > 0)
