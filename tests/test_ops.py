"""Every primitive of micrornn.engine.ops.PRIMITIVES against central finite differences (float64).

CASES maps a primitive's name to the cases that exercise it; test_every_primitive_has_cases fails
when a primitive is registered without any gradient test (see its comment for how another test
module declares that it covers a primitive).
"""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import micrornn as mr
from micrornn import Tensor, concatenate, stack
from micrornn.engine import ops
from micrornn.check.finite_differences import autograd_grads, gradcheck, numerical_grad

from grad_helpers import declared_in_tests, declared_names, make_inputs

RNG = np.random.default_rng(1234)


def normal(*shape):
    """Standard normal float64 values."""
    return RNG.standard_normal(shape)


def positive(*shape):
    """Values in [0.5, 2): safe for log, pow bases and denominators."""
    return RNG.uniform(0.5, 2.0, shape)


def away_from_zero(*shape):
    """Values with |x| in [0.3, 2): keeps relu and max away from their kinks."""
    return RNG.uniform(0.3, 2.0, shape) * RNG.choice([-1.0, 1.0], shape)


def distinct(*shape):
    """A permutation of well-separated values (no ties: max is differentiable there)."""
    n = int(np.prod(shape))
    return (RNG.permutation(n) * 0.5 - n / 4).reshape(shape)


def _recurrence(h, w, x, steps=40):
    """h_t = tanh(h_{t-1} @ w + x): one weight used by many matmul_add nodes."""
    for _ in range(steps):
        h = mr.engine.matmul_add(h, w, x).tanh()
    return h


def case(label, fn, *arrays):
    """One gradcheck case: fn applied to float64 tensors (all requiring grad) made from arrays."""
    return pytest.param(fn, arrays, id=label)


C_1_24_1, C_4_3_2, C_3, C_3_2_2 = normal(1, 24, 1), normal(4, 3, 2), normal(3), normal(3, 2, 2)  # fixed constants for cases
MASK_1D = np.array([True, False, True, True, False])
MASK_2D = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])

