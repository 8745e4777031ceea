"""micrornn.interop: PyTorch key names, exact round trips, gradients in PyTorch's layout, and (when
torch happens to be installed) agreement with torch.nn.RNN/LSTM/GRU."""
import numpy as np
import pytest

import micrornn as mr
from micrornn.interop import load_torch_state_dict, torch_state_dict
from micrornn.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, Linear, Module, Recurrent, SequenceModel

from torch_reference import torch_forward, torch_params

LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def test_key_names_follow_pytorch():
    model = SequenceModel(3, 4, 5, num_layers=2, cell="gru", bidirectional=True, rng=0)
    keys = list(torch_state_dict(model))
    stems = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    want = [f"rnn.{s}_l{l}{d}" for l in range(2) for d in ("", "_reverse") for s in stems]
    assert keys == want + ["head.weight", "head.bias"]
    sd = torch_state_dict(model)
    assert sd["rnn.weight_ih_l1_reverse"].shape == (12, 8) and sd["rnn.bias_hh_l0"].shape == (12,)
    assert list(torch_state_dict(LSTM(3, 4, bias=False))) == ["weight_ih_l0", "weight_hh_l0"]
    assert list(torch_state_dict(LSTMCell(3, 4))) == stems


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_export_matches_pytorch_equations(kind):
    # the exported dict, read by PyTorch's equations (NumPy re-derivation), gives the model's outputs
    rng = np.random.default_rng(2)
    layer = LAYERS[kind](3, 4, 2, bidirectional=True, rng=rng)
    x = rng.standard_normal((5, 2, 3))
    out, final = layer(mr.Tensor(x))
    ref = torch_forward(kind, torch_state_dict(layer), x, 2, 2)
    np.testing.assert_allclose(out.data, ref[0], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose((final[0] if kind == "lstm" else final).data, ref[1], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_import_of_pytorch_weights_computes_pytorch_outputs(kind):
    rng = np.random.default_rng(5)
    p = torch_params(kind, 3, 4, 2, 2, rng)  # b_ih and b_hh both nonzero, as PyTorch initialises them
    layer = LAYERS[kind](3, 4, 2, bidirectional=True, rng=0)
    load_torch_state_dict(layer, p)
    x = rng.standard_normal((6, 3, 3))
    out, _ = layer(mr.Tensor(x))
    np.testing.assert_allclose(out.data, torch_forward(kind, p, x, 2, 2)[0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_round_trip_is_exact(kind, bias):
    a = SequenceModel(3, 4, 5, 2, cell=kind, bidirectional=True, bias=bias, rng=1)
    b = SequenceModel(3, 4, 5, 2, cell=kind, bidirectional=True, bias=bias, rng=2)
    load_torch_state_dict(b, torch_state_dict(a))
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(pa.data, pb.data), name
    again = torch_state_dict(b)
    for k, v in torch_state_dict(a).items():
        assert np.array_equal(v, again[k]), k


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_gradients_in_pytorch_layout_match_finite_differences(kind):
    # L(P) of PyTorch-layout parameters P (NumPy equations); torch_state_dict(grad=True) must be dL/dP,
    # including bias_hh, whose gradient is not zero although its exported value is
    rng = np.random.default_rng(7)
    I, H, L, D, T, B = 2, 2, 2, 2, 2, 1
    x, w = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, D * H))
    p = torch_params(kind, I, H, L, D, rng)
    layer = LAYERS[kind](I, H, L, bidirectional=True)
    load_torch_state_dict(layer, p)
    out, _ = layer(mr.Tensor(x))
    (out * mr.Tensor(w)).sum().backward()
    grads = torch_state_dict(layer, grad=True)
    assert list(grads) == list(p)
    eps = 1e-6
    for key, value in p.items():
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            old = value[i]
            value[i] = old + eps
            up = np.sum(torch_forward(kind, p, x, L, D)[0] * w)
            value[i] = old - eps
            down = np.sum(torch_forward(kind, p, x, L, D)[0] * w)
            value[i] = old
            numeric[i] = (up - down) / (2 * eps)
        assert np.all(np.abs(grads[key] - numeric) <= 1e-5 + 1e-3 * np.abs(numeric)), key


class Custom(Module):
    hidden_size = 2

    def forward(self, x, h):
        return x + h


def test_bad_state_dicts_are_refused_whole():
    model = SequenceModel(3, 4, 5, cell="lstm", rng=0)
    before = model.state_dict()
    good = torch_state_dict(SequenceModel(3, 4, 5, cell="lstm", rng=1))
    bad = dict(good, extra_key=np.zeros(2))
    del bad["rnn.bias_hh_l0"]
    bad["head.weight"] = np.zeros((5, 3))
    with pytest.raises(ValueError) as err:
        load_torch_state_dict(model, bad)
    message = str(err.value)
    for part in ("missing rnn.bias_hh_l0", "unexpected extra_key",
                 "wrong shape for head.weight: expected (5, 4), got (5, 3)", "nothing was loaded"):
        assert part in message
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), f"{k} changed although the load was refused"
    with pytest.raises(TypeError, match="expected a SequenceModel, an RNN/LSTM/GRU layer"):
        torch_state_dict(Linear(2, 3))
    with pytest.raises(TypeError, match="PyTorch has no layout for a Custom"):
        torch_state_dict(Recurrent(Custom()))
    assert list(torch_state_dict(Recurrent(GRUCell(2, 3)))) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                                 "bias_hh_l0"]
    with pytest.raises(ValueError, match=r"U has no gradient; run backward first"):
        torch_state_dict(GRUCell(2, 3), grad=True)


