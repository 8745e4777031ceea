"""The ops added for people who write cells: each primitive and composite against central differences.

# gradient-tested: abs, maximum, minimum, where, clip, astype
"""
from __future__ import annotations

import numpy as np
import pytest

import micrornn as mr
from micrornn import Tensor
from micrornn.check.finite_differences import gradcheck

from grad_helpers import assert_recorded_gradient_is_first_order, make_inputs

RNG = np.random.default_rng(2026)


def away_from_zero(*shape):
    """|x| in [0.3, 2): away from the kinks of abs and clip."""
    return RNG.uniform(0.3, 2.0, shape) * RNG.choice([-1.0, 1.0], shape)


def leaves(*arrays):
    """Fresh float64 tensors that require grad (gradcheck perturbs them in place)."""
    return make_inputs(arrays)


COND = RNG.random((3, 4)) > 0.5
SEPARATE_A, SEPARATE_B = away_from_zero(3, 4), away_from_zero(3, 4)
SEPARATE_B[np.abs(SEPARATE_A - SEPARATE_B) < 0.2] += 0.5  # no near-ties: max/min are smooth there

CASES = {
    "abs": (lambda a: a.abs(), [away_from_zero(3, 4)]),
    "abs builtin": (lambda a: abs(a) * 2.0, [away_from_zero(5)]),
    "maximum": (lambda a, b: a.maximum(b), [SEPARATE_A, SEPARATE_B]),
    "maximum broadcast": (lambda a, b: mr.maximum(a, b), [SEPARATE_A, SEPARATE_B[0]]),
    "minimum": (lambda a, b: a.minimum(b), [SEPARATE_A, SEPARATE_B]),
    "minimum broadcast": (lambda a, b: mr.minimum(a, b), [SEPARATE_A[:, :1], SEPARATE_B]),
    "where": (lambda a, b: mr.where(COND, a, b), [away_from_zero(3, 4), away_from_zero(3, 4)]),
    "where broadcast": (lambda a, b: mr.where(COND, a, b), [away_from_zero(4), away_from_zero(3, 1)]),
    "where number": (lambda a: mr.where(COND, a * a, 0.0), [away_from_zero(3, 4)]),
    "clip": (lambda a: a.clip(-1.0, 1.0), [away_from_zero(4, 5) * 1.05]),
    "clip lower only": (lambda a: a.clip(lo=0.0), [away_from_zero(6)]),
    "astype": (lambda a: (a * a).astype("float64") * a, [away_from_zero(4)]),
    "clone": (lambda a: a.clone() * a, [away_from_zero(4)]),
    "sqrt": (lambda a: a.sqrt(), [np.abs(away_from_zero(3, 2)) + 0.2]),
    "square": (lambda a: a.square(), [away_from_zero(3, 2)]),
    "min all": (lambda a: a.min(), [np.arange(12.0).reshape(3, 4) * 0.7 - 3]),
    "min axis": (lambda a: a.min(axis=1, keepdims=True), [RNG.permutation(12).reshape(3, 4) * 0.5]),
    "var": (lambda a: a.var(axis=0), [away_from_zero(5, 3)]),
    "var ddof": (lambda a: a.var(ddof=1), [away_from_zero(5, 3)]),
    "std": (lambda a: a.std(axis=-1, keepdims=True), [away_from_zero(2, 6)]),
    "split": (lambda a: a.split([1, 3, 2], axis=1)[1] * a.split([1, 3, 2], axis=1)[2].sum(), [away_from_zero(2, 6)]),
    "chunk": (lambda a: (lambda i, f, g, o: i.sigmoid() * g.tanh() + f * o)(*a.chunk(4, axis=-1)),
              [away_from_zero(3, 8)]),
    "squeeze": (lambda a: a.squeeze() * 2.0, [away_from_zero(1, 3, 1)]),
    "squeeze axis": (lambda a: a.squeeze(0), [away_from_zero(1, 3, 1)]),
    "unsqueeze": (lambda a, b: a.unsqueeze(1) * b, [away_from_zero(3), away_from_zero(3, 2)]),
    "swapaxes": (lambda a: a.swapaxes(0, 2), [away_from_zero(2, 3, 4)]),
    "permute": (lambda a: a.permute(2, 0, 1), [away_from_zero(2, 3, 4)]),
    "softmax method": (lambda a: a.softmax(axis=0), [away_from_zero(3, 4)]),
    "log_softmax method": (lambda a: a.log_softmax(), [away_from_zero(3, 4)]),
}


@pytest.mark.parametrize("label", sorted(CASES))
def test_gradient_matches_central_differences(label):
    fn, arrays = CASES[label]
    assert gradcheck(fn, leaves(*arrays))


@pytest.mark.parametrize("label", sorted(CASES))
def test_recorded_gradient_equals_the_first_order_gradient(label):
    # grad(create_graph=True) runs each op's dvjp, not its vjp; second-order checks cannot see a wrong
    # dvjp of a piecewise-linear op (abs, maximum, clip, ...: its second derivative is 0 either way)
    fn, arrays = CASES[label]
    assert_recorded_gradient_is_first_order(fn, leaves(*arrays))


