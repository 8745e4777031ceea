"""lengths= on every layer: the same numbers as running each sequence alone, zero outputs and zero
input gradients past a length, and the three-way gradient check (graph, analytic, central
differences) with padded batches."""
import numpy as np
import pytest

import micrornn as mr
from micrornn import bptt, nn
from micrornn.check import routes
from micrornn.nn import functional as F

from user_cells import MGU

LENGTHS = np.array([5, 2, 4])
LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _alone(run, x, b, L):
    """run(x) on sequence b alone, cut to its length."""
    return run(mr.Tensor(x[:L, b:b + 1]))


def _state_entries(final):
    return final if isinstance(final, tuple) else (final,)


def _check_against_one_at_a_time(run, x, lengths):
    out, final = run(mr.Tensor(x))
    T = x.shape[0]
    for b, L in enumerate(lengths):
        ref, ref_final = _alone(run, x, b, L)
        np.testing.assert_allclose(out.data[:L, b], ref.data[:, 0], rtol=1e-12, atol=1e-14)
        assert not out.data[L:, b].any()  # past a length the output is exactly 0
        for got, want in zip(_state_entries(final), _state_entries(ref_final)):
            np.testing.assert_allclose(got.data[:, b], want.data[:, 0], rtol=1e-12, atol=1e-14)
    assert out.shape[0] == T


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_built_in_layers_give_the_numbers_of_each_sequence_alone(kind, fused, bidirectional):
    rng = np.random.default_rng(0)
    layer = LAYERS[kind](3, 4, num_layers=2, bidirectional=bidirectional, fused=fused, rng=1)
    x = rng.standard_normal((5, 3, 3))
    _check_against_one_at_a_time(lambda xt: layer(xt, lengths=LENGTHS if xt.shape[1] == 3 else None), x, LENGTHS)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_user_cell_gives_the_numbers_of_each_sequence_alone(bidirectional):
    rng = np.random.default_rng(1)
    rec = nn.Recurrent(MGU, 3, 4, num_layers=2, bidirectional=bidirectional)
    x = rng.standard_normal((5, 3, 3))
    _check_against_one_at_a_time(lambda xt: rec(xt, lengths=LENGTHS if xt.shape[1] == 3 else None), x, LENGTHS)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("fused", [False, True])
def test_padded_inputs_get_exactly_zero_gradient(kind, fused):
    rng = np.random.default_rng(2)
    layer = LAYERS[kind](3, 4, num_layers=2, bidirectional=True, fused=fused, rng=1)
    x = mr.Tensor(rng.standard_normal((5, 3, 3)), requires_grad=True)
    out, final = layer(x, lengths=LENGTHS)
    h_n = final[0] if kind == "lstm" else final
    ((out * mr.Tensor(rng.standard_normal(out.shape))).sum() + (h_n * h_n).sum()).backward()
    for b, L in enumerate(LENGTHS):
        assert not x.grad[L:, b].any()
        assert np.abs(x.grad[:L, b]).min() > 0


def test_a_user_cell_padded_inputs_get_exactly_zero_gradient():
    rng = np.random.default_rng(3)
    rec = nn.Recurrent(MGU, 3, 4, bidirectional=True)
    x = mr.Tensor(rng.standard_normal((5, 3, 3)), requires_grad=True)
    out, h_n = rec(x, lengths=LENGTHS)
    ((out * out).sum() + h_n.sum()).backward()
    for b, L in enumerate(LENGTHS):
        assert not x.grad[L:, b].any() and np.abs(x.grad[:L, b]).min() > 0


def test_batch_first_and_index_inputs_take_lengths():
    rng = np.random.default_rng(4)
    gru = nn.GRU(6, 4, batch_first=True, bidirectional=True, rng=0)
    ids = rng.integers(0, 6, (3, 5))  # (B, T)
    out, h_n = gru(mr.Tensor(ids), lengths=LENGTHS)
    for b, L in enumerate(LENGTHS):
        ref, ref_h = gru(mr.Tensor(ids[b:b + 1, :L]))
        np.testing.assert_allclose(out.data[b, :L], ref.data[0], rtol=1e-12)
        assert not out.data[b, L:].any()
        np.testing.assert_allclose(h_n.data[:, b], ref_h.data[:, 0], rtol=1e-12)