CASES = {
    "add": [
        case("same", lambda a, b: a + b, normal(3, 4), normal(3, 4)),
        case("(3,1)+(1,4)", lambda a, b: a + b, normal(3, 1), normal(1, 4)),
        case("(2,3,4)+(4,)", lambda a, b: a + b, normal(2, 3, 4), normal(4)),
        case("()+(3,)", lambda a, b: a + b, normal(), normal(3)),
        case("(2,3)+()", lambda a, b: a + b, normal(2, 3), normal()),
        case("(1,)+(2,3)", lambda a, b: a + b, normal(1), normal(2, 3)),
        case("x+x", lambda a: a + a, normal(4)),
        case("x+number", lambda a: 2.5 + a + 1, normal(2, 2)),
    ],
    "sub": [
        case("same", lambda a, b: a - b, normal(3, 4), normal(3, 4)),
        case("(3,1)-(1,4)", lambda a, b: a - b, normal(3, 1), normal(1, 4)),
        case("(4,)-(2,3,4)", lambda a, b: a - b, normal(4), normal(2, 3, 4)),
        case("()-(3,)", lambda a, b: a - b, normal(), normal(3)),
        case("number-x", lambda a: 1.0 - a, normal(3)),
    ],
    "mul": [
        case("same", lambda a, b: a * b, normal(3, 4), normal(3, 4)),
        case("(3,1)*(1,4)", lambda a, b: a * b, normal(3, 1), normal(1, 4)),
        case("(2,3,4)*(4,)", lambda a, b: a * b, normal(2, 3, 4), normal(4)),
        case("()*(2,3)", lambda a, b: a * b, normal(), normal(2, 3)),
        case("(2,1,3)*(4,1)", lambda a, b: a * b, normal(2, 1, 3), normal(4, 1)),
        case("x*x", lambda a: a * a, normal(5)),
        case("number*x", lambda a: 3.0 * a * -0.5, normal(2, 3)),
    ],
    "div": [
        case("same", lambda a, b: a / b, normal(3, 4), away_from_zero(3, 4)),
        case("(3,1)/(1,4)", lambda a, b: a / b, normal(3, 1), away_from_zero(1, 4)),
        case("(2,3,4)/(4,)", lambda a, b: a / b, normal(2, 3, 4), away_from_zero(4)),
        case("()/(3,)", lambda a, b: a / b, normal(), away_from_zero(3)),
        case("x/x", lambda a: a / a, away_from_zero(4)),
        case("number/x", lambda a: 2.0 / a, away_from_zero(3)),
        case("x/number", lambda a: a / 4.0, normal(3)),
    ],
    "pow": [
        case("x**2", lambda a: a ** 2, normal(3, 4)),
        case("x**3.5", lambda a: a ** 3.5, positive(3, 4)),
        case("x**-1.5", lambda a: a ** -1.5, positive(5)),
        case("x**tensor", lambda a, b: a ** b, positive(3, 4), normal(3, 4)),
        case("(3,1)**(1,4)", lambda a, b: a ** b, positive(3, 1), normal(1, 4)),
        case("(2,3)**()", lambda a, b: a ** b, positive(2, 3), normal()),
        case("number**x", lambda b: 2.0 ** b, normal(4)),
        case("x**x", lambda a: a ** a, positive(4)),
    ],
    "neg": [
        case("(3,4)", lambda a: -a, normal(3, 4)),
        case("()", lambda a: -a, normal()),
    ],
    "exp": [
        case("(3,4)", lambda a: a.exp(), normal(3, 4)),
        case("()", lambda a: a.exp(), normal()),
        case("(2,3,2)", lambda a: (a * 3).exp(), normal(2, 3, 2)),
    ],
    "log": [
        case("(3,4)", lambda a: a.log(), positive(3, 4)),
        case("()", lambda a: a.log(), positive()),
        case("small", lambda a: a.log(), RNG.uniform(0.05, 0.2, (4,))),
    ],
    "tanh": [
        case("(3,4)", lambda a: a.tanh(), normal(3, 4)),
        case("()", lambda a: a.tanh(), normal()),
        case("large", lambda a: a.tanh(), normal(2, 3) * 4),
    ],
    "sigmoid": [
        case("(3,4)", lambda a: a.sigmoid(), normal(3, 4)),
        case("()", lambda a: a.sigmoid(), normal()),
        case("large both signs", lambda a: a.sigmoid(), normal(2, 3) * 6),
    ],
    "relu": [
        case("(3,4)", lambda a: a.relu(), away_from_zero(3, 4)),
        case("()", lambda a: a.relu(), away_from_zero()),
    ],
    "matmul_add": [
        case("(3,4)@(4,5)+(5,)", lambda a, b, c: mr.engine.matmul_add(a, b, c), normal(3, 4), normal(4, 5), normal(5)),
        case("(3,4)@(4,5)+(3,5)", lambda a, b, c: mr.engine.matmul_add(a, b, c), normal(3, 4), normal(4, 5),
             normal(3, 5)),
        case("(2,3,4)@(4,2)+(1,2)", lambda a, b, c: mr.engine.matmul_add(a, b, c), normal(2, 3, 4), normal(4, 2),
             normal(1, 2)),
        case("recurrence: W shared by 40 steps of 32 rows (weight products batched, folded mid-way)",
             lambda h, w, x: _recurrence(h, w, x), normal(32, 3) * 0.3, normal(3, 3) * 0.3, normal(3) * 0.3),
    ],
    "matmul": [
        case("(3,4)@(4,5)", lambda a, b: a @ b, normal(3, 4), normal(4, 5)),
        case("(T,B,I)@(I,H)", lambda a, b: a @ b, normal(5, 2, 3), normal(3, 4)),
        case("(2,3,4)@(2,4,5)", lambda a, b: a @ b, normal(2, 3, 4), normal(2, 4, 5)),
        case("(4,)@(4,3)", lambda a, b: a @ b, normal(4), normal(4, 3)),
        case("(3,4)@(4,)", lambda a, b: a @ b, normal(3, 4), normal(4)),
        case("(4,)@(4,)", lambda a, b: a @ b, normal(4), normal(4)),
        case("(4,)@(2,4,3)", lambda a, b: a @ b, normal(4), normal(2, 4, 3)),
        case("(2,1,3,4)@(5,4,2)", lambda a, b: a @ b, normal(2, 1, 3, 4), normal(5, 4, 2)),
        case("(3,4)@(2,4,5)", lambda a, b: a @ b, normal(3, 4), normal(2, 4, 5)),
        case("(2,3,4)@(4,)", lambda a, b: a @ b, normal(2, 3, 4), normal(4)),
        case("W used twice", lambda x, w: (x @ w).tanh() @ w, normal(2, 3), normal(3, 3)),
        case("W in matmul and elementwise", lambda x, w: (x @ w) * 2.0 + (w * w).sum() + x @ w.T,
             normal(2, 3), normal(3, 3)),
    ],
    "sum": [
        case("None", lambda a: a.sum(), normal(2, 3, 4)),
        case("None keepdims", lambda a: a.sum(keepdims=True), normal(2, 3, 4)),
        case("0", lambda a: a.sum(axis=0), normal(2, 3, 4)),
        case("1 keepdims", lambda a: a.sum(axis=1, keepdims=True), normal(2, 3, 4)),
        case("-1", lambda a: a.sum(axis=-1), normal(2, 3, 4)),
        case("(0,2)", lambda a: a.sum(axis=(0, 2)), normal(2, 3, 4)),
        case("(-1,-3) keepdims", lambda a: a.sum(axis=(-1, -3), keepdims=True), normal(2, 3, 4)),
        case("1-d", lambda a: a.sum(axis=0), normal(5)),
        case("0-d", lambda a: a.sum(), normal()),
        case("mean", lambda a: a.mean(axis=1), normal(3, 4)),
    ],
    "max": [
        case("None", lambda a: a.max(), distinct(2, 3, 4)),
        case("None keepdims", lambda a: a.max(keepdims=True), distinct(2, 3, 4)),
        case("0", lambda a: a.max(axis=0), distinct(2, 3, 4)),
        case("1 keepdims", lambda a: a.max(axis=1, keepdims=True), distinct(2, 3, 4)),
        case("-1", lambda a: a.max(axis=-1), distinct(2, 3, 4)),
        case("(0,2)", lambda a: a.max(axis=(0, 2)), distinct(2, 3, 4)),
        case("(-1,-2) keepdims", lambda a: a.max(axis=(-1, -2), keepdims=True), distinct(2, 3, 4)),
        case("1-d", lambda a: a.max(axis=0), distinct(5)),
    ],
    "logsumexp": [
        case("-1", lambda a: a.logsumexp(), normal(3, 4)),
        case("0", lambda a: a.logsumexp(axis=0), normal(3, 4)),
        case("1 keepdims", lambda a: a.logsumexp(axis=1, keepdims=True), normal(2, 3, 4)),
        case("1-d", lambda a: a.logsumexp(), normal(5)),
        case("large logits", lambda a: a.logsumexp(), normal(2, 5) * 30),
    ],
    "reshape": [
        case("(2,3,4)->(6,4)", lambda a: a.reshape(6, 4), normal(2, 3, 4)),
        case("-> (-1,)", lambda a: a.reshape(-1), normal(2, 3, 4)),
        case("tuple arg", lambda a: a.reshape((4, 3, 2)), normal(2, 3, 4)),
        case("(1,24,1)", lambda a: a.reshape(1, 24, 1) * C_1_24_1, normal(2, 3, 4)),
        case("0-d -> (1,)", lambda a: a.reshape(1), normal()),
    ],
    "transpose": [
        case("2-d no axes", lambda a: a.transpose(), normal(3, 4)),
        case("3-d no axes", lambda a: a.transpose(), normal(2, 3, 4)),
        case("(1,0,2)", lambda a: a.transpose(1, 0, 2), normal(2, 3, 4)),
        case("(2,0,1) tuple", lambda a: a.transpose((2, 0, 1)), normal(2, 3, 4)),
        case("(-1,0,1)", lambda a: a.transpose(-1, 0, 1), normal(2, 3, 4)),
        case(".T 2-d", lambda a: a.T, normal(3, 4)),
        case(".T 3-d", lambda a: a.T * C_4_3_2, normal(2, 3, 4)),
    ],
    "getitem": [
        case("int", lambda a: a[1], normal(3, 4)),
        case("negative int", lambda a: a[-1], normal(3, 4)),
        case("slice", lambda a: a[1:3], normal(4, 3)),
        case("negative step", lambda a: a[::-1], normal(5)),
        case("negative step 2", lambda a: a[::-2, 1:], normal(5, 3)),
        case("column", lambda a: a[:, 1], normal(3, 4)),
        case("ellipsis", lambda a: a[..., 0], normal(2, 3, 4)),
        case("newaxis", lambda a: a[None, 1:], normal(3)),
        case("gather repeated", lambda a: a[np.array([0, 2, 0, 0])], normal(3, 2)),
        case("gather list", lambda a: a[[1, 1, 2]], normal(4)),
        case("gather rows 2-d index, negatives", lambda a: a[np.array([[0, -1], [2, 2]])], normal(3, 2)),
        case("gather rows of 3-d", lambda a: a[np.array([1, 1, 0])] * C_3_2_2, normal(2, 2, 2)),
        case("empty gather", lambda a: a[np.array([], dtype=int)].sum() + a.sum(), normal(3, 2)),
        case("gather columns", lambda a: a[:, [0, 0, 3]], normal(3, 4)),
        case("pairs gather", lambda a: a[np.array([0, 1, 1, 2]), np.array([3, 0, 0, 3])], normal(3, 4)),
        case("Tensor index", lambda a: a[Tensor(np.array([2, 2, 0]))], normal(3)),
        case("bool mask 1-d", lambda a: a[MASK_1D], normal(5)),
        case("bool mask 2-d", lambda a: a[MASK_2D], normal(3, 4)),
        case("bool row mask", lambda a: a[np.array([True, False, True])], normal(3, 2)),
        case("slice + gather overlap", lambda a: a[:2] * 2 + a[[1, 1]] + a[1:], normal(3, 2)),
    ],
    "stack": [
        case("axis 0", lambda *xs: stack(xs), normal(2, 3), normal(2, 3)),
        case("axis 1 three", lambda *xs: stack(xs, axis=1), normal(2, 3), normal(2, 3), normal(2, 3)),
        case("axis -1", lambda *xs: stack(xs, axis=-1), normal(2, 3), normal(2, 3)),
        case("axis 2 of 2-d", lambda *xs: stack(xs, axis=2), normal(2, 3), normal(2, 3)),
        case("0-d", lambda *xs: stack(xs), normal(), normal()),
        case("same tensor twice", lambda a: stack([a, a * 2, a]), normal(3)),
        case("with constant", lambda a: stack([a, Tensor(C_3)], axis=1), normal(3)),
    ],
    "concatenate": [
        case("axis 0", lambda *xs: concatenate(xs), normal(2, 3), normal(1, 3)),
        case("axis 1 three", lambda *xs: concatenate(xs, axis=1), normal(2, 1), normal(2, 3), normal(2, 2)),
        case("axis -1", lambda *xs: concatenate(xs, axis=-1), normal(2, 2, 3), normal(2, 2, 1)),
        case("1-d", lambda *xs: concatenate(xs), normal(3), normal(2)),
        case("same tensor twice", lambda a: concatenate([a, a]), normal(3)),
    ],
}

