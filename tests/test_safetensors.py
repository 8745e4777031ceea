"""safetensors weight files: `micrornn export` writes PyTorch's layout, interop.load_safetensors reads it back;
checked against torch modules where torch is installed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from micrornn import interop, nn
from micrornn.cli import main
from micrornn.train.sample import load_model

pytest.importorskip("safetensors", reason="safetensors is an optional extra")

TINY = ["--hidden-size", "6", "--layers", "2", "--seq-len", "8", "--batch-size", "2", "--val-every", "0",
        "--sample-every", "0", "--dtype", "float64", "--quiet", "--no-plot", "--steps", "2"]


def torch_twin(torch, config):
    """torch.nn.RNN/LSTM/GRU plus a Linear head with the module names rnn and head."""
    layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[config["cell"]]
    extra = {"nonlinearity": config["nonlinearity"]} if config["cell"] == "rnn" else {}
    directions = 2 if config["bidirectional"] else 1

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = layer(config["input_size"], config["hidden_size"], config["num_layers"],
                             bidirectional=config["bidirectional"], **extra)
            self.head = torch.nn.Linear(directions * config["hidden_size"], config["output_size"])

        def forward(self, x):
            return self.head(self.rnn(x)[0])
    return Twin().double()


def logits_of_both(torch, model, twin, ids, vocab_size):
    ours = model(ids)[0].data
    theirs = twin(torch.from_numpy(np.eye(vocab_size)[ids])).detach().numpy()
    return ours, theirs


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_export_loads_into_torch_with_equal_outputs(tmp_path, corpus, cell, capsys):
    torch = pytest.importorskip("torch", reason="torch is needed only to check the file from PyTorch's side")
    from safetensors.torch import load_file
    ck, out = tmp_path / "ck.npz", tmp_path / "weights.safetensors"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(ck), "--cell", cell, *TINY]) == 0
    assert main(["export", "--checkpoint", str(ck), "--safetensors", str(out)]) == 0
    assert "PyTorch's key layout" in capsys.readouterr().out
    model, vocab, meta = load_model(ck)
    twin = torch_twin(torch, meta["model"])
    twin.load_state_dict(load_file(str(out)))  # strict: every key present, none extra
    ids = np.random.default_rng(0).integers(0, len(vocab), (7, 3))
    ours, theirs = logits_of_both(torch, model, twin, ids, len(vocab))
    np.testing.assert_allclose(theirs, ours, rtol=1e-10, atol=1e-12)
    from safetensors import safe_open
    with safe_open(str(out), framework="np") as f:
        assert json.loads(f.metadata()["micrornn_model"])["cell"] == cell
        assert json.loads(f.metadata()["vocab"]) == vocab.to_list()


@pytest.mark.parametrize("cell,bidirectional", [("rnn", False), ("lstm", True), ("gru", False)])
def test_torch_weights_come_back_through_load_safetensors(tmp_path, cell, bidirectional):
    torch = pytest.importorskip("torch", reason="torch is needed only to make the file on PyTorch's side")
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = nn.SequenceModel(5, 4, 5, num_layers=2, cell=cell, bidirectional=bidirectional)
    twin = torch_twin(torch, model.config)
    path = tmp_path / "from_torch.safetensors"
    save_file(twin.state_dict(), str(path), metadata={"source": "torch"})
    assert interop.load_safetensors(model, path) == {"source": "torch"}
    ids = np.random.default_rng(1).integers(0, 5, (6, 2))
    ours, theirs = logits_of_both(torch, model, twin, ids, 5)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_round_trip_without_torch(tmp_path):
    a = nn.SequenceModel(4, 3, 4, num_layers=2, cell="gru", rng=np.random.default_rng(0))
    b = nn.SequenceModel(4, 3, 4, num_layers=2, cell="gru", rng=np.random.default_rng(1))
    interop.save_safetensors(a, tmp_path / "a.safetensors", metadata={"note": "x"})
    interop.load_safetensors(b, tmp_path / "a.safetensors")
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)


def test_a_mismatched_file_loads_nothing(tmp_path):
    small = nn.SequenceModel(4, 3, 4, cell="lstm")
    other = nn.SequenceModel(4, 5, 4, cell="lstm")
    before = [p.data.copy() for p in other.parameters()]
    interop.save_safetensors(small, tmp_path / "s.safetensors")
    with pytest.raises(ValueError, match="wrong shape.*nothing was loaded"):
        interop.load_safetensors(other, tmp_path / "s.safetensors")
    assert all(np.array_equal(p.data, q) for p, q in zip(other.parameters(), before))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        interop.load_safetensors(other, tmp_path / "junk.safetensors")


def test_export_refusals(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "none.npz"), "--safetensors", str(tmp_path / "o")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    existing = tmp_path / "o.safetensors"
    existing.write_bytes(b"keep me")
    assert main(["export", "--checkpoint", str(tmp_path / "none.npz"), "--safetensors", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_bytes() == b"keep me"
