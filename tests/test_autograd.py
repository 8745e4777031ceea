"""The reverse-mode engine: seeds, accumulation, graph release, no_grad, dtypes, errors, deep graphs."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import micrornn
import micrornn.nn.functional as F
from micrornn import Tensor, concatenate, no_grad, stack


def leaf(*shape, seed=0, dtype=np.float64):
    """A float leaf tensor of random normal values that requires grad."""
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype), requires_grad=True)


def close(actual, expected, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def graph_nodes(root) -> list:
    """Every tensor of root's graph (root included)."""
    seen, stack_, out = {id(root)}, [root], []
    while stack_:
        node = stack_.pop()
        out.append(node)
        for p in node.parents:
            if id(p) not in seen:
                seen.add(id(p))
                stack_.append(p)
    return out


# ---- seeds ----------------------------------------------------------------------------------

def test_non_scalar_root_without_grad_is_a_clear_error():
    y = leaf(2, 3) * 2.0
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*explicit grad"):
        y.backward()


def test_one_element_root_needs_no_grad():
    x = leaf(1, 1)
    (x * 3.0).backward()
    close(x.grad, [[3.0]])


def test_explicit_grad_of_wrong_shape_is_an_error():
    y = leaf(2, 3) * 2.0
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(np.ones((3, 2)))


def test_explicit_grad_scales_the_gradient():
    x = leaf(2, 3)
    g = np.arange(6.0).reshape(2, 3)
    (x * 2.0).backward(g)
    close(x.grad, 2 * g)


def test_backward_on_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(3)).sum().backward()


# ---- accumulation ---------------------------------------------------------------------------

def test_leaf_grads_accumulate_across_backward_calls_with_retain_graph():
    x = leaf(3)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    close(x.grad, 2 * x.data)
    y.backward()
    close(x.grad, 4 * x.data)


def test_leaf_grads_accumulate_across_separate_graphs():
    x = leaf(3)
    (x * 3.0).sum().backward()
    x.exp().sum().backward()
    close(x.grad, 3.0 + np.exp(x.data))


def test_second_backward_through_released_graph_raises():
    x = leaf(3)
    y = (x.tanh() * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_backward_through_part_of_a_released_graph_raises():
    x = leaf(3)
    h = x.tanh()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        (h * 2.0).sum().backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf(3)
    h = x.tanh()
    y = (h * h).sum()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    y.backward(retain_graph=True)
    close(x.grad, 2 * first)
    (h * 3.0).sum().backward()  # a new graph on the retained part
    close(x.grad, 2 * first + 3.0 * (1 - np.tanh(x.data) ** 2))


# ---- graph recording -----------------------------------------------------------------------

def test_detach_cuts_the_graph():
    x = leaf(3)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.data, x.data)
    y = (x * d).sum()  # d is a constant: dy/dx = d, not 2x
    y.backward()
    close(x.grad, x.data)
    assert d.grad is None


def test_no_grad_records_no_graph():
    x = leaf(3)
    with no_grad():
        assert not micrornn.is_grad_enabled()
        y = (x * 2.0).exp().sum()
    assert micrornn.is_grad_enabled()
    assert not y.requires_grad
    assert y.parents == () and y.is_leaf and y.op_name is None
    with pytest.raises(RuntimeError):
        y.backward()


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0  # noqa: B018
    assert micrornn.is_grad_enabled()


def test_no_graph_when_no_input_requires_grad():
    a, b = Tensor(np.ones(3)), Tensor(np.arange(3.0))
    y = (a * b + 1.0).tanh().sum()
    assert not y.requires_grad
    assert y.parents == () and y.op_name is None


def test_parents_are_recorded_in_order():
    a, b = leaf(2, seed=1), leaf(2, seed=2)
    y = a - b
    assert y.op_name == "sub" and y.parents == (a, b)
    z = a * a
    assert z.parents == (a, a)


# ---- values of simple graphs ---------------------------------------------------------------

def test_x_times_x_gives_2x():
    x = leaf(4)
    (x * x).backward(np.ones(4))
    close(x.grad, 2 * x.data)


def test_scalar_x_times_x_gives_2x():
    x = Tensor(3.0, requires_grad=True)
    (x * x).backward()
    close(x.grad, 6.0)
    assert isinstance(x.grad, np.ndarray) and x.grad.shape == ()