ALL_CASES = [pytest.param(name, *p.values, id=f"{name}-{p.id}") for name, ps in CASES.items() for p in ps]


def graph_ops(root) -> set:
    """Names of every op in root's graph."""
    seen, stack_, names = {id(root)}, [root], set()
    while stack_:
        node = stack_.pop()
        if node.op_name:
            names.add(node.op_name)
        for p in node.parents:
            if id(p) not in seen:
                seen.add(id(p))
                stack_.append(p)
    return names


@pytest.mark.parametrize("name, fn, arrays", ALL_CASES)
def test_primitive_gradcheck(name, fn, arrays):
    inputs = make_inputs(arrays)
    assert name in graph_ops(fn(*inputs)), f"case does not exercise primitive {name!r}"
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def max_gradcheck_error(fn, arrays) -> float:
    """max |autograd - numerical| of one case (same projection as gradcheck)."""
    inputs = make_inputs(arrays)
    cotangent, analytic = autograd_grads(fn, inputs)
    numeric = numerical_grad(lambda *xs: fn(*xs) * cotangent, inputs)
    return max(float(np.max(np.abs(a - n), initial=0.0)) for a, n in zip(analytic, numeric))


def test_worst_gradcheck_error_is_small():
    worst = max(max_gradcheck_error(p.values[1], p.values[2]) for p in ALL_CASES)
    assert worst < 1e-6, worst


