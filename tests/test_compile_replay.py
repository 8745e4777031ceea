"""The compiled replay's shortcuts give the uncompiled gradients bit for bit."""
import numpy as np

import micrornn as mr
from micrornn.engine import program


def test_int_and_slice_gathers_scatter_straight_into_the_gradient_buffer():
    w = mr.Tensor(np.random.default_rng(0).standard_normal((4, 6)), requires_grad=True)

    def f(x):
        y = (x * w).tanh()
        parts = [y[0], y[1:3], y[1], y[:, 2:5], y[2:, ::2], y[3, 1:4]]  # overlapping slots add up
        return sum((p * p).sum() for p in parts) + (y[[0, 0, 2]] ** 3).sum()  # and an advanced gather
    x = np.random.default_rng(1).standard_normal((4, 6))
    compiled = mr.compile(f)
    plan = compiled.program(x).backward_plan
    assert sum(vjp is None for _, vjp, _, _ in plan) == 6  # the basic gathers take the shortcut
    for _ in range(2):
        w.grad = None
        compiled(x).backward()
        got = w.grad.copy()
        w.grad = None
        f(mr.Tensor(x)).backward()
        np.testing.assert_array_equal(got, w.grad)


def test_the_shortcut_is_only_for_basic_indices():
    calls = mr.compile(lambda x: (x[np.int64(1)] + x[[0, 1]]).sum()).program(mr.Tensor(np.ones((3, 2)), requires_grad=True)).grad_calls
    assert [program._basic_getitem(c) for c in calls if c.prim.name == "getitem"] == [False, False]


def test_weight_gradient_rows_are_joined_as_a_view_only_when_big():
    from micrornn.engine.backward import _VIEW_CHECK_BYTES, _joined_rows
    for width in (4, _VIEW_CHECK_BYTES // 8):
        states = np.random.default_rng(0).standard_normal((6, 1, width))
        rows = [states[t] for t in range(6)]
        joined = _joined_rows(rows)
        np.testing.assert_array_equal(joined, states.reshape(6, width))
        assert np.shares_memory(joined, states) == (width * 8 >= _VIEW_CHECK_BYTES)
    big = np.zeros((3, 1, _VIEW_CHECK_BYTES // 8))
    assert not np.shares_memory(_joined_rows([big[0], big[2], big[1]]), big)  # out of order: a copy
