"""value_and_grad, jacobian (both modes), hessian, vmap and nn.functional_call against central differences
and against grad / jvp / hvp."""
from __future__ import annotations

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.nn import functional as F

RNG = np.random.default_rng(11)
ATOL, RTOL = 1e-6, 1e-5  # central differences with eps 1e-6 in float64


def close(a, b, atol=ATOL, rtol=RTOL):
    a, b = np.asarray(getattr(a, "data", a)), np.asarray(getattr(b, "data", b))
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.all(np.abs(a - b) <= atol + rtol * np.abs(b)), np.max(np.abs(a - b))


def central_jacobian(fn, arrays, i, eps=1e-6):
    """d fn(*arrays) / d arrays[i] by central differences, shape out.shape + arrays[i].shape."""
    base = np.asarray(fn(*[mr.Tensor(a) for a in arrays]).data)
    jac = np.zeros(base.shape + arrays[i].shape)
    for e in np.ndindex(*arrays[i].shape):
        plus, minus = [a.copy() for a in arrays], [a.copy() for a in arrays]
        plus[i][e] += eps
        minus[i][e] -= eps
        f_plus = fn(*[mr.Tensor(a) for a in plus]).data
        f_minus = fn(*[mr.Tensor(a) for a in minus]).data
        jac[(Ellipsis,) + e] = (f_plus - f_minus) / (2 * eps)
    return jac


def layer(x, W):
    """A small nonlinear map (3,) x (4, 3) -> (4,)."""
    return (W @ x).tanh() * x.sum()


def loss(x, W):
    return (layer(x, W) ** 2).sum()


X, W = RNG.standard_normal(3), RNG.standard_normal((4, 3))


# ---- value_and_grad ---------------------------------------------------------------------------------

def test_value_and_grad_matches_grad_and_central_differences():
    value, (gx, gW) = mr.value_and_grad(loss, argnums=(0, 1))(X, W)
    close(value, loss(mr.Tensor(X), mr.Tensor(W)).data, atol=0, rtol=1e-14)
    x, w = mr.Tensor(X, requires_grad=True), mr.Tensor(W, requires_grad=True)
    ref = mr.grad(loss(x, w), [x, w])
    close(gx, ref[0], atol=0, rtol=1e-14)
    close(gW, ref[1], atol=0, rtol=1e-14)
    close(gx, central_jacobian(loss, [X, W], 0))
    close(gW, central_jacobian(loss, [X, W], 1))
    assert not value.requires_grad and not gx.requires_grad


def test_value_and_grad_of_a_tree_and_an_ignored_argument():
    def f(params, x):
        return (params["w"] * x).sum() + (params["b"] ** 2).sum()
    params = {"w": RNG.standard_normal(3), "b": RNG.standard_normal(2)}
    value, grads = mr.value_and_grad(f)(params, X)
    assert set(grads) == {"w", "b"}
    close(grads["w"], X, atol=0, rtol=1e-15)
    close(grads["b"], 2 * params["b"], atol=0, rtol=1e-15)
    _, g_ignored = mr.value_and_grad(lambda a, b: (b * b).sum())(X, mr.Tensor(X))
    np.testing.assert_array_equal(g_ignored.data, 0.0)


def test_value_and_grad_refusals():
    with pytest.raises(ValueError, match="one-element Tensor"):
        mr.value_and_grad(layer)(X, W)
    with pytest.raises(TypeError, match="floating-point"):
        mr.value_and_grad(lambda i: i.sum())(np.arange(3))
    with pytest.raises(ValueError, match="out of range"):
        mr.value_and_grad(loss, argnums=2)(X, W)


# ---- jacobian -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_matches_central_differences(mode):
    jx, jW = mr.jacobian(layer, [X, W], mode=mode)
    assert jx.shape == (4, 3) and jW.shape == (4, 4, 3)
    close(jx, central_jacobian(layer, [X, W], 0))
    close(jW, central_jacobian(layer, [X, W], 1))


def test_jacobian_modes_agree_with_jvp_and_grad():
    j_rev = mr.jacobian(lambda x: layer(x, mr.Tensor(W)), mr.Tensor(X))
    j_fwd = mr.jacobian(lambda x: layer(x, mr.Tensor(W)), mr.Tensor(X), mode="forward")
    close(j_rev, j_fwd.data, atol=1e-14, rtol=1e-12)
    v, u = RNG.standard_normal(3), RNG.standard_normal(4)
    _, tangent = mr.jvp(lambda x: layer(x, mr.Tensor(W)), mr.Tensor(X), v)
    close(j_rev.data @ v, tangent, atol=1e-14, rtol=1e-12)  # J v is the jvp
    x = mr.Tensor(X, requires_grad=True)
    (vjp,) = mr.grad(layer(x, mr.Tensor(W)), x, grad_outputs=[u])
    close(u @ j_rev.data, vjp, atol=1e-14, rtol=1e-12)  # u^T J is the vjp


def test_jacobian_of_several_outputs_and_a_constant_one():
    def f(x):
        return x * 2.0, mr.Tensor(np.ones(2))
    j_out, j_const = mr.jacobian(f, mr.Tensor(X))
    close(j_out, 2 * np.eye(3), atol=0, rtol=0)
    np.testing.assert_array_equal(j_const.data, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="mode"):
        mr.jacobian(f, mr.Tensor(X), mode="sideways")


# ---- hessian ------------------------------------------------------------------------------------------