# A primitive registered in ops.PRIMITIVES must have gradient tests. They live in CASES above, or
# in another test module (say the RNN layer's own file), which declares it with a comment line of
# the form  "# gradient-tested: NAME"  (one or more comma-separated names). The meta-test reads the
# source text of tests/*.py, so it does not depend on which modules pytest collected or in what order.
def test_every_primitive_has_cases():
    missing = set(ops.PRIMITIVES) - set(CASES) - declared_in_tests("gradient-tested")
    assert not missing, (f"primitives without gradient tests: {sorted(missing)}; add cases to CASES in "
                         "tests/test_ops.py or a '# gradient-tested: NAME' line in the test file that covers them")


def test_cases_name_registered_primitives():
    assert set(CASES) <= set(ops.PRIMITIVES), set(CASES) - set(ops.PRIMITIVES)
    assert all(CASES.values())


def test_marker_scan_finds_declarations():
    text = "x = 1\n# gradient-tested: rnn_layer, other_op\n    #gradient-tested: third\n"
    assert declared_names(text, "gradient-tested") == {"rnn_layer", "other_op", "third"}


# ---- properties of elementwise broadcasting (hypothesis) ------------------------------------

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
}


@settings(max_examples=12, deadline=None)
@given(op=st.sampled_from(sorted(BINARY)),
       shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       seed=st.integers(0, 2 ** 16))
