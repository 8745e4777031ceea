"""The fused primitives of the vanilla RNN: the head-and-loss node and the layer with index inputs.

Each is checked against central differences (float64) and against the composed ops it replaces.
"""
# gradient-tested: linear_cross_entropy
import numpy as np
import pytest

import micrornn.nn.functional as F
from micrornn import Tensor, bptt
from micrornn.bptt import fused as fused_ops
from micrornn.bptt import vanilla
from micrornn.check.finite_differences import autograd_grads, gradcheck
from micrornn.nn import SequenceModel
from micrornn.engine.tensor import apply

RNG = np.random.default_rng(7)


def tensors(*arrays):
    return [Tensor(a, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_cross_entropy_against_central_differences(reduction, bias):
    h, V, c = RNG.standard_normal((3, 2, 4)), RNG.standard_normal((5, 4)), RNG.standard_normal(5)
    targets = RNG.integers(0, 5, size=(3, 2))
    inputs = tensors(h, V, c) if bias else tensors(h, V)

    def fn(h, V, c=None):
        return F.linear_cross_entropy(h, V, c, targets, reduction) * 3.0  # an output gradient that is not 1
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_linear_cross_entropy_equals_the_composed_ops(reduction):
    h, V, c = RNG.standard_normal((4, 3, 6)), RNG.standard_normal((7, 6)) * 5, RNG.standard_normal(7)
    targets = RNG.integers(0, 7, size=(4, 3))
    fused = lambda h, V, c: F.linear_cross_entropy(h, V, c, targets, reduction)  # noqa: E731
    composed = lambda h, V, c: F.cross_entropy(h @ V.T + c, targets, reduction)  # noqa: E731
    a, b = tensors(h, V, c), tensors(h, V, c)
    assert abs(fused(*a).item() - composed(*b).item()) <= 1e-12 * abs(composed(*b).item())
    _, got = autograd_grads(fused, a)
    _, want = autograd_grads(composed, b)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-13)


def test_linear_cross_entropy_is_stable_for_huge_logits():
    h, V = np.array([[1.0, 0.0]]), np.array([[1000.0, 0.0], [0.0, 0.0]])
    loss = F.linear_cross_entropy(Tensor(h), Tensor(V), None, np.array([1]), "sum")
    assert loss.item() == pytest.approx(1000.0)


@pytest.mark.parametrize("args, error, message", [
    (dict(reduction="none"), ValueError, "'mean' or 'sum'"),
    (dict(V=np.zeros((5, 3))), ValueError, "does not fit weight"),
    (dict(c=np.zeros(4)), ValueError, "bias of shape"),
    (dict(targets=np.array([[0, 5]])), ValueError, "out of range"),
    (dict(targets=np.array([0, 1])), ValueError, "do not match"),
    (dict(targets=np.array([[0.0, 1.0]])), TypeError, "integer class indices"),
])
def test_linear_cross_entropy_refuses_bad_input(args, error, message):
    given = dict(h=np.zeros((1, 2, 4)), V=np.zeros((5, 4)), c=np.zeros(5), targets=np.array([[0, 1]]),
                 reduction="sum") | args
    with pytest.raises(error, match=message):
        F.linear_cross_entropy(given["h"], given["V"], given["c"], given["targets"], given["reduction"])


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_layer_with_index_inputs_against_central_differences(nonlinearity):
    T, B, I, H = 5, 3, 6, 4
    x = Tensor(RNG.integers(0, I, size=(T, B)))
    U, W, b, h0 = RNG.standard_normal((H, I)), RNG.standard_normal((H, H)) * 0.5, RNG.standard_normal(H), \
        RNG.standard_normal((B, H))

    def fn(U, W, b, h0):
        return apply(fused_ops.RNN_LAYER, x, U, W, b, h0, nonlinearity=nonlinearity)
    assert gradcheck(fn, tensors(U, W, b, h0))


def test_rnn_layer_index_inputs_equal_one_hot_rows():
    T, B, I, H = 6, 2, 5, 3
    idx = RNG.integers(0, I, size=(T, B))
    params = [RNG.standard_normal(s) for s in ((H, I), (H, H), (H,), (B, H))]
    by_index = apply(fused_ops.RNN_LAYER, Tensor(idx), *tensors(*params))
    dense = apply(fused_ops.RNN_LAYER, Tensor(np.eye(I)[idx]), *tensors(*params))
    np.testing.assert_allclose(by_index.data, dense.data, rtol=1e-14, atol=1e-15)
    probe = RNG.standard_normal((T, B, H))
    by_index.backward(probe)
    dense.backward(probe)
    for a, b in zip(by_index.parents[1:], dense.parents[1:]):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, atol=1e-14)


