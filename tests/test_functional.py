"""micrornn.nn.functional against NumPy references, gradchecks, and its error messages."""
from __future__ import annotations

import numpy as np
import pytest

import micrornn.nn.functional as F
from micrornn import Tensor
from micrornn.check.finite_differences import gradcheck

RNG = np.random.default_rng(7)


def leaf(*shape, scale=1.0):
    return Tensor(RNG.standard_normal(shape) * scale, requires_grad=True)


def np_log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def np_cross_entropy(logits, targets, reduction):
    logp = np_log_softmax(logits)
    losses = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]


def close(actual, expected, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# ---- softmax and log_softmax -----------------------------------------------------------------

@pytest.mark.parametrize("shape, axis", [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1), ((6,), 0)])
def test_softmax_and_log_softmax_values(shape, axis):
    x = RNG.standard_normal(shape) * 3
    p = F.softmax(Tensor(x), axis=axis).data
    close(p, np.exp(np_log_softmax(x, axis)))
    close(p.sum(axis=axis), np.ones(np.delete(shape, axis)))
    close(F.log_softmax(Tensor(x), axis=axis).data, np_log_softmax(x, axis))


def test_softmax_accepts_arrays():
    close(F.softmax(np.array([0.0, np.log(3.0)])).data, [0.25, 0.75])


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_log_softmax_stable_at_large_logits(scale):
    x = np.array([[1.0, -1.0, 0.5], [-1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]) * scale
    t = Tensor(x, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        logp = F.log_softmax(t)
        p = F.softmax(t)
        (logp * np.arange(9.0).reshape(3, 3)).sum().backward()
    assert np.all(np.isfinite(logp.data)) and np.all(np.isfinite(t.grad))
    close(logp.data, np_log_softmax(x))
    close(p.data, np.exp(np_log_softmax(x)))
    if scale == 1000.0:  # the winner has log-probability 0, a loser trailing by 2000 has -2000
        close(logp.data[0], [0.0, -2000.0, -500.0])
        close(logp.data[2], [-np.log(3.0)] * 3)
    # d/dx sum_ij w_ij logp_ij = w - softmax * sum_j w_j
    w = np.arange(9.0).reshape(3, 3)
    close(t.grad, w - np.exp(np_log_softmax(x)) * w.sum(axis=1, keepdims=True))


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_gradcheck(fn, axis):
    assert gradcheck(lambda x: fn(x, axis=axis), [leaf(3, 4)])


# ---- cross_entropy ---------------------------------------------------------------------------

CE_SHAPES = {"(N,C)": ((5, 4), (5,)), "(T,B,C)": ((3, 2, 4), (3, 2)), "(C,)": ((4,), ())}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape_id", sorted(CE_SHAPES))
def test_cross_entropy_matches_numpy(shape_id, reduction):
    logits_shape, target_shape = CE_SHAPES[shape_id]
    x = RNG.standard_normal(logits_shape) * 2
    targets = RNG.integers(0, logits_shape[-1], target_shape)
    out = F.cross_entropy(Tensor(x), targets, reduction=reduction)
    expected = np_cross_entropy(x, targets, reduction)
    assert out.shape == np.shape(expected)
    close(out.data, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape_id", sorted(CE_SHAPES))
def test_cross_entropy_gradcheck(shape_id, reduction):
    logits_shape, target_shape = CE_SHAPES[shape_id]
    targets = RNG.integers(0, logits_shape[-1], target_shape)
    assert gradcheck(lambda x: F.cross_entropy(x, targets, reduction=reduction), [leaf(*logits_shape)])


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    x = leaf(4, 3)
    targets = np.array([0, 2, 2, 1])
    F.cross_entropy(x, targets, reduction="sum").backward()
    close(x.grad, np.exp(np_log_softmax(x.data)) - np.eye(3)[targets])


def test_cross_entropy_stable_at_large_logits():
    x = Tensor(np.array([[1000.0, -1000.0], [-1000.0, 1000.0]]), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = F.cross_entropy(x, np.array([0, 0]), reduction="none")
        loss.sum().backward()
    close(loss.data, [0.0, 2000.0])
    close(x.grad, [[0.0, 0.0], [-1.0, 1.0]])


def test_cross_entropy_accepts_tensor_targets():
    x = RNG.standard_normal((3, 4))
    targets = np.array([1, 0, 3])
    close(F.cross_entropy(Tensor(x), Tensor(targets)).data, np_cross_entropy(x, targets, "mean"))


# ---- mse_loss ------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_values_and_gradcheck(reduction):
    target = RNG.standard_normal((3, 4))
    pred = leaf(3, 4)
    out = F.mse_loss(pred, target, reduction=reduction)
    sq = (pred.data - target) ** 2
    close(out.data, {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction])
    assert gradcheck(lambda p: F.mse_loss(p, target, reduction=reduction), [pred])


def test_mse_loss_gradient_for_both_tensors():
    pred, target = leaf(5), leaf(5)
    assert gradcheck(lambda p, t: F.mse_loss(p, t), [pred, target])
    F.mse_loss(pred, target).backward()
    close(pred.grad, 2 * (pred.data - target.data) / 5)
    close(target.grad, -pred.grad)


# ---- one_hot -------------------------------------------------------------------------------

def test_one_hot_values():
    out = F.one_hot(np.array([[2, 0], [1, 1]]), 3)
    assert out.shape == (2, 2, 3) and out.dtype == np.float64 and not out.requires_grad
    expected = np.array([[[0, 0, 1], [1, 0, 0]], [[0, 1, 0], [0, 1, 0]]], dtype=float)
    close(out.data, expected, rtol=0, atol=0)
    close(F.one_hot([0, 3], 4, dtype=np.float32).data, np.eye(4)[[0, 3]], rtol=0, atol=0)
    assert F.one_hot([0, 3], 4, dtype=np.float32).dtype == np.float32


# ---- errors --------------------------------------------------------------------------------

def test_cross_entropy_rejects_non_integer_targets():
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0.0, 1.0]))


@pytest.mark.parametrize("bad", [3, -1])
def test_cross_entropy_rejects_out_of_range_targets(bad):
    with pytest.raises(ValueError, match=rf"target {bad} is out of range for 3 classes"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, bad]))


def test_cross_entropy_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 1, 2]))


@pytest.mark.parametrize("fn", [lambda r: F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 1]), reduction=r),
                                lambda r: F.mse_loss(Tensor(np.zeros(2)), np.zeros(2), reduction=r)],
                         ids=["cross_entropy", "mse_loss"])
def test_bad_reduction(fn):
    with pytest.raises(ValueError, match="reduction.*'average'"):
        fn("average")


def test_mse_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        F.mse_loss(Tensor(np.zeros((2, 3))), np.zeros((3, 2)))


def test_one_hot_errors():
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(np.array([0.5]), 3)
    with pytest.raises(ValueError, match="0..2"):
        F.one_hot(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        F.one_hot(np.array([0]), 0)