def test_binary_broadcasting(op, shapes, seed):
    fn, reference = BINARY[op]
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a = rng.standard_normal(sa)
    b = rng.uniform(0.5, 2.0, sb) * rng.choice([-1.0, 1.0], sb)
    ta, tb = make_inputs([a, b])
    out = fn(ta, tb)
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.data, reference(a, b), rtol=1e-12, atol=1e-12)
    assert gradcheck(fn, [ta, tb], atol=1e-7, rtol=1e-5)


# ---- exact values that gradcheck cannot see ---------------------------------------------------

def test_max_ties_split_gradient_evenly():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [5.0, 0.0, 1.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    expected = np.array([[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [1, 0, 0]])
    np.testing.assert_allclose(x.grad, expected, rtol=0, atol=1e-15)

    y = Tensor(np.array([[4.0, 1.0], [4.0, 4.0]]), requires_grad=True)
    y.max().backward(np.array(6.0))
    np.testing.assert_allclose(y.grad, [[2.0, 0.0], [2.0, 2.0]], rtol=0, atol=1e-15)

    z = Tensor(np.array([[7.0, 7.0], [1.0, 7.0]]), requires_grad=True)
    z.max(axis=0, keepdims=True).backward(np.array([[1.0, 4.0]]))
    np.testing.assert_allclose(z.grad, [[1.0, 2.0], [0.0, 2.0]], rtol=0, atol=1e-15)


def test_gather_with_repeated_indices_scatter_adds():
    x = Tensor(np.arange(4.0), requires_grad=True)
    x[np.array([0, 0, 2, 0, 2])].backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_allclose(x.grad, [7.0, 0.0, 8.0, 0.0], rtol=0, atol=1e-15)

    rows = Tensor(np.zeros((3, 2)), requires_grad=True)
    rows[np.array([2, -1, 0, 2])].backward(np.arange(8.0).reshape(4, 2))
    np.testing.assert_allclose(rows.grad, [[4, 5], [0, 0], [0 + 2 + 6, 1 + 3 + 7]], rtol=0, atol=1e-15)

    m = Tensor(np.zeros((2, 3)), requires_grad=True)
    m[[1, 1], [2, 2]].sum().backward()
    np.testing.assert_allclose(m.grad, [[0, 0, 0], [0, 0, 2]], rtol=0, atol=1e-15)


def test_boolean_mask_gradient():
    x = Tensor(np.arange(5.0), requires_grad=True)
    x[MASK_1D].backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.grad, [1.0, 0.0, 2.0, 3.0, 0.0], rtol=0, atol=1e-15)


def test_negative_step_slice_gradient():
    x = Tensor(np.arange(6.0), requires_grad=True)
    np.testing.assert_allclose(x[::-2].data, [5.0, 3.0, 1.0], rtol=0, atol=0)
    x[::-2].backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.grad, [0, 3, 0, 2, 0, 1], rtol=0, atol=1e-15)