def test_full_lengths_are_the_fast_path_and_bad_lengths_are_named():
    rng = np.random.default_rng(5)
    lstm = nn.LSTM(2, 3, rng=0)
    x = mr.Tensor(rng.standard_normal((4, 2, 2)))
    a, (h, c) = lstm(x)
    b, (h2, c2) = lstm(x, lengths=[4, 4])
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(c.data, c2.data)
    for bad, message in (([0, 4], r"values in 1..4"), ([5, 1], r"values in 1..4"), ([4], r"shape \(2,\)"),
                         ([1.5, 2], "integers")):
        with pytest.raises(ValueError, match=r"lengths: expected " + message):
            lstm(x, lengths=bad)


def test_cross_entropy_mask_skips_targets():
    rng = np.random.default_rng(6)
    logits = mr.Tensor(rng.standard_normal((4, 3, 5)), requires_grad=True)
    targets = rng.integers(0, 5, (4, 3))
    mask = np.ones((4, 3), dtype=bool)
    mask[2:, 1] = False
    padded = targets.copy()
    padded[~mask] = -100  # whatever a padding target holds
    for reduction in ("sum", "mean", "none"):
        got = F.cross_entropy(logits, padded, reduction=reduction, mask=mask)
        full = F.cross_entropy(logits, targets, reduction="none").data
        want = {"sum": full[mask].sum(), "mean": full[mask].mean(), "none": np.where(mask, full, 0)}[reduction]
        np.testing.assert_allclose(got.data, want, rtol=1e-13)
    logits.grad = None
    F.cross_entropy(logits, padded, reduction="sum", mask=mask).backward()
    assert not logits.grad[2:, 1].any() and logits.grad[:2, 1].any()
    with pytest.raises(ValueError, match="mask must be booleans"):
        F.cross_entropy(logits, targets, mask=np.ones((4, 3)))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", MGU])
