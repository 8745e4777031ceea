"""layer_norm=True on the LSTM and GRU cells: the equations (against a naive NumPy loop written here),
the parameter registry, the refusals, and the graph's gradients against central differences (float64)."""
# gradient-tested: layer-norm LSTM and GRU cells (unrolled)

import numpy as np
import pytest

import micrornn as mr
from micrornn.check import routes
from micrornn.nn import GRU, LSTM, GRUCell, LSTMCell, SequenceModel
from micrornn.nn.cells import CELLS

EPS_LN = 1e-5


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def ln(v, gain, shift, G):
    """Layer norm of each of the G blocks of v (B, G*H) over its H units."""
    B, GH = v.shape
    blocks = v.reshape(B, G, GH // G)
    mu = blocks.mean(axis=-1, keepdims=True)
    var = ((blocks - mu) ** 2).mean(axis=-1, keepdims=True)
    return ((blocks - mu) / np.sqrt(var + EPS_LN)).reshape(B, GH) * gain + shift


def naive_ln_lstm(x, p, h, c):
    """The LN-LSTM equations of the docstring, one step at a time: (hs, cs)."""
    H = p["W"].shape[1]
    hs, cs = [], []
    for x_t in x:
        a = ln(x_t @ p["U"].T, p["gain_x"], p["b"], 4) + ln(h @ p["W"].T, p["gain_h"], 0, 4)
        i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(ln(c, p["gain_c"], p["bias_c"], 1))
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


def naive_ln_gru(x, p, h):
    """The LN-GRU equations of the docstring, one step at a time: hs."""
    H = p["W"].shape[1]
    hs = []
    for x_t in x:
        ax = ln(x_t @ p["U"].T, p["gain_x"], p["b"], 3)
        ah = ln(h @ p["W"].T, p["gain_h"], 0, 3)
        r, z = sigmoid(ax[:, :H] + ah[:, :H]), sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
        n = np.tanh(ax[:, 2 * H:] + r * (ah[:, 2 * H:] + p["b_hn"]))
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs)


def perturbed(module, seed=1, scale=0.3):
    """The module with every parameter moved off its init (gains away from 1, shifts away from 0)."""
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] += rng.normal(0, scale, p.shape)
    return module


@pytest.mark.parametrize("cls, extra", [(LSTMCell, {"gain_x": (8,), "gain_h": (8,), "gain_c": (2,), "bias_c": (2,)}),
                                        (GRUCell, {"gain_x": (6,), "gain_h": (6,)})])
@pytest.mark.parametrize("bias", [True, False])
def test_registry_lists_the_layer_norm_parameters(cls, extra, bias):
    cell = cls(3, 2, bias=bias, layer_norm=True)
    shapes = cls.parameter_shapes(3, 2, bias, layer_norm=True)
    assert {n: p.shape for n, p in cell.named_parameters()} == shapes
    assert list(shapes) == [n for n, _ in cell.named_parameters()]
    want = {k: v for k, v in extra.items() if bias or k != "bias_c"}
    assert {k: shapes[k] for k in want} == want
    assert cls.parameter_shapes(3, 2, bias) == {n: p.shape for n, p in cls(3, 2, bias=bias).named_parameters()}
    for name in want:
        expected = 0.0 if name == "bias_c" else 1.0  # gains start at 1, the cell-state shift at 0
        assert np.all(getattr(cell, name).data == expected), name


