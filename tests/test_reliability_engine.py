"""Engine reliability (issue 16, items 10, 11, 13): in-place edits of saved data are caught at
backward, the engine's switches are per thread, and 0-size products back-propagate."""
import threading
import warnings

import numpy as np
import pytest

import micrornn as mr
from micrornn.nn import optim
from micrornn.engine import guard
from micrornn.engine.backward import state
from micrornn.engine.ops import unbroadcast
from micrornn.engine.tensor import scope


# ---- item 10 (and issue 24 item 4): arrays a live graph saved are read-only ----------------------

def _product():
    x = mr.Tensor([1.0, 2.0, 3.0], requires_grad=True, name="x")
    w = mr.Tensor([4.0, 5.0, 6.0], requires_grad=True, name="w")
    return x, w, (x * w).sum()


def test_writing_through_data_after_forward_fails_at_the_write():
    x, w, y = _product()
    with pytest.raises(ValueError, match="read-only"):
        w.data[...] = 0
    with pytest.raises(ValueError, match="read-only"):
        w.numpy()[1] += 1e-12  # even a tiny change of one element
    y.backward()  # nothing changed: the gradient is the one of the recorded values
    np.testing.assert_array_equal(x.grad, [4.0, 5.0, 6.0])


def _model(kind):
    """A small SequenceModel: every cell kind unrolled and fused, and a float32 one."""
    cell, fused, dtype = kind
    return mr.nn.SequenceModel(3, 4, 3, cell=cell, fused=fused, rng=0, dtype=dtype)


_KINDS = [(c, f, np.float64) for c in ("rnn", "lstm", "gru") for f in (False, True)] + [("rnn", False, np.float32)]
_X, _Y = np.array([[0, 1], [2, 0], [1, 1]]), np.array([[1, 2], [0, 1], [2, 0]])
_EDITS = {
    "negate": lambda a: a.__imul__(-1),
    "transpose": lambda a: a.__setitem__(..., a.T) if a.ndim == 2 and a.shape[0] == a.shape[1] else a.__imul__(-1),
    "row swap": lambda a: a.__setitem__([0, 1], a[[1, 0]]),
}