def test_float32_model_loads_float64_arrays_in_its_own_dtype():
    model = SequenceModel(3, 4, 5, cell="gru", dtype=np.float32, rng=0)
    load_torch_state_dict(model, torch_state_dict(SequenceModel(3, 4, 5, cell="gru", rng=1)))
    assert all(p.dtype == np.float32 for p in model.parameters())


# ------------------------------------------------------------------- against torch, when installed

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_against_torch_outputs_and_gradients(kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    I, H, L, O, T, B = 3, 4, 2, 5, 6, 2
    layer_type = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    t_model = torch.nn.Module()
    t_model.rnn = layer_type(I, H, L, bidirectional=True, dtype=torch.float64)
    t_model.head = torch.nn.Linear(2 * H, O, dtype=torch.float64)
    model = SequenceModel(I, H, O, L, cell=kind, bidirectional=True, rng=0)
    load_torch_state_dict(model, t_model.state_dict())

    rng = np.random.default_rng(0)
    x, targets = rng.standard_normal((T, B, I)), rng.integers(0, O, (T, B))
    h0 = rng.standard_normal((2 * L, B, H))
    c0 = rng.standard_normal((2 * L, B, H))
    t_state = (torch.tensor(h0), torch.tensor(c0)) if kind == "lstm" else torch.tensor(h0)
    t_out, t_final = t_model.rnn(torch.tensor(x), t_state)
    t_logits = t_model.head(t_out)
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, O), torch.tensor(targets).reshape(-1),
                                               reduction="sum")
    t_loss.backward()

    state = (mr.Tensor(h0), mr.Tensor(c0)) if kind == "lstm" else mr.Tensor(h0)
    loss, final = model.loss(mr.Tensor(x), targets, state)
    loss.backward()
    assert abs(loss.item() - t_loss.item()) <= 1e-12 * abs(t_loss.item())
    t_h = t_final[0] if kind == "lstm" else t_final
    np.testing.assert_allclose((final[0] if kind == "lstm" else final).data, t_h.detach().numpy(), rtol=1e-12)
    ours = torch_state_dict(model, grad=True)
    for name, param in t_model.named_parameters():
        np.testing.assert_allclose(ours[name], param.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)

    # and back: micrornn's export loaded into torch computes the same
    other = SequenceModel(I, H, O, L, cell=kind, bidirectional=True, rng=3)
    t_model.load_state_dict({k: torch.from_numpy(v) for k, v in torch_state_dict(other).items()})
    np.testing.assert_allclose(t_model.head(t_model.rnn(torch.tensor(x))[0]).detach().numpy(),
                               other(mr.Tensor(x))[0].data, rtol=1e-12, atol=1e-13)