@pytest.mark.parametrize("fused", [False, True])
def test_sequence_model_loss_with_lengths_is_the_sum_of_the_sequences_alone(cell, fused):
    if fused and not isinstance(cell, str):
        pytest.skip("a user cell runs unrolled")
    rng = np.random.default_rng(7)
    model = nn.SequenceModel(6, 4, 6, num_layers=2, cell=cell, bidirectional=True, fused=fused, rng=0)
    x, y = rng.integers(0, 6, (5, 3)), rng.integers(0, 6, (5, 3))
    y_padded = np.where(np.arange(5)[:, None] < LENGTHS, y, -1)
    loss, _ = model.loss(x, y_padded, lengths=LENGTHS)
    alone = sum(model.loss(x[:L, b:b + 1], y[:L, b:b + 1])[0].item() for b, L in enumerate(LENGTHS))
    assert loss.item() == pytest.approx(alone, rel=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_three_way_gradient_check_with_lengths(cell, bidirectional):
    model, x, y, h0 = routes.random_problem(layers=2, steps=5, batch=3, cell=cell, bidirectional=bidirectional,
                                            with_h0=True, seed=3)
    y = np.where(np.arange(5)[:, None] < LENGTHS, y, -1)  # padded targets hold anything
    rows = routes.compare(model, x, y, h0, lengths=LENGTHS)
    assert all(r.passed for r in rows), routes.format_table(rows)
    loss, grads = bptt.loss_and_grads(model, x, y, h0, lengths=LENGTHS)
    alone = [bptt.loss_and_grads(model, x[:L, b:b + 1], y[:L, b:b + 1],
                                 None if h0 is None else _column(h0, b))
             for b, L in enumerate(LENGTHS)]
    assert loss == pytest.approx(sum(a[0] for a in alone), rel=1e-12)
    for name, g in grads.items():  # the padded batch's gradient is the sum of the sequences' alone
        np.testing.assert_allclose(g, sum(a[1][name] for a in alone), rtol=1e-10, atol=1e-13)


def _column(h0, b):
    """Batch column b of an initial state (an array or a tuple of arrays (L*D, B, H))."""
    return tuple(s[:, b:b + 1] for s in h0) if isinstance(h0, tuple) else h0[:, b:b + 1]


def test_user_cell_graph_gradient_with_lengths_matches_central_differences():
    rng = np.random.default_rng(8)
    model = nn.SequenceModel(3, 4, 5, num_layers=2, cell=MGU, bidirectional=True, rng=0)
    x, y = rng.standard_normal((5, 3, 3)), rng.integers(0, 5, (5, 3))
    _, graph = routes.model_autograd_grads(model, x, y, lengths=LENGTHS)
    numeric = routes.numeric_grads(model, x, y, lengths=LENGTHS)
    for name, g in graph.items():
        np.testing.assert_allclose(g, numeric[name], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_fused_second_order_and_jvp_with_lengths_equal_the_unrolled_graph(kind):
    rng = np.random.default_rng(9)
    layer = LAYERS[kind](2, 3, fused=True, rng=0)
    x = rng.standard_normal((4, 2, 2))
    params = layer.parameters()

    def loss(*ps):
        out, _ = layer(mr.Tensor(x), lengths=[4, 2])
        return (out * out).sum()
    value, hv = mr.hvp(loss, params, [mr.Tensor(np.ones(p.shape)) for p in params])
    layer.fused = False
    value2, hv2 = mr.hvp(loss, params, [mr.Tensor(np.ones(p.shape)) for p in params])
    assert value.item() == pytest.approx(value2.item(), rel=1e-12)
    for a, b in zip(hv, hv2):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-9, atol=1e-12)
    layer.fused = True
    tangents = [mr.Tensor(rng.standard_normal(p.shape)) for p in params]
    _, t_fused = mr.jvp(loss, params, tangents)
    layer.fused = False
    _, t_unrolled = mr.jvp(loss, params, tangents)
    np.testing.assert_allclose(np.asarray(t_fused[0].data if isinstance(t_fused, (list, tuple)) else t_fused.data),
                               np.asarray(t_unrolled[0].data if isinstance(t_unrolled, (list, tuple))
                                          else t_unrolled.data), rtol=1e-10)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_fused_gradients_through_the_final_state_equal_the_graph_with_lengths(kind, bidirectional):
    rng = np.random.default_rng(10)
    layer = LAYERS[kind](3, 4, num_layers=2, bidirectional=bidirectional, rng=1)
    x_data = rng.standard_normal((5, 3, 3))
    weights = [rng.standard_normal(s) for s in ((5, 3, (2 if bidirectional else 1) * 4), (4 if bidirectional else 2, 3, 4))]

    def grads(fused):
        layer.fused = fused
        layer.zero_grad()
        x = mr.Tensor(x_data, requires_grad=True)
        out, final = layer(x, lengths=LENGTHS)
        loss = (out * mr.Tensor(weights[0])).sum()
        for entry in _state_entries(final):  # the final h (and c) carry a gradient back through the padding
            loss = loss + (entry * mr.Tensor(weights[1])).sum()
        loss.backward()
        return [x.grad.copy()] + [p.grad.copy() for p in layer.parameters()]
    for a, b in zip(grads(True), grads(False)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_gradcheck_cli_takes_lengths(capsys):
    from micrornn.cli import main
    assert main(["gradcheck", "--cell", "lstm", "--bidirectional", "--h0", "--batch", "3", "--lengths", "6,2,4"]) == 0
    out = capsys.readouterr().out
    assert "lengths=6,2,4" in out and "PASS: all 14 parameters agree" in out
    assert main(["gradcheck", "--lengths", "9,1"]) == 2
    assert "--lengths: expected 2 lengths" in capsys.readouterr().err
