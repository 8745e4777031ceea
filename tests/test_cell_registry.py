"""The cell registry: each built-in cell declares its kind, gates, states and parameter layout once,
and the readers (bptt, interop, limits, config, bench, CLI) agree with what the cells build."""
import numpy as np
import pytest

import micrornn as mr
from micrornn import bptt, nn
from micrornn.bptt import gru, lstm, model as bptt_model, vanilla
from micrornn.nn.cells import CELLS


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
def test_declared_layout_is_what_the_cell_builds(kind, bias):
    cls = CELLS[kind]
    cell = cls(3, 5, bias=bias)
    assert cls.kind == kind == cell.cell_kind
    built = {name: p.shape for name, p in cell.named_parameters()}
    assert built == cls.parameter_shapes(3, 5, bias)
    assert list(built) == list(cls.parameter_shapes(3, 5, bias))  # the same order as named_parameters()


def test_gate_and_state_names_match_the_analytic_blocks():
    assert CELLS["lstm"].gate_names == lstm.GATES == bptt_model.GATES["lstm"]
    assert CELLS["gru"].gate_names == gru.GATES == bptt_model.GATES["gru"]
    assert CELLS["rnn"].gate_names == () and CELLS["rnn"].blocks == bptt_model.GATES["rnn"]
    assert [CELLS[k].state_names for k in CELLS] == [("h",), ("h", "c"), ("h",)]
    assert {k: len(CELLS[k].state_names) for k in CELLS} == bptt_model.STATES


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gates_view_equals_the_step(kind):
    rng = np.random.default_rng(0)
    cell = CELLS[kind](3, 4, rng=1)
    x, h = mr.Tensor(rng.standard_normal((2, 3))), mr.Tensor(rng.standard_normal((2, 4)))
    state = (h, mr.Tensor(rng.standard_normal((2, 4)))) if kind == "lstm" else h
    gates = cell.gates(x, state)
    assert tuple(gates) == cell.gate_names and all(g.shape == (2, 4) for g in gates.values())
    if kind == "lstm":
        c = gates["f"].data * state[1].data + gates["i"].data * gates["g"].data
        np.testing.assert_allclose(cell(x, state)[1].data, c, rtol=1e-15)
    else:
        z, n = gates["z"].data, gates["n"].data
        np.testing.assert_allclose(cell(x, h).data, (1 - z) * n + z * h.data, rtol=1e-14)


def test_step_equations_are_the_layer_forward_of_bptt():
    rng = np.random.default_rng(2)
    x, h0, c0 = rng.standard_normal((1, 2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    U, W, b = rng.standard_normal((16, 3)), rng.standard_normal((16, 4)), rng.standard_normal(16)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    hs, cs, _ = lstm.lstm_layer_forward(x, U, W, b, h0, c0)
    h, c = lstm.step_equations(x[0] @ U.T + b + h0 @ W.T, c0, sig, np.tanh)
    np.testing.assert_allclose(hs[0], h, rtol=1e-13)
    np.testing.assert_allclose(cs[0], c, rtol=1e-13)
    b_hn = rng.standard_normal(4)
    hs, _, _ = gru.gru_layer_forward(x, U[:12], W[:12], b[:12], b_hn, h0)
    h = gru.step_equations(x[0] @ U[:12].T + b[:12], h0 @ W[:12].T, h0, b_hn, sig, np.tanh)
    np.testing.assert_allclose(hs[0], h, rtol=1e-13)
    hs = vanilla.rnn_layer_forward(x, U[:4], W[:4], b[:4], h0, "relu")
    h = vanilla.step_equations(x[0] @ U[:4].T + b[:4] + h0 @ W[:4].T, "relu", np.tanh, lambda a: np.maximum(a, 0))
    np.testing.assert_allclose(hs[0], h, rtol=1e-13)


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_one_route_one_return_type(kind, bidirectional):
    rng = np.random.default_rng(3)
    model = nn.SequenceModel(3, 4, 5, num_layers=2, cell=kind, bidirectional=bidirectional, rng=rng)
    x, y = rng.standard_normal((6, 2, 3)), rng.integers(0, 5, (6, 2))
    loss, grads, hidden = bptt.loss_and_grads(model, x, y, return_hidden_grads=True)
    D = 2 if bidirectional else 1
    assert isinstance(hidden, list) and len(hidden) == 2 and all(h.shape == (6, 2, D * 4) for h in hidden)
    steps = bptt.step_grads(model, x, y)
    for l in range(2):
        for d in range(D):
            np.testing.assert_allclose(hidden[l][..., d * 4:(d + 1) * 4], steps[(l, d)]["h"], rtol=1e-14)
    assert list(grads) == [n for n, _ in model.named_parameters()]
    assert bptt.loss_and_grads is bptt_model.loss_and_grads and not hasattr(vanilla, "loss_and_grads")


def test_readers_take_their_kinds_from_the_registry():
    from micrornn.bench import options
    from micrornn.train import config, limits
    assert options.CELLS == config.CELLS == nn.rnn.CELL_KINDS == tuple(CELLS)
    small = limits.rnn_run_bytes(3, 4, 5, 2, 6, 2, cell="rnn")
    gated = [limits.rnn_run_bytes(3, 4, 5, 2, 6, 2, cell=k) for k in ("gru", "lstm")]
    assert small < gated[0] < gated[1]
    params = sum(p.size for p in nn.SequenceModel(3, 4, 5, num_layers=2, cell="gru").parameters())
    assert limits.rnn_run_bytes(3, 4, 5, 2, 0, 0, itemsize=1, cell="gru") == 4 * params


def test_the_two_detach_functions_say_what_they_return():
    from micrornn.train.carried_state import state_arrays as detach_state_arrays
    h = mr.Tensor(np.ones((2, 3)), requires_grad=True) * 2
    assert isinstance(nn.detach_state_tensors((h, h))[0], mr.Tensor)
    assert isinstance(detach_state_arrays((h, h))[0], np.ndarray)


def test_the_memory_refusal_counts_each_kind_s_blocks_from_the_registry():
    import re

    def counted(layer):
        with pytest.raises(ValueError) as refused:
            layer(3, 10 ** 6, num_layers=2)
        return int(re.search(r"makes ([\d,]+) weights", str(refused.value)).group(1).replace(",", ""))
    rnn = counted(nn.RNN)
    assert counted(nn.LSTM) == len(nn.LSTMCell.blocks) * rnn and counted(nn.GRU) == len(nn.GRUCell.blocks) * rnn