@pytest.mark.parametrize("value", [1000.0, -1000.0])
def test_sigmoid_tanh_saturate_finite_and_exact(value):
    x = Tensor(np.array([value, value / 2]), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # (exp may underflow to 0)
        s, t = x.sigmoid(), x.tanh()
        (s + t).sum().backward()
    # exact references: sigmoid(1000) = 1, sigmoid(-1000) = 0 (e^-1000 underflows), sigmoid(-500) = e^-500
    expected_s = [1.0, 1.0] if value > 0 else [0.0, np.exp(-500.0)]
    np.testing.assert_allclose(s.data, expected_s, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(t.data, [np.sign(value)] * 2, rtol=0, atol=1e-300)
    assert np.all(np.isfinite(x.grad))
    expected_grad = [0.0, 0.0] if value > 0 else [0.0, np.exp(-500.0)]  # s(1-s) + (1 - tanh^2)
    np.testing.assert_allclose(x.grad, expected_grad, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("value", [1000.0, -1000.0])
def test_logsumexp_at_large_logits(value):
    x = Tensor(np.array([[value, value - 1.0, value - 2.0], [value, value, value]]), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = x.logsumexp(axis=-1)
        out.sum().backward()
    shifted = x.data - value
    expected = value + np.log(np.exp(shifted).sum(axis=-1))
    np.testing.assert_allclose(out.data, expected, rtol=1e-15, atol=0)
    softmax = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(x.grad, softmax, rtol=1e-12, atol=1e-15)


def test_sigmoid_float32_keeps_dtype_and_saturates():
    x = Tensor(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32), requires_grad=True)
    s = x.sigmoid()
    assert s.dtype == np.float32
    np.testing.assert_allclose(s.data, [0.0, 0.5, 1.0], rtol=0, atol=1e-7)


@pytest.mark.parametrize("build, reference", [
    (lambda a, b: a @ b, lambda a, b: a @ b),
    (lambda a, b: a.sum(axis=(0, -1)), lambda a, b: a.sum(axis=(0, -1))),
    (lambda a, b: a.max(axis=1, keepdims=True), lambda a, b: a.max(axis=1, keepdims=True)),
    (lambda a, b: a.transpose(2, 0, 1), lambda a, b: a.transpose(2, 0, 1)),
    (lambda a, b: a[:, ::-1, [0, 0]], lambda a, b: a[:, ::-1, [0, 0]]),
    (lambda a, b: stack([a, a], axis=-1), lambda a, b: np.stack([a, a], axis=-1)),
    (lambda a, b: concatenate([a, a], axis=1), lambda a, b: np.concatenate([a, a], axis=1)),
    (lambda a, b: (a / 3.0) ** 2 - a.exp(), lambda a, b: (a / 3.0) ** 2 - np.exp(a)),
], ids=["matmul", "sum", "max", "transpose", "getitem", "stack", "concatenate", "elementwise"])
def test_forward_matches_numpy(build, reference):
    a, b = normal(2, 3, 4), normal(4, 2)
    out = build(Tensor(a, requires_grad=True), Tensor(b, requires_grad=True))
    np.testing.assert_allclose(out.data, reference(a, b), rtol=1e-12, atol=1e-12)


def test_unbroadcast_sums_back():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_allclose(ops.unbroadcast(g, (4,)), g.sum(axis=(0, 1)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ops.unbroadcast(g, (3, 1)), g.sum(axis=(0, 2))[:, None], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ops.unbroadcast(g, ()), g.sum(), rtol=0, atol=1e-12)
    assert ops.unbroadcast(g, (2, 3, 4)) is g
