"""Engine items of issue 24: gradcheck never certifies NaN (5), concurrent backward loses nothing (6),
hvp of integer inputs is computed in floats (8), and bad operands get one clear error (14)."""
import threading
import warnings

import numpy as np
import pytest

import micrornn as mr
from micrornn.check.finite_differences import GradcheckError, gradcheck, gradgradcheck, numerical_grad
from micrornn.engine.ops import Primitive


def _leaf(values):
    return mr.Tensor(np.array(values, dtype=np.float64), requires_grad=True)


# ---- item 5: gradcheck and gradgradcheck -------------------------------------------------------

# made with Primitive, not defprimitive: broken on purpose, they stay out of the primitive table
NAN_VJP = Primitive("test_double_nan_vjp", lambda a: (2 * a, None), lambda g, saved, needs: (g * np.nan,))


def _square_with_nan_second_order():
    """x^2 with a correct first-order VJP and a second-order rule (dvjp) that makes NaN."""
    def dvjp(g, out, xs, saved, needs):
        return (g * xs[0] * 2.0 * np.nan,)
    return Primitive("test_square_nan_dvjp", lambda a: (a * a, a), lambda g, a, needs: (2 * a * g,),
                        dvjp=dvjp)


SQUARE_NAN_DVJP = _square_with_nan_second_order()


