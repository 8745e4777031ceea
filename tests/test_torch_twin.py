"""benchmarks/torch_same_time.py: the PyTorch twin follows micrornn's recipe (same function, same masks' shapes,
gate-bias block, decay groups, the same windows)."""
import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch twin needs torch")

from micrornn.interop import torch_state_dict  # noqa: E402
from micrornn.nn import SequenceModel  # noqa: E402
from micrornn.train import evaluate, windowed_loss  # noqa: E402

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "torch_same_time.py"
_spec = importlib.util.spec_from_file_location("torch_same_time", _PATH)
twin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(twin)

V, H = 7, 5
IDS = np.random.default_rng(0).integers(0, V, size=300)


def config(cell="lstm", **recipe):
    base = dict(cell=cell, hidden_size=H, num_layers=2, dropout=0.0, weight_decay=0.0, gate_bias=0.0, ema=0.0,
                lr=1e-2)
    return SimpleNamespace(**{**base, **recipe})


def twin_of(model, cell, **recipe):
    """The torch twin holding the micrornn model's weights (rnn.*_l{l} -> layers.{l}.*_l0)."""
    t = twin.torch_model(torch, config(cell, **recipe), V)
    state = {}
    for key, array in torch_state_dict(model).items():
        m = re.fullmatch(r"rnn\.(\w+)_l(\d+)", key)
        state[f"layers.{m.group(2)}.{m.group(1)}_l0" if m else key] = torch.tensor(array, dtype=torch.float32)
    t.load_state_dict(state)
    return t


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_twin_computes_micrornn_s_function_stream_and_windows(cell):
    model = SequenceModel(V, H, V, num_layers=2, cell=cell, fused=True, rng=1)
    t = twin_of(model, cell)
    np.testing.assert_allclose(twin.torch_evaluate(torch, t, IDS, V), evaluate(model, IDS), rtol=1e-5)
    np.testing.assert_allclose(twin.torch_windowed(torch, t, IDS, V, 20, 11, 3, batch=4),
                               windowed_loss(model, IDS, 20, 11, 3), rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gate_bias_goes_to_block_1_of_b_ih_and_zero_in_b_hh(cell):
    t = twin.torch_model(torch, config(cell, gate_bias=2.0), V)
    for m in t.layers:
        assert torch.all(m.bias_ih_l0[H:2 * H] == 2.0) and torch.all(m.bias_hh_l0[H:2 * H] == 0.0)
        assert not torch.any(m.bias_ih_l0[:H] == 2.0)


@pytest.mark.parametrize("locked,shapes", [(False, [(9, 3, 1), (9, 3, H), (9, 3, H)]),
                                           (True, [(1, 3, V), (1, 3, H), (1, 3, H)])])
def test_dropout_masks_have_the_recipe_s_shapes(monkeypatch, locked, shapes):
    t = twin.torch_model(torch, config("gru", dropout=0.3, input_dropout=0.2, output_dropout=0.4,
                                       locked_dropout=locked), V)
    seen, rand = [], torch.rand
    monkeypatch.setattr(torch, "rand", lambda shape: seen.append(tuple(shape)) or rand(shape))
    t(torch.from_numpy(IDS[:27].reshape(9, 3)))
    assert seen == shapes
    seen.clear()
    t.eval()
    t(torch.from_numpy(IDS[:27].reshape(9, 3)))
    assert seen == []  # no dropout while evaluating


def test_adamw_groups_decay_matrices_only_and_the_average_swaps_back():
    t = twin.torch_model(torch, config("lstm", weight_decay=0.1), V)
    opt = twin.torch_optimizer(torch, t, config("lstm", weight_decay=0.1))
    assert isinstance(opt, torch.optim.AdamW)
    decays = {p.ndim >= 2: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {True: 0.1, False: 0.0}
    avg = twin.TorchAverage(torch, t, 0.5)
    before = [p.detach().clone() for p in t.parameters()]
    with torch.no_grad():
        for p in t.parameters():
            p.add_(1.0)
    avg.update(100)  # past the warm-up: d = min(0.5, 101/110) = 0.5
    inside = avg.evaluate(lambda: [p.detach().clone() for p in t.parameters()])
    for b, p, i in zip(before, t.parameters(), inside):
        torch.testing.assert_close(i, b + 0.5)  # 0.5 * old + 0.5 * (old + 1)
        torch.testing.assert_close(p.detach(), b + 1.0)


def test_the_twin_s_average_follows_micrornn_s_warm_up():
    from micrornn.train.ema import WeightAverage
    model = SequenceModel(V, H, V, num_layers=2, cell="gru", rng=0)
    t = twin_of(model, "gru")
    ours, theirs = WeightAverage(model, 0.99), twin.TorchAverage(torch, t, 0.99)
    for step in range(1, 6):
        for p in model.parameters():
            p.data += 0.01 * step
        with torch.no_grad():
            for p in t.parameters():
                p.add_(0.01 * step)
        ours.update(step)
        theirs.update(step)
    got = dict(zip((n for n, _ in t.named_parameters()), theirs.avg))
    np.testing.assert_allclose(got["head.weight"].numpy(), ours.average["head.weight"], rtol=1e-5, atol=1e-6)


def test_a_preset_refuses_recipe_options_and_the_twin_refuses_what_it_cannot_build(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["torch_same_time.py", "--preset", "gru", "--ema", "0.9"])
    with pytest.raises(SystemExit) as done:
        twin.options()
    assert done.value.code == 2 and "drop --ema" in capsys.readouterr().err
    plain = dict(layer_norm=False, nonlinearity="tanh", dtype="float32", optimizer="adamw", cell="gru")
    for field, value, words in (("layer_norm", True, "layer_norm"), ("nonlinearity", "relu", "nonlinearity relu"),
                                ("dtype", "float64", "dtype float64"), ("optimizer", "sgd", "optimizer sgd"),
                                ("cell", "mycells:MGU", "cell mycells:MGU")):
        with pytest.raises(SystemExit, match=words):
            twin.check_twin_can_follow(SimpleNamespace(**{**plain, field: value}))
    twin.check_twin_can_follow(SimpleNamespace(**plain))


@pytest.mark.parametrize("argv", [["--seconds", "-5"], ["--cell", "rnn", "--gate-bias", "1"],
                                  ["--preset", "gru", "--seconds", "-3"]])
def test_nonsensical_twin_options_exit_2_with_one_line(monkeypatch, capsys, argv):
    monkeypatch.setattr("sys.argv", ["torch_same_time.py", "--only", "torch", *argv])
    with pytest.raises(SystemExit) as done:
        twin.run_config(twin.options())
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1 and "error:" in err, err


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_twin_trains_micrornn_s_biases_only(cell):
    # PyTorch's b_hh rows that only add to b_ih would give the twin a second, faster-moving copy of each bias
    # (and a wider initial sum): they start at 0 and get no gradient, so both sides train the same parameters
    t = twin.torch_model(torch, config(cell, weight_decay=0.1), V)
    rows = twin.redundant_bias_rows(cell, H)
    opt = twin.torch_optimizer(torch, t, config(cell, weight_decay=0.1))
    for _ in range(3):
        opt.zero_grad()
        out, _ = t(torch.randint(0, V, (6, 3)))
        out.square().sum().backward()
        opt.step()
    for layer in t.layers:
        assert (layer.bias_hh_l0[:rows] == 0).all() and (layer.bias_ih_l0 != 0).all()
        if cell == "gru":  # b_hn, which the reset gate scales, is trained: micrornn's own b_hn
            assert (layer.bias_hh_l0[rows:] != 0).all()
    trained = sum(p.numel() for p in t.parameters()) - rows * len(t.layers)
    assert trained == SequenceModel(V, H, V, num_layers=2, cell=cell).num_parameters()