def test_hessian_matches_central_differences_and_hvp():
    h = mr.hessian(lambda x: loss(x, mr.Tensor(W)), mr.Tensor(X))
    assert h.shape == (3, 3)
    close(h, h.data.T, atol=1e-12, rtol=1e-10)

    def gradient(x):  # d loss / dx, whose Jacobian is the Hessian
        x = mr.Tensor(x.data, requires_grad=True)
        return mr.grad(loss(x, mr.Tensor(W)), x)[0]
    close(h, central_jacobian(gradient, [X], 0), atol=1e-5, rtol=1e-4)
    v = RNG.standard_normal(3)
    _, hv = mr.hvp(lambda x: loss(x, mr.Tensor(W)), mr.Tensor(X), v)
    close(h.data @ v, hv, atol=1e-12, rtol=1e-10)


def test_hessian_blocks_of_two_inputs():
    (hxx, hxW), (hWx, hWW) = mr.hessian(loss, [X, W])
    assert hxx.shape == (3, 3) and hxW.shape == (3, 4, 3) and hWx.shape == (4, 3, 3) and hWW.shape == (4, 3, 4, 3)
    close(hxW.data, np.moveaxis(hWx.data, [0, 1], [1, 2]), atol=1e-12, rtol=1e-10)  # mixed partials agree

    def dloss_dW(x, w):
        w = mr.Tensor(w.data, requires_grad=True)
        return mr.grad(loss(x, w), w)[0]
    close(hWx, central_jacobian(dloss_dW, [X, W], 0), atol=1e-5, rtol=1e-4)


# ---- functional_call and per-example gradients ----------------------------------------------------

def small_model():
    return nn.SequenceModel(4, 5, 4, num_layers=1, cell="gru", rng=np.random.default_rng(0))


def test_functional_call_uses_the_given_parameters_and_restores_them():
    model, other = small_model(), nn.SequenceModel(4, 5, 4, cell="gru", rng=np.random.default_rng(1))
    x = np.array([[0, 1], [2, 3], [1, 1]])
    originals = dict(model.named_parameters())
    out, _ = nn.functional_call(model, other.state_dict(), x)
    close(out, other(x)[0].data, atol=0, rtol=1e-13)
    assert dict(model.named_parameters()) == originals  # the very same Parameter objects are back
    with pytest.raises(KeyError, match="no parameter 'head.weights'"):
        nn.functional_call(model, {"head.weights": np.zeros((4, 5))}, x)
    with pytest.raises(ValueError, match="head.bias has shape"):
        nn.functional_call(model, {"head.bias": np.zeros(3)}, x)
    with pytest.raises(ValueError):
        nn.functional_call(model, {"head.bias": np.zeros(4)}, np.zeros((2, 2, 2, 2)))  # forward fails
    assert dict(model.named_parameters()) == originals


def test_functional_call_gradients_equal_the_models():
    model = small_model()
    x, y = np.array([[0, 1], [2, 3], [1, 1]]), np.array([[1, 2], [3, 0], [0, 2]])

    def seq_loss(params):
        logits, _ = nn.functional_call(model, params, x)
        return F.cross_entropy(logits.reshape(-1, 4), y.reshape(-1), reduction="sum")
    _, grads = mr.value_and_grad(seq_loss)(model.state_dict())
    seq_loss(dict(model.named_parameters())).backward()
    for name, p in model.named_parameters():
        close(grads[name], p.grad, atol=0, rtol=1e-12)


def test_per_example_gradients_with_vmap():
    model = small_model()
    x, y = np.array([[0, 1, 2], [2, 3, 0]]), np.array([[1, 2, 3], [3, 0, 1]])  # (T=2, B=3)

    def example_loss(params, xb, yb):  # one example: (T,) ids
        logits, _ = nn.functional_call(model, params, xb.reshape(-1, 1))
        return F.cross_entropy(logits.reshape(-1, 4), yb, reduction="sum")
    params = model.state_dict()
    values, grads = mr.vmap(mr.value_and_grad(example_loss), in_axes=(None, 1, 1))(params, x, y)
    assert values.shape == (3,) and grads["rnn.cells.0.U"].shape == (3,) + params["rnn.cells.0.U"].shape
    for b in range(3):  # each row is the gradient of that example alone ...
        _, alone = mr.value_and_grad(example_loss)(params, x[:, b], y[:, b])
        for name in params:
            close(grads[name][b], alone[name], atol=0, rtol=1e-13)
    _, whole = mr.value_and_grad(lambda p: sum(example_loss(p, x[:, b], y[:, b]) for b in range(3)))(params)
    for name in params:  # ... and the rows add up to the batch gradient
        close(grads[name].sum(axis=0), whole[name], atol=1e-12, rtol=1e-10)
    bias = params["head.bias"]

    def loss_of_bias(b):
        return example_loss({**params, "head.bias": b.data}, x[:, 1], y[:, 1])
    close(grads["head.bias"][1], central_jacobian(loss_of_bias, [bias], 0))


def test_vmap_axes_and_errors():
    a, b = RNG.standard_normal((2, 5)), RNG.standard_normal(2)
    out = mr.vmap(lambda col, v: col * v, in_axes=(1, None), out_axes=1)(mr.Tensor(a), mr.Tensor(b))
    close(out, a * b[:, None], atol=0, rtol=0)
    with pytest.raises(ValueError, match="one batch size"):
        mr.vmap(lambda p, q: p + q)(np.zeros(3), np.zeros(4))
    x = mr.Tensor(a, requires_grad=True)  # a vmapped function is differentiable
    mr.vmap(lambda row: (row ** 2).sum())(x).sum().backward()
    close(x.grad, 2 * a, atol=0, rtol=1e-15)
