"""Higher order and forward mode for every primitive: second derivatives against finite differences
of the first-order gradient, and each JVP against its VJP by the dot-product test.

The cases are the first-order cases of test_ops.CASES and test_tensor_ops.CASES (so a primitive
gets these tests as soon as it gets gradient cases there) plus EXTRA_CASES below for the primitives
only the higher-order rules create. The meta-tests fail when a primitive is registered without a
dvjp or a jvp rule, or when no case here runs it (another test module may declare coverage with a
comment line "# higher-order-tested: NAME").
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import micrornn as mr
from micrornn import Tensor
from micrornn.engine import ops
from micrornn.check.finite_differences import GradcheckError, gradcheck, gradgradcheck
from grad_helpers import declared_in_tests
from test_ops import ALL_CASES, case, graph_ops, make_inputs, normal
from test_tensor_ops import CASES as TENSOR_API_CASES

SCATTER_INDEX = np.array([[0, 2], [2, 2]])

# gradient-tested: broadcast_to, scatter_add
EXTRA_CASES = {
    "broadcast_to": [
        case("(3,1)->(2,3,4)", lambda a: mr.apply(ops.BROADCAST_TO, a, shape=(2, 3, 4)), normal(3, 1)),
        case("()->(2,2) squared", lambda a: mr.apply(ops.BROADCAST_TO, a, shape=(2, 2)) ** 2, normal()),
    ],
    "scatter_add": [
        case("rows, repeated", lambda v: mr.apply(ops.SCATTER_ADD, v, shape=(4, 3), index=SCATTER_INDEX)
             .tanh(), normal(2, 2, 3)),
        case("slice", lambda v: mr.apply(ops.SCATTER_ADD, v, shape=(5,), index=slice(1, 4)) ** 2, normal(3)),
        case("two values, one index each", lambda v, w: mr.apply(ops.SCATTER_ADD, v, w, shape=(4, 3),
             index=[SCATTER_INDEX, 1]).tanh(), normal(2, 2, 3), normal(3)),
    ],
    "getitem": [  # a tensor read at several indices and whole: its gradient is formed from all the pieces
        case("pieces and a dense use", lambda a: (a[0] * a[1] + a[[2, 2]].sum(0) * a[-1] + a.sum(0)).tanh(),
             normal(4, 3)),
    ],
}
EXTRA = [pytest.param(name, *p.values, id=f"{name}-{p.id}") for name, ps in EXTRA_CASES.items() for p in ps]
TENSOR_API = [pytest.param(label.split()[0], fn, tuple(arrays), id=f"tensor-api-{label}")
              for label, (fn, arrays) in TENSOR_API_CASES.items()]
EVERY_CASE = ALL_CASES + EXTRA + TENSOR_API


@pytest.mark.parametrize("name, fn, arrays", EXTRA)
def test_extra_primitive_gradcheck(name, fn, arrays):
    inputs = make_inputs(arrays)
    assert name in graph_ops(fn(*inputs))
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("name, fn, arrays", EVERY_CASE)
def test_second_order_against_differences_of_the_gradient(name, fn, arrays):
    inputs = make_inputs(arrays)
    assert gradgradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def dot_product_gap(fn, arrays, seed=0) -> float:
    """|<u, J v> - <J^T u, v>| / max(sum of |terms|, 1) for random u, v: J v by jvp, J^T u by grad."""
    rng = np.random.default_rng(seed)
    inputs = make_inputs(arrays)
    vs = [rng.standard_normal(a.shape) for a in arrays]
    out, jv = mr.jvp(fn, inputs, vs)
    u = rng.standard_normal(out.shape)
    jtu = mr.grad(out, inputs, grad_outputs=u)
    left = float(np.sum(u * jv.data))
    right = float(sum(np.sum(g.data * v) for g, v in zip(jtu, vs)))
    scale = float(np.sum(np.abs(u * jv.data))) + float(sum(np.sum(np.abs(g.data * v)) for g, v in zip(jtu, vs)))
    return abs(left - right) / max(scale, 1.0)  # relative, or absolute where J is (nearly) 0


@pytest.mark.parametrize("name, fn, arrays", EVERY_CASE)
def test_jvp_is_the_transpose_of_the_vjp(name, fn, arrays):
    assert dot_product_gap(fn, arrays) < 1e-13


@pytest.mark.parametrize("name, fn, arrays", [p for p in EVERY_CASE if "recurrence" not in p.id][::3])
def test_jvp_against_central_differences(name, fn, arrays):
    rng = np.random.default_rng(5)
    vs = [rng.standard_normal(a.shape) for a in arrays]
    _, jv = mr.jvp(fn, make_inputs(arrays), vs)
    eps = 1e-6
    plus = fn(*make_inputs([a + eps * v for a, v in zip(arrays, vs)])).data
    minus = fn(*make_inputs([a - eps * v for a, v in zip(arrays, vs)])).data
    np.testing.assert_allclose(jv.data, (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_gradgradcheck_catches_a_wrong_second_derivative():
    def wrong_dvjp(g, out, xs, saved, needs):  # the right first derivative as a constant: d2 = 0
        return (g * (1 - out.data * out.data),)

    wrong = ops.Primitive("tanh_wrong_d2", ops.tanh_fwd, ops.tanh_vjp, True, wrong_dvjp, elementwise=True)
    x = make_inputs([normal(3)])
    assert gradcheck(lambda a: mr.apply(wrong, a), x)  # first order is right
    assert not gradgradcheck(lambda a: mr.apply(wrong, a), x, raise_exception=False)
    with pytest.raises(GradcheckError, match="second derivative"):
        gradgradcheck(lambda a: mr.apply(wrong, a), x)


def test_dot_product_test_catches_a_wrong_jvp():
    wrong = ops.Primitive("exp_wrong_jvp", ops.exp_fwd, ops.exp_vjp, True, ops.EXP.dvjp, lambda ts, s, out: ts[0])
    assert dot_product_gap(lambda a: mr.apply(wrong, a), [normal(4)]) > 1e-3


def test_primitive_without_rules_says_what_to_register():
    bare = ops.Primitive("bare", ops.exp_fwd, ops.exp_vjp)
    x = Tensor(normal(3), requires_grad=True)
    with pytest.raises(NotImplementedError, match=r"'bare'.*dvjp="):
        mr.grad(mr.apply(bare, x).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match=r"'bare'.*jvp="):
        mr.jvp(lambda a: mr.apply(bare, a), x, np.ones(3))
    g, = mr.grad(mr.apply(bare, x).sum(), x)  # first order needs neither
    np.testing.assert_allclose(g.data, np.exp(x.data), rtol=1e-15)


def test_a_user_primitive_gets_its_rules_from_its_declarations():
    triple = ops.Primitive("triple", lambda a: (3 * a, None), lambda g, saved, needs: (3 * g,),
                           linear=True, shared="saved")  # d(3a)/da = 3, the same code on arrays and Tensors
    cube = ops.Primitive("cube", lambda a: (a ** 3, a), lambda g, a, needs: (3 * g * a * a,),
                         shared="input", elementwise=True)  # d(a^3)/da = 3 a^2
    x = make_inputs([normal(4)])
    for prim in (triple, cube):
        assert gradgradcheck(lambda a: mr.apply(prim, a).tanh(), x, eps=1e-6, atol=1e-7, rtol=1e-5)  # noqa: B023
        assert dot_product_gap(lambda a: mr.apply(prim, a).tanh(), [x[0].data]) < 1e-13  # noqa: B023
    _, tangent = mr.jvp(lambda a: mr.apply(cube, a), x[0], np.ones(4))
    np.testing.assert_allclose(tangent.data, 3 * x[0].data ** 2, rtol=1e-15)
    with pytest.raises(ValueError, match="shared must be one of"):
        ops.Primitive("bad", ops.exp_fwd, ops.exp_vjp, shared="outputs")


def worst_disagreements() -> dict:
    """Largest second-order |H v - differences| and dot-product gap over every case (for the README)."""
    from micrornn.check.finite_differences import _numerical_directional
    worst_second, worst_gap = 0.0, 0.0
    for p in EVERY_CASE:
        _, fn, arrays = p.values
        inputs = make_inputs(arrays)
        rng = np.random.default_rng(0)
        out = fn(*inputs)
        u = rng.standard_normal(out.shape)
        vs = [rng.standard_normal(t.shape) for t in inputs]
        gs = mr.grad((out * u).sum(), inputs, create_graph=True)
        terms = [(g * v).sum() for g, v in zip(gs, vs) if g.requires_grad]
        hv = mr.grad(sum(terms[1:], terms[0]), inputs) if terms else [np.zeros(t.shape) for t in inputs]
        for t, a in zip(inputs, hv):
            n = _numerical_directional(fn, inputs, inputs, u, vs, t, 1e-6)
            worst_second = max(worst_second, float(np.max(np.abs(getattr(a, "data", a) - n), initial=0.0)))
        worst_gap = max(worst_gap, dot_product_gap(fn, arrays))
    return {"second order max |Hv - fd|": worst_second, "jvp/vjp max relative gap": worst_gap}


@pytest.mark.slow  # the per-case tests above already hold each case to tighter, per-element bounds
def test_worst_disagreements_are_small():
    worst = worst_disagreements()
    assert worst["second order max |Hv - fd|"] < 1e-6, worst
    assert worst["jvp/vjp max relative gap"] < 1e-13, worst


# ---- second order through an unrolled RNN: memory linear in T ----------------------------------

def hvp_peak_megabytes(T, B=4, H=8, inputs=3) -> float:
    """Peak traced memory of H v for sum(h_t^2) of an unrolled RNN over T steps."""
    rnn = mr.nn.RNN(inputs, H)
    x = Tensor(np.random.default_rng(0).standard_normal((T, B, inputs)))
    params = rnn.parameters()
    tracemalloc.start()
    try:
        mr.hvp(lambda *ps: (rnn(x)[0] ** 2).sum(), params, [np.ones(p.shape) for p in params])
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_hvp_through_unrolled_steps_grows_linearly_in_T():
    # a dense (T, B, H) scatter of each step's x[t] gradient would make this O(T^2): 11x from T=40 to 160
    short, long = hvp_peak_megabytes(40), hvp_peak_megabytes(160)
    assert long / short < 6, f"peak {short:.2f} MB at T=40, {long:.2f} MB at T=160 (linear: 4x)"


# ---- every primitive has both rules and a case -------------------------------------------------

def test_every_primitive_has_higher_order_rules():
    no_dvjp = sorted(n for n, p in ops.PRIMITIVES.items() if p.dvjp is None)
    no_jvp = sorted(n for n, p in ops.PRIMITIVES.items() if not p.has_jvp())
    assert not no_dvjp, f"primitives without a differentiable VJP (defprimitive(..., dvjp=... or shared=...)): {no_dvjp}"
    assert not no_jvp, ("primitives without a forward-mode rule (defprimitive(..., jvp=...), linear=True or "
                        f"elementwise=True): {no_jvp}")


def test_every_primitive_has_second_order_and_jvp_tests():
    exercised = set().union(*(graph_ops(p.values[1](*make_inputs(p.values[2]))) for p in EVERY_CASE))
    missing = sorted(set(ops.PRIMITIVES) - exercised - declared_in_tests("higher-order-tested"))
    assert not missing, (f"primitives without second-order and JVP tests: {missing}; add first-order cases "
                         "to CASES in tests/test_ops.py or tests/test_tensor_ops.py (they are reused here), or a "
                         "'# higher-order-tested: NAME' line in the test file that covers them")
