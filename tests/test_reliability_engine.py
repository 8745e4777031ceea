"""Engine reliability (issue 16, items 10, 11, 13): in-place edits of saved data are caught at
backward, the engine's switches are per thread, and 0-size products back-propagate."""
import threading
import warnings

import numpy as np
import pytest

import micrornn as mr
from micrornn.nn import optim
from micrornn.engine.backward import state
from micrornn.engine.ops import unbroadcast
from micrornn.engine.tensor import scope


# ---- item 10: a leaf modified in place between forward and backward ---------------------------

def _product():
    x = mr.Tensor([1.0, 2.0, 3.0], requires_grad=True, name="x")
    w = mr.Tensor([4.0, 5.0, 6.0], requires_grad=True, name="w")
    return x, w, (x * w).sum()


def test_writing_through_data_after_forward_is_an_error_naming_tensor_and_op():
    x, w, y = _product()
    w.data[...] = 0
    with pytest.raises(RuntimeError, match=r"'w'.*modified in place.*'mul'"):
        y.backward()


def test_writing_through_numpy_after_forward_is_an_error():
    x, w, y = _product()
    w.numpy()[1] += 1e-12  # even a tiny change of one element
    with pytest.raises(RuntimeError, match=r"'w'.*'mul'"):
        y.backward()


def test_backward_after_an_optimizer_step_is_an_error():
    x, w, y = _product()
    y.backward(retain_graph=True)
    optim.SGD([x, w], lr=0.1).step()
    with pytest.raises(RuntimeError, match=r"modified in place.*'mul'"):
        y.backward()


def test_an_unnamed_parameter_is_named_by_its_shape_and_the_weight_product_by_its_op():
    W = mr.Tensor(np.ones((3, 2)), requires_grad=True)
    y = (mr.Tensor(np.ones((4, 3))) @ W).sum()
    W.data *= 2
    with pytest.raises(RuntimeError, match=r"shape \(3, 2\).*'matmul'"):
        y.backward()


def test_edits_before_recording_and_of_dropped_graphs_are_fine():
    x, w, y = _product()
    w.data[...] = 1.0          # the graph of y is dropped, never back-propagated
    y2 = (x * w).sum()         # recorded after the edit
    y2.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(w.grad, [1.0, 2.0, 3.0])


def test_a_model_step_then_a_fresh_forward_trains_without_false_alarms():
    model = mr.nn.SequenceModel(3, 4, 3, rng=0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    x, y = np.array([[0, 1], [2, 0], [1, 1]]), np.array([[1, 2], [0, 1], [2, 0]])
    for _ in range(3):
        loss, _ = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_a_parameter_changed_by_a_step_under_an_rnn_graph_is_caught():
    model = mr.nn.SequenceModel(3, 4, 3, rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    loss, _ = model.loss(np.array([[0, 1], [2, 0]]), np.array([[1, 2], [0, 1]]))
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


# ---- item 11: engine switches are per thread --------------------------------------------------

def _in_thread(body, *events):
    """Run body(*events) in a thread; returns (thread, errors list)."""
    errors = []

    def run():
        try:
            body(*events)
        except BaseException as e:  # reported by the test
            errors.append(e)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_no_grad_in_another_thread_does_not_stop_recording_here():
    entered, release = threading.Event(), threading.Event()

    def evaluate(entered, release):
        with mr.no_grad():
            entered.set()
            release.wait(10)
    thread, errors = _in_thread(evaluate, entered, release)
    assert entered.wait(10)
    try:
        w = mr.Tensor([1.0, 2.0], requires_grad=True)
        assert (w * 3.0).requires_grad and mr.is_grad_enabled()
    finally:
        release.set()
        thread.join(10)
    assert not errors


def test_overlapping_no_grad_blocks_in_two_threads_leave_recording_on():
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first(a_in, b_in, a_out):
        with mr.no_grad():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def second(a_in, b_in, a_out):
        a_in.wait(10)
        with mr.no_grad():
            b_in.set()
            a_out.wait(10)  # leaves its block after the first thread left its own
    (t1, e1), (t2, e2) = _in_thread(first, a_in, b_in, a_out), _in_thread(second, a_in, b_in, a_out)
    t1.join(10), t2.join(10)
    assert not e1 and not e2
    assert mr.is_grad_enabled() and state.grad_enabled
    assert (mr.Tensor([1.0], requires_grad=True) * 2.0).requires_grad


def test_anomaly_mode_and_scope_are_per_thread():
    entered, release = threading.Event(), threading.Event()

    def strict(entered, release):
        with mr.detect_anomaly(), scope("other thread"):
            entered.set()
            release.wait(10)
    thread, errors = _in_thread(strict, entered, release)
    assert entered.wait(10)
    try:
        x = mr.Tensor([-1.0], requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = x.log()  # nan, but anomaly detection is on only in the other thread
        assert np.isnan(y.data).all() and y.scope is None
    finally:
        release.set()
        thread.join(10)
    assert not errors


def test_training_and_evaluation_run_concurrently():
    model = mr.nn.SequenceModel(5, 8, 5, rng=0)
    evaluator = mr.nn.SequenceModel(5, 8, 5, rng=1)
    opt = optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, (6, 2)), rng.integers(0, 5, (6, 2))
    stop = threading.Event()

    def evaluate(stop):
        while not stop.is_set():
            with mr.no_grad():
                loss, _ = evaluator.loss(x, y)
                assert not loss.requires_grad
    thread, errors = _in_thread(evaluate, stop)
    failures = 0
    try:
        for _ in range(60):
            loss, _ = model.loss(x, y)
            if not loss.requires_grad:
                failures += 1
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        stop.set()
        thread.join(10)
    assert failures == 0 and not errors


# ---- item 13: 0-size matrix products ----------------------------------------------------------

@pytest.mark.parametrize("a_shape, b_shape", [((2, 0), (0, 3)), ((2, 3), (3, 0)), ((0, 3), (3, 2)),
                                              ((4, 2, 0), (0, 3)), ((2, 0), (4, 0, 3))])
def test_backward_through_a_zero_size_matmul(a_shape, b_shape):
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=a_shape), rng.normal(size=b_shape)
    a, b = mr.Tensor(A, requires_grad=True), mr.Tensor(B, requires_grad=True)
    out = a @ b
    G = rng.normal(size=out.shape)
    out.backward(G)
    ga = unbroadcast(G @ np.swapaxes(B, -1, -2), a_shape)  # dA = G B^T, dB = A^T G
    gb = unbroadcast(np.swapaxes(A, -1, -2) @ G, b_shape)
    np.testing.assert_array_equal(a.grad, ga)
    np.testing.assert_array_equal(b.grad, gb)