def test_layer_backward_skips_only_what_is_not_needed():
    T, B, I, H = 4, 2, 3, 5
    x, hs = RNG.standard_normal((T, B, I)), np.tanh(RNG.standard_normal((T, B, H)))
    U, W, h0, g = RNG.standard_normal((H, I)), RNG.standard_normal((H, H)), RNG.standard_normal((B, H)), \
        RNG.standard_normal((T, B, H))
    full = vanilla.layer_backward(g, x, hs, h0, U, W, "tanh")
    lean = vanilla.layer_backward(g, x, hs, h0, U, W, "tanh", need_dx=False, need_dh0=False)
    assert lean[0] is None and lean[4] is None and full[0] is not None and full[4] is not None
    for a, b in zip(full[1:4], lean[1:4]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_analytic_bptt_takes_index_inputs(dtype):
    model = SequenceModel(6, 4, 5, num_layers=2, dtype=np.dtype(dtype), rng=2)
    idx, targets = RNG.integers(0, 6, size=(7, 3)), RNG.integers(0, 5, size=(7, 3))
    loss, grads = bptt.loss_and_grads(model, idx, targets)
    ref_loss, ref = bptt.loss_and_grads(model, np.eye(6, dtype=dtype)[idx], targets)
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert abs(loss - ref_loss) <= tol * abs(ref_loss)
    for name in ref:
        assert grads[name].dtype == ref[name].dtype
        np.testing.assert_allclose(grads[name], ref[name], rtol=tol, atol=tol)
    with pytest.raises(ValueError, match=r"index inputs must lie in \[0, 6\)"):
        bptt.loss_and_grads(model, idx + 6, targets)


def test_fused_model_loss_is_one_head_node_and_matches_the_unrolled_model():
    unrolled = SequenceModel(6, 5, 4, num_layers=2, rng=0)
    fused = SequenceModel(6, 5, 4, num_layers=2, fused=True, rng=0)
    fused.load_state_dict(unrolled.state_dict())
    idx, targets = RNG.integers(0, 6, size=(8, 2)), RNG.integers(0, 4, size=(8, 2))
    for reduction in ("sum", "mean"):
        a, _ = unrolled.loss(idx, targets, reduction=reduction)
        b, _ = fused.loss(idx, targets, reduction=reduction)
        assert b.op_name == "linear_cross_entropy"
        assert abs(a.item() - b.item()) <= 1e-13 * abs(a.item())
        unrolled.zero_grad(), fused.zero_grad()
        a.backward(), b.backward()
        for (name, p), q in zip(unrolled.named_parameters(), fused.parameters()):
            np.testing.assert_allclose(q.grad, p.grad, rtol=1e-10, atol=1e-13, err_msg=name)
    per_item, _ = fused.loss(idx, targets, reduction="none")
    assert per_item.shape == (8, 2)


# ---- higher order and forward mode (the rules test_higher_ops asks every primitive for) ----------
# higher-order-tested: linear_cross_entropy

@pytest.mark.parametrize("bias", [True, False])
def test_linear_cross_entropy_second_order_and_jvp(bias):
    from test_higher_ops import dot_product_gap  # the dot-product test <u, J v> = <J^T u, v>
    from micrornn.check.finite_differences import gradgradcheck
    arrays = [RNG.standard_normal((3, 2, 4)), RNG.standard_normal((5, 4))] + ([RNG.standard_normal(5)] if bias else [])
    targets = RNG.integers(0, 5, size=(3, 2))

    def fn(*xs):
        return F.linear_cross_entropy(xs[0], xs[1], xs[2] if bias else None, targets, "mean") * 2.0
    assert gradgradcheck(fn, tensors(*arrays), atol=1e-7, rtol=1e-5)
    assert dot_product_gap(fn, arrays) < 1e-13


def test_rnn_layer_with_index_inputs_second_order_and_jvp():
    from test_higher_ops import dot_product_gap
    from micrornn.check.finite_differences import gradgradcheck
    T, B, I, H = 4, 2, 5, 3
    x = Tensor(RNG.integers(0, I, size=(T, B)))
    arrays = [RNG.standard_normal((H, I)), RNG.standard_normal((H, H)) * 0.5, RNG.standard_normal(H),
              RNG.standard_normal((B, H))]

    def fn(U, W, b, h0):
        return apply(fused_ops.RNN_LAYER, x, U, W, b, h0)
    assert gradgradcheck(fn, tensors(*arrays), atol=1e-7, rtol=1e-5)
    assert dot_product_gap(fn, arrays) < 1e-13
