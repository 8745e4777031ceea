"""Review findings on the higher-order API: clear errors instead of crashes."""
import numpy as np
import pytest

import micrornn as mr
from micrornn import Tensor
from micrornn.check.finite_differences import GradcheckError, gradgradcheck
from grad_helpers import assert_recorded_gradient_is_first_order, make_inputs
from test_higher_ops import EVERY_CASE


def test_gradgradcheck_names_a_failing_second_input():
    """A wrong second derivative in input 1 is reported as a GradcheckError naming input 1."""
    from micrornn.engine.ops import defprimitive
    from micrornn.engine.tensor import apply

    def fwd(a, b):
        return a * b * b, (a, b)

    def vjp(g, saved, needs):
        a, b = saved
        return g * b * b, g * 2 * a * b

    def dvjp(g, out, xs, saved, needs):  # wrong on purpose: an extra b^2 in d/db, so only d2/db2 is off
        a, b = xs
        return g * b * b, g * 2 * a * b + g * b * b

    prim = defprimitive("review_wrong_dvjp", fwd, vjp)
    prim.dvjp = dvjp
    try:
        a = Tensor(np.array([0.7, -0.4]), requires_grad=True)
        b = Tensor(np.array([1.3, 0.9]), requires_grad=True)
        with pytest.raises(GradcheckError, match="input 1 "):
            gradgradcheck(lambda x, y: apply(prim, x, y).sum(), [a, b])
    finally:
        del mr.ops.PRIMITIVES["review_wrong_dvjp"]


def test_jvp_of_a_function_returning_a_number_says_what_fn_must_return():
    x = Tensor(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="must return a Tensor"):
        mr.jvp(lambda t: 3.0, [x], [np.ones(2)])


@pytest.mark.parametrize("name, fn, arrays", EVERY_CASE)
def test_recorded_gradient_equals_the_first_order_gradient_for_every_case(name, fn, arrays):
    """grad(create_graph=True) runs each op's dvjp; its value must be the plain VJP's (second-order checks
    cannot see a wrong dvjp of a piecewise-linear op such as relu: its second derivative is 0 either way)."""
    assert_recorded_gradient_is_first_order(fn, make_inputs(arrays))