def test_gradcheck_does_not_certify_a_nan_gradient():
    x = _leaf([1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert gradcheck(lambda t: mr.apply(NAN_VJP, t), [x], raise_exception=False) is False
        with pytest.raises(GradcheckError, match="nan"):
            gradcheck(lambda t: mr.apply(NAN_VJP, t), [x])


def test_gradgradcheck_does_not_certify_a_nan_second_derivative():
    x = _leaf([1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert gradgradcheck(lambda t: mr.apply(SQUARE_NAN_DVJP, t), [x], raise_exception=False) is False


@pytest.mark.parametrize("check", [gradcheck, gradgradcheck])
@pytest.mark.parametrize("eps", [float("nan"), 0.0, -1e-6, float("inf")])
def test_a_step_that_is_not_a_finite_positive_number_is_refused(check, eps):
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        check(lambda t: (t * t).sum(), [_leaf([1.0, 2.0])], eps=eps)


@pytest.mark.parametrize("name", ["atol", "rtol"])
def test_a_nan_or_negative_tolerance_is_refused(name):
    for bad in (float("nan"), -1.0):
        with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
            gradcheck(lambda t: (t * t).sum(), [_leaf([1.0])], **{name: bad})


def test_numerical_grad_refuses_a_zero_step():
    with pytest.raises(ValueError, match="eps"):
        numerical_grad(lambda t: (t * t).sum(), [_leaf([1.0])], eps=0)


def test_an_empty_input_is_checked_not_called_non_contiguous():
    empty, x = mr.Tensor(np.zeros((0, 3)), requires_grad=True), _leaf([1.0, 2.0, 3.0])
    assert gradcheck(lambda e, t: (e.sum(axis=0) + t * t).sum(), [empty, x])
    assert gradgradcheck(lambda e, t: (e.sum(axis=0) * t + t * t * t).sum(), [empty, x])
    assert numerical_grad(lambda e: e.sum(), [empty])[0].shape == (0, 3)


def test_a_non_contiguous_input_is_still_refused_by_name():
    x = mr.Tensor(np.ones((3, 2)), requires_grad=True)
    x.data = x.data.T  # a strided view
    with pytest.raises(ValueError, match="contiguous"):
        gradcheck(lambda t: (t * t).sum(), [x])


# ---- item 6: concurrent backward into shared parameters -----------------------------------------

def test_four_threads_back_propagating_into_shared_parameters_lose_nothing():
    rng = np.random.default_rng(0)
    W = mr.Tensor(rng.standard_normal((400, 400)), requires_grad=True)  # large: NumPy's add drops the GIL
    xs = [rng.standard_normal((2, 400)) for _ in range(4)]
    rounds = 25

    def loss(x):
        return (mr.Tensor(x) @ W).tanh().sum()

    expected = np.zeros_like(W.data)
    for x in xs:
        W.grad = None
        loss(x).backward()
        expected += rounds * W.grad
    W.grad = None
    start, errors = threading.Barrier(4), []

    def worker(x):
        try:
            start.wait(10)
            for _ in range(rounds):
                loss(x).backward()
        except BaseException as err:  # reported below
            errors.append(err)
    threads = [threading.Thread(target=worker, args=(x,)) for x in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    np.testing.assert_allclose(W.grad, expected, rtol=1e-9, atol=1e-9)
    assert W.data.flags.writeable  # every graph released: the guard's counts survived the threads


# ---- item 8: hvp of integer inputs ---------------------------------------------------------------

def test_hvp_of_an_integer_input_is_computed_in_floats():
    value, hv = mr.hvp(lambda x: (x ** 3).sum(), mr.Tensor([1, 2]), np.array([1.0, 1.0]))
    assert hv.dtype == np.float64 and value.dtype == np.float64
    np.testing.assert_allclose(hv.data, [6.0, 12.0])  # H = diag(6 x)
    value, hv = mr.hvp(lambda x: (x * x * x).sum(), mr.Tensor([1, 2]), np.array([1, 0]))
    np.testing.assert_allclose(hv.data, [6.0, 0.0])


def test_hvp_refuses_a_boolean_input_and_a_complex_direction():
    with pytest.raises(TypeError, match="hvp: input 0 has dtype bool"):
        mr.hvp(lambda x: x.sum(), mr.Tensor([True, False]), np.array([1.0, 1.0]))
    with pytest.raises(TypeError, match="complex128"):
        mr.hvp(lambda x: (x * x).sum(), _leaf([1.0, 2.0]), np.array([1.0, 1j]))


# ---- item 14: one clear error for operands that are not numbers ----------------------------------

@pytest.mark.parametrize("other", ["abc", None, 1j, np.array(["a", "b"]), object()])
def test_a_tensor_and_a_non_number_give_one_clear_type_error(other):
    x = _leaf([1.0, 2.0])
    with pytest.raises(TypeError, match=f"cannot be combined with {type(other).__name__}"):
        x + other
    with pytest.raises(TypeError, match="cannot be combined"):
        other * x


def test_where_refuses_a_string_branch_instead_of_making_a_string_tensor():
    x = _leaf([1.0, 2.0])
    with pytest.raises(TypeError, match="cannot be combined with str 'a'"):
        mr.where(x > 1, x, "a")
    np.testing.assert_array_equal(mr.where(x > 1, x, 0.5).data, [0.5, 2.0])  # numbers still work


def test_lists_and_numbers_still_take_the_tensor_dtype():
    x = mr.Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    assert (x + [1, 2]).dtype == np.float32 and (x * 0.1).dtype == np.float32
    assert (x + [0.1, 0.2]).dtype == np.float32 and (x + np.float64(0.5)).dtype == np.float32


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_seed_of_another_dtype_is_cast_to_the_output_dtype(create_graph):
    x = mr.Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    seed = mr.Tensor(np.array([1.0, 3.0]), requires_grad=create_graph)  # float64 for a float32 output
    g, = mr.grad(x * x, x, grad_outputs=[seed], create_graph=create_graph)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g.data, [2.0, 12.0])


def test_a_complex_or_string_seed_is_refused_in_one_line():
    x = _leaf([1.0, 2.0])
    with pytest.raises(TypeError, match=r"grad_outputs\[0\] has dtype complex128"):
        mr.grad(x * x, x, grad_outputs=[np.array([1.0, 1j])])
    with pytest.raises(TypeError, match=r"grad_outputs\[0\] has dtype <U1"):
        mr.grad(x * x, x, grad_outputs=[np.array(["a", "b"])])


def test_jvp_refuses_a_complex_tangent_instead_of_dropping_its_imaginary_part():
    with pytest.raises(TypeError, match="jvp: tangent 0 has dtype complex128"):
        mr.jvp(lambda t: t * 2, mr.Tensor([1.0, 2.0]), np.array([1 + 1j, 2.0]))
    _, tangent = mr.jvp(lambda t: t * 2, mr.Tensor([1.0, 2.0]), np.array([1, 2]))  # integers are fine
    np.testing.assert_array_equal(tangent.data, [2.0, 4.0])
