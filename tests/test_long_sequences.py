"""Long sequences, truncated BPTT, exploding gradients: the graph stays sound at scale."""
import numpy as np
import pytest

import micrornn as mr
from micrornn.nn import optim
from micrornn.engine.backward import topological_order


def test_ten_thousand_step_unrolled_rnn_backward():
    model = mr.nn.SequenceModel(8, 32, 8, rng=0)
    x = np.random.default_rng(0).integers(0, 8, size=(10_000, 1))
    loss, _ = model.loss(x, np.roll(x, -1, axis=0))
    loss.backward()  # no RecursionError on a graph ~40,000 nodes deep
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and np.isfinite(g).all() for g in grads.values())
    # The last step's gradient reaches the first step's input weights: compare with the analytic route.
    _, reference = mr.bptt.loss_and_grads(model, np.eye(8)[x], np.roll(x, -1, axis=0))
    for name, g in grads.items():
        np.testing.assert_allclose(g, reference[name], rtol=1e-9, atol=1e-9 * np.abs(reference[name]).max())


def _graph_size_per_chunk(detach: bool, chunks: int = 4) -> list:
    """Number of graph nodes behind each chunk's loss when h_n is (or is not) carried detached."""
    model = mr.nn.SequenceModel(5, 6, 5, rng=1)
    rng, h, sizes = np.random.default_rng(1), None, []
    for _ in range(chunks):
        x = rng.integers(0, 5, size=(7, 2))
        loss, h = model.loss(x, x, h0=h)
        sizes.append(len(topological_order(loss)))
        loss.backward(retain_graph=not detach)
        h = h.detach() if detach else h
    return sizes


def test_truncated_bptt_graph_does_not_grow_across_chunks():
    detached = _graph_size_per_chunk(detach=True)
    assert len(set(detached[1:])) == 1, detached  # the same size every chunk after the first (h0 = 0)
    attached = _graph_size_per_chunk(detach=False)
    assert attached[-1] > attached[0] + 2 * 7, attached  # without detach every chunk adds the last one's graph


def _exploding_model(T=60, radius=1.5):
    """A relu RNN whose recurrent weight has spectral radius > 1: dL/dh_t grows like radius^(T-t)."""
    model = mr.nn.SequenceModel(4, 8, 4, nonlinearity="relu", rng=2)
    cell = model.rnn.cells[0]
    cell.W.data[...] = radius * np.eye(8)
    cell.U.data[...] = np.abs(cell.U.data)
    cell.b.data[...] = 0.1
    x = np.random.default_rng(2).integers(0, 4, size=(T, 3))
    return model, x


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_gradients_explode_without_clipping_and_training_continues_with_it():
    model, x = _exploding_model()
    loss, _ = model.loss(x, x)
    loss.backward()
    norm = np.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
    assert norm > 1e8  # exploded

    sgd = optim.SGD(model.parameters(), lr=0.01)
    sgd.step()  # one unclipped step wrecks the model: the next loss is astronomically large or not finite
    wrecked, _ = model.loss(x, x)
    assert not np.isfinite(wrecked.item()) or wrecked.item() > 1e6 * loss.item()

    model, x = _exploding_model()
    sgd = optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(15):
        sgd.zero_grad()
        loss, _ = model.loss(x, x)
        loss.backward()
        total = optim.clip_grad_norm_(model.parameters(), 1.0)
        assert total > 1.0
        assert np.sqrt(sum((p.grad ** 2).sum() for p in model.parameters())) <= 1.0 + 1e-9
        sgd.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_non_finite_gradient_never_reaches_the_parameters():
    model, x = _exploding_model(T=400, radius=10.0)  # 10^400 overflows float64: gradients hold inf/nan
    with np.errstate(all="ignore"):
        loss, _ = model.loss(x, x)
        loss.backward()
    assert not all(np.isfinite(p.grad).all() for p in model.parameters())
    before = model.state_dict()
    with pytest.raises(FloatingPointError):
        optim.Adam(model.parameters(), lr=0.1).step()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_gc_is_paused_for_big_graphs_and_restored():
    import gc
    from micrornn.engine.backward import GC_PAUSE_NODES, gc_paused
    assert gc.isenabled()
    with gc_paused(GC_PAUSE_NODES - 1):
        assert gc.isenabled()  # small graphs: left alone
    with gc_paused(GC_PAUSE_NODES):
        assert not gc.isenabled()
        with gc_paused(GC_PAUSE_NODES):
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused(GC_PAUSE_NODES):
            pass
        assert not gc.isenabled()  # a collector the caller switched off stays off
    finally:
        gc.enable()


def test_backward_of_a_long_unrolled_sequence_restores_the_collector():
    import gc
    import micrornn as mr
    model = mr.nn.SequenceModel(3, 4, 3, rng=0)
    x = np.random.default_rng(0).integers(0, 3, size=(1000, 1))
    seen = []
    original = mr.engine.backward._propagate

    def spy(*args):
        seen.append(gc.isenabled())
        return original(*args)
    mr.engine.backward._propagate = spy
    try:
        loss, _ = model.loss(x, x)
        loss.backward()
    finally:
        mr.engine.backward._propagate = original
    assert seen == [False] and gc.isenabled()