def test_tie_gradients_split_evenly():
    a, b = leaves([1.0, 2.0, 3.0], [1.0, 5.0, 0.0])
    mr.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(b.grad, [0.5, 1.0, 0.0])
    a.grad = b.grad = None
    mr.minimum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(b.grad, [0.5, 0.0, 1.0])


def test_abs_and_clip_at_their_kinks():
    x, = leaves([-2.0, 0.0, 3.0])
    x.abs().sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, 0.0, 1.0])
    x.grad = None
    x.clip(-1.0, 3.0).sum().backward()  # a value on a bound passes its gradient (as PyTorch's clamp)
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 1.0])
    x.grad = None
    x.clip(0.0, 1.0).sum().backward()  # on the lower bound too
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0])


def test_where_values_and_gradient_routing():
    a, b = leaves([1.0, 2.0, 3.0], [10.0, 20.0, 30.0])
    out = mr.where(a > 1.5, a, b)
    np.testing.assert_array_equal(out.data, [10.0, 2.0, 3.0])
    out.backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(a.grad, [0.0, 2.0, 3.0])
    np.testing.assert_array_equal(b.grad, [1.0, 0.0, 0.0])


def test_where_needs_a_boolean_condition():
    with pytest.raises(TypeError, match="condition must be boolean"):
        mr.where(np.array([1.0, 0.0]), Tensor([1.0, 2.0]), 0.0)


def test_split_and_chunk_give_the_gate_blocks():
    gates = Tensor(np.arange(8.0).reshape(1, 8))
    i, f, g, o = gates.chunk(4, axis=1)
    np.testing.assert_array_equal(g.data, [[4.0, 5.0]])
    first, rest = gates.split([3, 5], axis=-1)
    assert first.shape == (1, 3) and rest.shape == (1, 5)


@pytest.mark.parametrize("bad, message", [
    (lambda t: t.split(2), "give the piece sizes as a list"),
    (lambda t: t.split([2, 5]), r"summing to the length 8"),
    (lambda t: t.chunk(3), "does not split into 3 equal pieces"),
    (lambda t: t.chunk(0), "positive integer"),
])
def test_split_refuses_ambiguous_or_wrong_sizes(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        bad(Tensor(np.zeros(8)))


def test_var_and_std_follow_numpy():
    data = RNG.standard_normal((4, 5))
    t = Tensor(data)
    np.testing.assert_allclose(t.var(axis=0).data, data.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(t.std(ddof=1).data, data.std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(t.min(axis=1).data, data.min(axis=1))


def test_squeeze_refuses_an_axis_that_is_not_one():
    with pytest.raises(ValueError, match="axis 1 has length 3"):
        Tensor(np.zeros((1, 3))).squeeze(1)


def test_unsqueeze_and_expand_dims_agree():
    t = Tensor(np.zeros((2, 3)))
    assert t.unsqueeze(0).shape == (1, 2, 3) and t.expand_dims(-1).shape == (2, 3, 1)
    assert t.unsqueeze(2).shape == (2, 3, 1)


def test_clone_copies_the_data():
    t = Tensor([1.0, 2.0], requires_grad=True)
    c = t.clone()
    c.data[0] = 5.0
    assert t.data[0] == 1.0 and c.requires_grad
    assert Tensor([1.0]).clone().data is not None


def test_astype_casts_and_keeps_the_gradient_dtype():
    t = Tensor([1.5, -2.0], requires_grad=True)
    half = t.astype(np.float32)
    assert half.dtype == np.float32 and half.requires_grad
    (half * 3.0).sum().backward()
    assert t.grad.dtype == np.float64
    np.testing.assert_array_equal(t.grad, [3.0, 3.0])
    assert not t.astype(np.int64).requires_grad


@pytest.mark.parametrize("cut", [lambda z: z.chunk(1), lambda z: z.split([1]), lambda z: z.squeeze(0),
                                 lambda z: z.swapaxes(0, 0), lambda z: z.mean(0), lambda z: z.var(-1),
                                 lambda z: z.sum(0), lambda z: z.max(-1), lambda z: z.min(0),
                                 lambda z: mr.concatenate([z, z])])
def test_axis_ops_on_a_0d_tensor_say_it_has_no_axes(cut):
    with pytest.raises(ValueError, match="a 0-d tensor has no axis"):
        cut(Tensor(5.0, requires_grad=True))  # was IndexError, or for sum/max a ZeroDivisionError in backward


def test_0d_tensors_still_reduce_without_an_axis():
    z = Tensor(5.0, requires_grad=True)
    (z.mean() + z.var() + z.sum() + z.max() + z.squeeze() + z.logsumexp()).backward()
    assert z.grad == 5.0


def test_unsqueeze_takes_several_axes_as_numpy_expand_dims_does():
    t = Tensor(np.ones((2, 3)))
    assert t.unsqueeze((0, -1)).shape == np.expand_dims(np.ones((2, 3)), (0, -1)).shape == (1, 2, 3, 1)
    assert np.expand_dims(t, (1, 2)).shape == (2, 1, 1, 3)
    with pytest.raises(ValueError, match="repeated axis"):
        t.unsqueeze((0, -4))