def test_doubling_twice_gives_4():
    a = Tensor(2.0, requires_grad=True)
    b = a + a
    c = b + b
    c.backward()
    close(a.grad, 4.0)


def test_0d_tensor_used_many_times():
    # regression: the third gradient into a 0-d tensor was lost (NumPy scalars do not add in place)
    x = Tensor(2.0, requires_grad=True)
    y = (x * 1.0) * (x * 1.0) + x * x + x * 3.0
    y.backward()
    close(x.grad, 4 * 2.0 + 3.0)
    y2 = x * 1.0 + x * 1.0 + x * 1.0 + x * 1.0
    y2.backward()
    close(x.grad, 11.0 + 4.0)


def test_tensor_used_by_several_ops_gets_summed_grads():
    x = leaf(3)
    y = (x * 2.0).sum() + x.exp().sum() + (x @ x) + x[1] * 5.0
    y.backward()
    expected = 2.0 + np.exp(x.data) + 2 * x.data + np.array([0.0, 5.0, 0.0])
    close(x.grad, expected)


# ---- the engine never writes into arrays it does not own ------------------------------------

def test_backward_does_not_mutate_the_seed():
    x = leaf(3)
    y = x + 0.0
    g = np.array([1.0, 2.0, 3.0])
    y.backward(g, retain_graph=True)
    close(g, [1.0, 2.0, 3.0])
    first = x.grad
    first_copy = first.copy()
    y.backward(g)  # accumulates into x.grad: must not write into the array returned before
    close(g, [1.0, 2.0, 3.0], atol=0, rtol=0)
    close(first, first_copy, atol=0, rtol=0)
    close(x.grad, 2 * g)


def test_backward_on_a_leaf_does_not_mutate_seed_or_returned_grads():
    x = leaf(3)
    g = np.ones(3)
    x.backward(g)
    first = x.grad
    x.backward(g)
    close(g, np.ones(3), atol=0, rtol=0)
    close(first, np.ones(3), atol=0, rtol=0)
    close(x.grad, 2 * np.ones(3))


def test_returned_grads_not_mutated_by_later_slice_gradients():
    # a slice gradient is added in place into a buffer: never into one the user holds
    x = leaf(4, 3)
    r = x * 1.0
    r.retain_grad()
    (r.sum() + r[1].sum()).backward()
    held_x, held_r = x.grad, r.grad
    snap_x, snap_r = held_x.copy(), held_r.copy()
    r2 = x * 1.0
    (r2[[0, 0]].sum() + r2[2:].sum() + r2.sum()).backward()
    close(held_x, snap_x, atol=0, rtol=0)
    close(held_r, snap_r, atol=0, rtol=0)
    expected_second = np.ones((4, 3)) + np.array([[2.0], [0.0], [1.0], [1.0]])
    close(x.grad, snap_x + expected_second)


def test_seed_shared_by_two_parents_is_not_mutated():
    # add returns the same gradient array for both inputs; one input also gets a slice gradient
    x = leaf(3)
    y = x + x[[0, 0, 1]]
    g = np.array([1.0, 1.0, 1.0])
    y.backward(g)
    close(g, np.ones(3), atol=0, rtol=0)
    close(x.grad, [3.0, 2.0, 1.0])


def test_retain_grad_on_non_leaf():
    x = leaf(3)
    h = (x * 2.0).retain_grad()
    m = x * 3.0  # not retained
    y = (h.tanh() + m).sum()
    y.backward()
    close(h.grad, 1 - np.tanh(h.data) ** 2)
    assert m.grad is None
    close(x.grad, 2 * (1 - np.tanh(h.data) ** 2) + 3.0)


# ---- dtypes ---------------------------------------------------------------------------------

