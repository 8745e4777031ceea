"""Property-based tests: random expression graphs against finite differences, and the two engines
against each other on random scalar expressions."""
import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import micrornn as mr
from micrornn.check.finite_differences import gradcheck

# Smooth ops only (relu and max have kinks where central differences are not the derivative).
UNARY = {
    "tanh": lambda a: a.tanh(),
    "sigmoid": lambda a: a.sigmoid(),
    "exp_small": lambda a: (a * 0.3).exp(),
    "square": lambda a: a ** 2,
    "neg": lambda a: -a,
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1.5 + b * b),  # denominator kept away from 0
    "pow": lambda a, b: (1.0 + a * a) ** b.tanh(),  # positive base
}


@st.composite
def expressions(draw):
    """Three input shapes that broadcast together and a random program over them."""
    shapes = draw(mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3)).input_shapes
    program = draw(st.lists(st.tuples(st.sampled_from(sorted(UNARY) + sorted(BINARY)),
                                      st.integers(0, 10), st.integers(0, 10)), min_size=1, max_size=6))
    seed = draw(st.integers(0, 2**16))
    return shapes, program, seed


def run_program(program, inputs):
    """Apply the program: each instruction appends a new value computed from earlier values."""
    values = list(inputs)
    for name, i, j in program:
        a, b = values[i % len(values)], values[j % len(values)]
        values.append(UNARY[name](a) if name in UNARY else BINARY[name](a, b))
    total = values[-1]
    for v in values[:-1]:  # every input reaches the output, whatever the program
        total = total + v.tanh() * 0.1
    return total


@settings(max_examples=40, deadline=None)
@given(expressions())
def test_random_graphs_match_finite_differences(case):
    shapes, program, seed = case
    rng = np.random.default_rng(seed)
    inputs = [mr.Tensor(rng.uniform(-1.5, 1.5, size=s), requires_grad=True) for s in shapes]
    assert gradcheck(lambda *xs: run_program(program, xs).sum(), inputs, atol=1e-5, rtol=1e-3)


@settings(max_examples=40, deadline=None)
@given(expressions())
def test_scalar_and_tensor_engines_agree(case):
    _, program, seed = case
    rng = np.random.default_rng(seed)
    numbers = rng.uniform(-1.5, 1.5, size=3)
    values = [mr.Value(v) for v in numbers]
    tensors = [mr.Tensor(v, requires_grad=True) for v in numbers]
    out_v, out_t = run_program(program, values), run_program(program, tensors)
    out_v.backward()
    out_t.backward()
    np.testing.assert_allclose(out_v.data, out_t.item(), rtol=1e-12, atol=1e-12)
    for v, t in zip(values, tensors):
        np.testing.assert_allclose(v.grad, t.grad, rtol=1e-10, atol=1e-12)
