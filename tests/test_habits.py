"""PyTorch habits: one test per row of the table in docs/ecosystem.md (the row's spelling is the test id)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn

RNG = np.random.default_rng(3)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "ecosystem.md"


def leaf(*shape):
    return mr.Tensor(RNG.standard_normal(shape), requires_grad=True)


def grads_of(fn, x):
    """d sum(fn(x) * w) / dx for a fixed random w (so every output element counts)."""
    out = fn(x)
    w = RNG.standard_normal(out.shape)
    (out * w).sum().backward()
    g, x.grad = x.grad, None
    return g, w


def check_same(fn, ref, x):
    """fn(x) equals ref(x) in value and in gradient."""
    a, w = grads_of(fn, x)
    b = mr.grad((ref(x) * w).sum(), x)[0].data
    np.testing.assert_allclose(fn(x).data, ref(x).data, rtol=1e-12, atol=0)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


# ---- spellings that work (same meaning in PyTorch and here) -------------------------------------

def works_cat():
    a, b = leaf(2, 3), leaf(2, 4)
    out = mr.cat([a, b], 1)
    np.testing.assert_array_equal(out.data, np.concatenate([a.data, b.data], 1))
    out.sum().backward()
    assert a.grad.shape == (2, 3) and np.all(a.grad == 1)


def works_t():
    check_same(lambda x: x.t(), lambda x: x.transpose(), leaf(2, 3))
    v = leaf(3)
    assert v.t() is v
    with pytest.raises(ValueError, match="at most 2 axes.*swapaxes"):
        leaf(2, 3, 4).t()


def works_view():
    check_same(lambda x: x.view(3, 2), lambda x: x.reshape(3, 2), leaf(2, 3))
    check_same(lambda x: x.view(-1), lambda x: x.reshape(6), leaf(2, 3))


def works_flatten():
    check_same(lambda x: x.flatten(), lambda x: x.reshape(-1), leaf(2, 3, 2))


def works_clamp():
    x = mr.Tensor(np.array([-2.0, -0.5, 0.3, 1.7]), requires_grad=True)
    check_same(lambda t: t.clamp(min=-1.0, max=1.0), lambda t: t.clip(-1.0, 1.0), x)
    np.testing.assert_array_equal(x.clamp(max=0.0).data, [-2.0, -0.5, 0.0, 0.0])


def works_pow():
    check_same(lambda x: x.pow(3), lambda x: x ** 3, leaf(4))


def works_norm():
    x = leaf(3, 4)
    np.testing.assert_allclose(x.norm().item(), np.linalg.norm(x.data), rtol=1e-13)
    np.testing.assert_allclose(x.norm(axis=1).data, np.linalg.norm(x.data, axis=1), rtol=1e-13)
    np.testing.assert_allclose(x.norm(1).item(), np.abs(x.data).sum(), rtol=1e-13)
    np.testing.assert_allclose(x.norm(math.inf).item(), np.abs(x.data).max(), rtol=1e-13)
    assert mr.gradcheck(lambda t: t.norm(axis=0), [x])
    with pytest.raises(ValueError, match="p must be"):
        x.norm(3)


def works_float_double():
    x = leaf(3)
    y = x.float()
    assert y.dtype == np.float32 and y.double().dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float64 and np.all(x.grad == 1)


def works_to_dtype():
    x = leaf(2)
    assert x.to(np.float32).dtype == np.float32 and x.to("float32").dtype == np.float32
    with pytest.raises(TypeError, match="no devices"):
        x.to("cuda")


def works_requires_grad_():
    x = mr.Tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])
    with pytest.raises(ValueError, match="only a leaf"):
        (x * 2).requires_grad_(False)
    with pytest.raises(TypeError, match="floating-point"):
        mr.Tensor([1, 2]).requires_grad_()


def works_numel_dim():
    x = leaf(2, 3)
    assert x.numel() == 6 and x.dim() == 2


def works_argmax():
    x = leaf(3, 4)
    np.testing.assert_array_equal(x.argmax(1).data, x.data.argmax(1))
    np.testing.assert_array_equal(x.argmin().data, x.data.argmin())
    assert not x.argmax().requires_grad


def works_module_to():
    model = nn.SequenceModel(5, 4, 5, num_layers=2, cell="lstm")
    x = np.array([[0, 1], [2, 3], [4, 0]])
    before = model(x)[0].data
    assert model.to(np.float32) is model
    assert all(p.dtype == np.float32 for p in model.parameters())
    logits, _ = model(x)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits.data, before, rtol=1e-5, atol=1e-6)
    model.astype("float64")
    assert all(p.dtype == np.float64 for p in model.parameters())
    with pytest.raises(TypeError, match="floating-point"):
        model.astype(np.int32)
    with pytest.raises(TypeError, match="no devices"):
        model.to("cpu")


# ---- spellings that keep NumPy's meaning -------------------------------------------------------

def numpy_size():
    x = leaf(2, 3)
    assert x.size == 6 and isinstance(x.size, int) and x.size + 1 == 7
    with pytest.raises(TypeError, match="write x.shape"):
        x.size()


def numpy_std():
    x = leaf(5)
    np.testing.assert_allclose(x.std().item(), x.data.std(), rtol=1e-13)  # ddof=0, not PyTorch's 1
    np.testing.assert_allclose(x.std(ddof=1).item(), x.data.std(ddof=1), rtol=1e-13)


def numpy_max_axis():
    x = leaf(3, 4)
    out = x.max(0)  # values only, not PyTorch's (values, indices)
    assert isinstance(out, mr.Tensor)
    np.testing.assert_array_equal(out.data, x.data.max(0))


def numpy_T():
    x = leaf(2, 3, 4)
    assert x.T.shape == (4, 3, 2)  # all axes reversed, as in NumPy


# ---- spellings refused with the NumPy one -----------------------------------------------------

def refused_dim():
    x = leaf(2, 3)
    for call in (lambda: x.sum(dim=0), lambda: x.mean(dim=0), lambda: x.max(dim=1), lambda: x.softmax(dim=1),
                 lambda: x.squeeze(dim=0), lambda: x.norm(dim=0), lambda: mr.cat([x, x], dim=0)):
        with pytest.raises(TypeError, match=r"micrornn follows NumPy: use axis=\d"):
            call()


def refused_keepdim():
    with pytest.raises(TypeError, match=r"micrornn follows NumPy: use keepdims=True"):
        leaf(2, 3).sum(0, keepdim=True)


def refused_unbiased():
    with pytest.raises(TypeError, match=r"use ddof=1"):
        leaf(4).std(unbiased=True)
    with pytest.raises(TypeError, match=r"use ddof=0"):
        leaf(4).var(correction=0)


def refused_view_dtype():
    with pytest.raises(TypeError, match="reinterprets the bits.*astype"):
        leaf(4).view(np.float32)


def refused_repeat():
    with pytest.raises(TypeError, match="np.tile.*repeat_interleave"):
        leaf(3).repeat(2)


def refused_transpose_pair():
    with pytest.raises(ValueError, match="swapaxes"):
        leaf(2, 3).transpose(0, 1)


def refused_split_count():
    with pytest.raises(TypeError, match="chunk"):
        leaf(4).split(2)


def refused_squeeze_long_axis():
    with pytest.raises(ValueError, match="has length 2, not 1"):
        leaf(2, 3).squeeze(0)


ROWS = {
    "micrornn.cat(ts, axis)": works_cat, "x.t()": works_t, "x.view(shape)": works_view, "x.flatten()": works_flatten,
    "x.clamp(min, max)": works_clamp, "x.pow(e)": works_pow, "x.norm(p, axis)": works_norm,
    "x.float() / x.double()": works_float_double, "x.to(dtype)": works_to_dtype,
    "x.requires_grad_()": works_requires_grad_, "x.numel() / x.dim()": works_numel_dim,
    "x.argmax(axis) / x.argmin(axis)": works_argmax, "module.to(dtype) / module.astype(dtype)": works_module_to,
    "x.size": numpy_size, "x.std() / x.var()": numpy_std, "x.max(axis)": numpy_max_axis, "x.T": numpy_T,
    "dim=": refused_dim, "keepdim=": refused_keepdim, "unbiased= / correction=": refused_unbiased,
    "x.view(dtype)": refused_view_dtype, "x.repeat(n)": refused_repeat, "x.transpose(0, 1)": refused_transpose_pair,
    "x.split(n)": refused_split_count, "x.squeeze(axis)": refused_squeeze_long_axis,
}


@pytest.mark.parametrize("row", list(ROWS))
def test_habit(row):
    ROWS[row]()


def test_docs_table_has_exactly_these_rows():
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("<!-- habits table -->")[1].split("<!-- end habits table -->")[0]
    rows = re.findall(r"^\| `([^`]+)`", table, flags=re.M)
    assert rows == list(ROWS)


@pytest.mark.parametrize("call", [lambda x: mr.stack([x, x], dim=0), lambda x: mr.concatenate([x, x], dim=0),
                                  lambda x: mr.functional.softmax(x, dim=0),
                                  lambda x: mr.functional.log_softmax(x, dim=0)])
def test_functions_refuse_dim_with_the_numpy_spelling(call):
    with pytest.raises(TypeError, match="micrornn follows NumPy: use axis=0"):
        call(mr.zeros(2, 3))


def test_transpose_of_two_axes_of_a_3d_tensor_points_to_swapaxes():
    with pytest.raises(ValueError, match=r"use swapaxes\(0, 1\)"):
        mr.zeros(2, 3, 4).transpose(0, 1)