def test_float32_end_to_end():
    x = leaf(4, 3, dtype=np.float32)
    w = leaf(3, 5, seed=1, dtype=np.float32)
    h = ((x * 2.0 + 1) / 3.0 - 0.5) ** 2
    a = (h @ w).tanh() + (h @ w).sigmoid() * 0.5 - (-(h @ w)).exp() * 1e-3
    b = (a.relu() + 1.0).log() + a.max(axis=1, keepdims=True) + a.mean(axis=0)
    c = stack([b[0], b[1:3].sum(axis=0)]).reshape(-1) + concatenate([b[2], b[3]]).T
    loss = c.sum() * 0.1 + 2.0 ** (c / 10.0).sum()
    loss.backward()
    assert loss.dtype == np.float32
    for node in graph_nodes(loss):
        assert node.dtype == np.float32, (node.op_name, node.dtype)
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    assert np.all(np.isfinite(x.grad)) and np.all(np.isfinite(w.grad))


def test_float32_through_cross_entropy():
    logits = leaf(3, 2, 4, dtype=np.float32)
    w = leaf(4, 4, seed=1, dtype=np.float32)
    targets = np.array([[0, 3], [1, 1], [2, 0]])
    loss = F.cross_entropy(logits @ w * 0.5, targets)
    assert loss.dtype == np.float32
    for node in graph_nodes(loss):
        assert node.dtype == np.float32, (node.op_name, node.dtype)
    loss.backward()
    assert logits.grad.dtype == np.float32 and w.grad.dtype == np.float32
    # same numbers as float64, to float32 precision
    l64 = Tensor(logits.data.astype(np.float64), requires_grad=True)
    F.cross_entropy(l64 @ w.data.astype(np.float64) * 0.5, targets).backward()
    np.testing.assert_allclose(logits.grad, l64.grad, rtol=1e-4, atol=1e-6)


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_python_list_requiring_grad_becomes_float64():
    t = Tensor([1, 2], requires_grad=True)
    assert t.dtype == np.float64
    close(t.data, [1.0, 2.0])
    assert Tensor([1.5, 2]).dtype == np.float64
    assert Tensor(np.zeros(2, dtype=np.float32)).dtype == np.float32


# ---- error messages --------------------------------------------------------------------------

def test_matmul_shape_error_names_op_and_shapes():
    with pytest.raises(ValueError) as info:
        Tensor(np.ones((3, 4))) @ Tensor(np.ones((5, 6)))
    message = str(info.value)
    assert "matmul" in message and "(3, 4)" in message and "(5, 6)" in message


@pytest.mark.parametrize("op, name", [(lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"),
                                      (lambda a, b: a - b, "sub"), (lambda a, b: a / b, "div")])
def test_elementwise_shape_error_names_op_and_shapes(op, name):
    with pytest.raises(ValueError) as info:
        op(Tensor(np.ones((2, 3))), Tensor(np.ones(4)))
    message = str(info.value)
    assert name in message and "(2, 3)" in message and "(4,)" in message


# ---- deep graphs and slicing -----------------------------------------------------------------

def test_deep_tensor_chain_has_no_recursion_error_and_right_gradient():
    x = Tensor(0.5, requires_grad=True)
    y = x
    c = 1.00001
    gc.disable()  # 100,000 nodes: the cyclic collector only slows the build down
    try:
        for _ in range(50_000):
            y = y * c
            y = y + 0.25
        y.backward()  # 100,000 ops deep
    finally:
        gc.enable()
    np.testing.assert_allclose(x.grad, c ** 50_000, rtol=1e-9, atol=0)


def test_sum_of_time_slices_gives_ones():
    T, B, H = 6, 2, 3
    x = leaf(T, B, H)
    total = x[0].sum()
    for t in range(1, T):
        total = total + x[t].sum()
    total.backward()
    close(x.grad, np.ones((T, B, H)), atol=0, rtol=0)


def test_time_slices_with_weights_and_overlapping_gather():
    T, B, H = 5, 2, 3
    rng = np.random.default_rng(3)
    p = leaf(T, B, H)
    x = p * 1.0  # a non-leaf: slice gradients accumulate in the engine's buffer
    weights = rng.standard_normal((T, B, H))
    total = (x[[1, 3, 1]] * 2.0).sum()  # a gather overlapping the slices, index 1 repeated
    for t in range(T):
        total = total + (x[t] * weights[t]).sum()
    total = total + (x * 0.5).sum() + x[1:3].sum()  # plus a dense use and an overlapping slice
    total.backward()
    expected = weights + 0.5
    expected[1] += 4.0
    expected[3] += 2.0
    expected[1:3] += 1.0
    close(p.grad, expected)