def _grads(model):
    return {n: p.grad.copy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("edit", list(_EDITS))
@pytest.mark.parametrize("kind", _KINDS, ids=lambda k: f"{k[0]}-fused={k[1]}-{np.dtype(k[2]).name}")
def test_no_edit_between_forward_and_backward_changes_a_gradient(kind, edit):
    # the old guard (a wrap-around sum of the bits) let all three edits through on W and the head
    reference = _model(kind)
    reference.loss(_X, _Y)[0].backward()
    model = _model(kind)
    loss, _ = model.loss(_X, _Y)
    refused = set()
    for name, p in model.named_parameters():
        try:
            _EDITS[edit](p.data)
        except ValueError as err:
            assert "read-only" in str(err)
            refused.add(name)
    assert {"rnn.cells.0.W", "head.weight"} <= refused  # the backward reads these
    loss.backward()  # an edit that went through was to an array no VJP reads (a bias)
    for name, g in _grads(reference).items():
        np.testing.assert_array_equal(dict(model.named_parameters())[name].grad, g)
    for _name, p in model.named_parameters():
        _EDITS[edit](p.data)  # released: writeable again


def test_a_saved_hidden_state_is_read_only_too():
    model = mr.nn.SequenceModel(3, 4, 3, rng=0)
    out, _ = model.rnn(mr.Tensor(np.eye(3)[_X]))
    loss = (out * out).sum()
    hs = [n for n in _graph(loss) if n.name in ("h1", "h2")]
    assert len(hs) == 2
    for h in hs:
        with pytest.raises(ValueError, match="read-only"):
            h.data[...] = 0
    loss.backward()
    hs[0].data[...] = 0


def _graph(root):
    """Every tensor of root's graph."""
    seen, stack = {root}, [root]
    while stack:
        for p in stack.pop().parents:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


def test_a_saved_view_holds_the_tensor_it_was_made_from():
    W = mr.Tensor(np.ones((2, 2)), requires_grad=True, name="W")
    y = (mr.Tensor(np.ones((3, 2))) @ W.T).sum()  # matmul saves W.T's data, a view of W.data
    with pytest.raises(ValueError, match="read-only"):
        W.data[0, 1] = 5.0
    del y
    W.data[0, 1] = 5.0


def test_a_dropped_graph_gives_its_arrays_back():
    x, w, y = _product()
    del y  # never back-propagated
    w.data[...] = 1.0
    y2 = (x * w).sum()  # recorded after the edit
    y2.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(w.grad, [1.0, 2.0, 3.0])


def test_an_array_saved_by_two_graphs_is_writeable_after_both_are_released():
    _, w, y = _product()
    y2 = (w * w).sum()
    y.backward()
    assert guard.is_held(w.data)
    with pytest.raises(ValueError, match="read-only"):
        w.data[0] = 0.0
    y2.backward()
    assert not guard.is_held(w.data)
    w.data[0] = 0.0


def test_an_array_read_only_before_the_graph_stays_read_only():
    frozen = np.array([1.0, 2.0])
    frozen.flags.writeable = False
    w = mr.Tensor([1.0, 1.0], requires_grad=True)
    y = (w * mr.Tensor(frozen)).sum()  # Tensor copies; _lift below keeps the array itself
    z = (w * frozen).sum()
    y.backward(), z.backward()
    assert not frozen.flags.writeable


def test_retain_graph_keeps_arrays_read_only_and_the_optimizer_updates_a_copy():
    # decided: an optimizer step under a retained graph succeeds; the graph keeps the values it saved
    x, w, y = _product()
    y.backward(retain_graph=True)
    with pytest.raises(ValueError, match="read-only"):
        w.data *= 2
    saved = w.data
    optim.SGD([x, w], lr=0.1).step()
    assert w.data is not saved and w.data.flags.writeable
    np.testing.assert_allclose(w.data, [4.0 - 0.1, 5.0 - 0.2, 6.0 - 0.3])
    x.grad = w.grad = None
    y.backward()  # the gradient of the recorded computation: at the old values, never a mix
    np.testing.assert_array_equal(x.grad, [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(w.grad, [1.0, 2.0, 3.0])


def test_in_place_operators_and_load_state_dict_update_a_copy_under_a_live_graph():
    model = mr.nn.SequenceModel(3, 4, 3, rng=0)
    state = {k: v + 1.0 for k, v in model.state_dict().items()}
    loss, _ = model.loss(_X, _Y)
    model.load_state_dict(state)
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, state[name])
    with mr.no_grad():
        model.head.bias -= 1.0
    np.testing.assert_array_equal(model.head.bias.data, state["head.bias"] - 1.0)
    loss.backward()  # through the values the graph saw


def test_an_intermediate_saved_by_later_ops_stays_read_only_until_its_graph_is_released():
    # h is held once, by its own node (tanh saves its output); the products that save it again rely on it
    x = mr.Tensor(np.ones((2, 3)), requires_grad=True)
    w = mr.Tensor(np.full((3, 3), 0.5), requires_grad=True)
    h = (x @ w).tanh()
    y = ((h @ w) * h).sum()
    for target in (h.data, w.data, w.T.data):
        with pytest.raises(ValueError, match="read-only"):
            target[0, 0] = 9.0
    y.backward()
    h.data[0, 0] = 9.0  # released: writeable again
    w.data[0, 0] = 9.0


def test_a_backward_through_a_child_of_a_released_node_is_refused_before_any_gradient():
    # the price of holding h only by its own node: after a backward through h, h is writeable while a
    # product that saved it is alive; a backward through that product must never use the edited h
    x = mr.Tensor([0.5, 1.0], requires_grad=True)
    w = mr.Tensor([2.0, 3.0], requires_grad=True)
    h = x.tanh()
    z = (h * w).sum()
    h.sum().backward()
    h.data[...] = 0.0
    with pytest.raises(RuntimeError, match="already"):
        z.backward()
    assert w.grad is None
    with pytest.raises(RuntimeError, match="already"):
        mr.grad(z, [w])


def test_the_unrolled_loop_names_and_labels_each_step():
    model = mr.nn.SequenceModel(3, 4, 3, rng=0)
    out, _ = model.rnn(mr.Tensor(np.eye(3)[_X]))
    hs = sorted((n for n in _graph(out.sum()) if n.name and n.name.startswith("h")), key=lambda n: n.name)
    assert [h.name for h in hs] == ["h1", "h2", "h3"]
    assert [h.scope.step for h in hs] == [1, 2, 3]
    assert out.scope.step is None and state.scope is None  # the label is restored after the loop


def test_a_model_step_then_a_fresh_forward_trains_without_false_alarms():
    model = mr.nn.SequenceModel(3, 4, 3, rng=0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        loss, _ = model.loss(_X, _Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.data.flags.writeable for p in model.parameters())


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


def test_a_deep_copy_of_a_graph_does_not_give_the_original_arrays_back():
    import copy
    _, w, y = _product()
    clone = copy.deepcopy(y)
    del clone
    assert guard.is_held(w.data)  # still saved by y's graph
    y.backward()
    assert not guard.is_held(w.data) and w.data.flags.writeable