def test_lstm_cell_steps_follow_the_equations():
    cell = perturbed(LSTMCell(3, 4, layer_norm=True))
    rng = np.random.default_rng(0)
    x, h, c = rng.normal(size=(5, 2, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    p = {n: q.data for n, q in cell.named_parameters()}
    hs, cs = naive_ln_lstm(x, p, h, c)
    state = (mr.Tensor(h), mr.Tensor(c))
    for t in range(5):
        state = cell(mr.Tensor(x[t]), state)
        np.testing.assert_allclose(state[0].data, hs[t], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state[1].data, cs[t], rtol=1e-12, atol=1e-12)


def test_gru_cell_steps_follow_the_equations():
    cell = perturbed(GRUCell(3, 4, layer_norm=True))
    rng = np.random.default_rng(0)
    x, h = rng.normal(size=(5, 2, 3)), rng.normal(size=(2, 4))
    hs = naive_ln_gru(x, {n: q.data for n, q in cell.named_parameters()}, h)
    state = mr.Tensor(h)
    for t in range(5):
        state = cell(mr.Tensor(x[t]), state)
        np.testing.assert_allclose(state.data, hs[t], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell])
def test_zero_state_is_the_same_as_no_state(cls):
    """LN(0 W^T) = 0: the shortcut for a missing state gives the numbers of an explicit zero state."""
    cell = perturbed(cls(3, 4, layer_norm=True))
    x = mr.Tensor(np.random.default_rng(2).normal(size=(2, 3)))
    zero = mr.Tensor(np.zeros((2, 4)))
    a = cell(x, None)
    b = cell(x, (zero, zero) if cls is LSTMCell else zero)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        np.testing.assert_allclose(u.data, v.data, rtol=0, atol=1e-15)


def test_layers_pass_layer_norm_to_every_cell_and_index_inputs_match_one_hot():
    for layer in (LSTM(5, 3, num_layers=2, bidirectional=True, layer_norm=True),
                  GRU(5, 3, num_layers=2, bidirectional=True, layer_norm=True)):
        assert all(c.layer_norm for c in layer.cells + layer.reverse_cells)
        perturbed(layer)
        idx = np.random.default_rng(0).integers(0, 5, (4, 2))
        out_idx = layer(idx)[0].data
        out_hot = layer(np.eye(5)[idx])[0].data
        np.testing.assert_allclose(out_idx, out_hot, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", ["rnn", CELLS["lstm"]])
def test_layer_norm_is_refused_for_rnn_and_user_cells(cell):
    with pytest.raises(ValueError, match="layer_norm=True needs cell='lstm' or 'gru'"):
        SequenceModel(3, 4, 5, cell=cell, layer_norm=True)


def test_config_rebuilds_a_layer_norm_model():
    model = SequenceModel(3, 4, 5, cell="gru", layer_norm=True)
    assert model.config["layer_norm"] is True
    again = SequenceModel(**{k: v for k, v in model.config.items() if k != "dtype"})
    assert [n for n, _ in again.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert SequenceModel(3, 4, 5, cell="gru").config["layer_norm"] is False


def test_interop_refuses_layer_norm_cells():
    from micrornn.interop import torch_state_dict
    with pytest.raises(TypeError, match="has no layer norm"):
        torch_state_dict(SequenceModel(3, 4, 5, cell="lstm", layer_norm=True))
    with pytest.raises(TypeError, match="has no layer norm"):
        torch_state_dict(GRUCell(3, 4, layer_norm=True))


def ln_problem(cell, seed=0, T=4, bidirectional=True, layers=2, bias=True, batch=2):
    """A perturbed float64 LN model (input 3, hidden 4, output 3), x, targets, random h0 and lengths."""
    rng = np.random.default_rng(seed)
    model = SequenceModel(3, 4, 3, num_layers=layers, cell=cell, bidirectional=bidirectional, bias=bias,
                          layer_norm=True, rng=rng)
    x, targets = rng.standard_normal((T, batch, 3)), rng.integers(0, 3, (T, batch))
    shape = ((2 if bidirectional else 1) * layers, batch, 4)
    h0 = tuple(rng.uniform(-0.5, 0.5, shape) for _ in CELLS[cell].state_names)
    lengths = np.array([T] + [max(1, T - 2 - k) for k in range(batch - 1)])
    return perturbed(model, seed), x, targets, h0 if len(h0) == 2 else h0[0], lengths


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_graph_gradients_match_central_differences(cell):
    model, x, targets, h0, lengths = ln_problem(cell)
    _, graph = routes.route_grads(model, x, targets, h0, fused=False, lengths=lengths)
    numeric = routes.numeric_grads(model, x, targets, h0, lengths=lengths)
    assert list(graph) == [n for n, _ in model.named_parameters()]
    for name in graph:
        excess = np.abs(graph[name] - numeric[name]) - (1e-5 + 1e-3 * np.abs(numeric[name]))
        assert excess.max() <= 0, name


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_to_torch_gives_the_same_outputs_and_gradients(cell):
    torch = pytest.importorskip("torch", reason="to_torch needs torch (optional)")
    from micrornn.interop import to_torch
    model = perturbed(SequenceModel(5, 4, 5, num_layers=2, cell=cell, layer_norm=True, rng=np.random.default_rng(0)))
    x = np.random.default_rng(1).standard_normal((3, 2, 5))
    exported = to_torch(model)
    logits = exported(torch.from_numpy(x))[0]
    np.testing.assert_allclose(logits.detach().numpy(), model(x)[0].data, rtol=1e-12, atol=1e-13)
    logits.sum().backward()
    model(x)[0].sum().backward()
    torch_grads = dict(exported.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(torch_grads[name].grad.numpy(), p.grad, rtol=1e-10, atol=1e-12, err_msg=name)
