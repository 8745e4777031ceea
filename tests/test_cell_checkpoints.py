"""Checkpoints record the cell kind: every kind rebuilds from its meta, old checkpoints load as 'rnn'."""
import numpy as np
import pytest

import micrornn as mr
from micrornn.nn import SequenceModel
from micrornn.train.checkpoint import CheckpointError, save_checkpoint
from micrornn.train.data import Vocab
from micrornn.train.sample import CHECKPOINT_KIND, load_model, model_from_meta, sample

VOCAB = Vocab("hello world\n")


def write(path, model, drop=()):
    config = {k: v for k, v in model.config.items() if k not in drop}
    meta = {"kind": CHECKPOINT_KIND, "model": config, "vocab": VOCAB.to_list()}
    save_checkpoint(path, model.state_dict(), meta)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_every_cell_kind_round_trips_through_a_checkpoint(tmp_path, kind):
    V = len(VOCAB)
    model = SequenceModel(V, 6, V, num_layers=2, cell=kind, rng=0)
    write(tmp_path / "ck.npz", model)
    loaded, vocab, meta = load_model(tmp_path / "ck.npz")
    assert type(loaded.rnn) is type(model.rnn) and meta["model"]["cell"] == kind
    x = mr.Tensor(VOCAB.encode("hello").reshape(-1, 1))
    np.testing.assert_array_equal(loaded(x)[0].data, model(x)[0].data)
    text = sample(loaded, vocab, length=12, prime="he", rng=0)  # the LSTM carries an (h, c) state
    assert text.startswith("he") and len(text) == 14


def test_checkpoint_without_a_cell_kind_loads_as_the_vanilla_rnn(tmp_path):
    V = len(VOCAB)
    model = SequenceModel(V, 5, V, rng=0)
    write(tmp_path / "old.npz", model, drop=("cell", "bidirectional", "dropout"))  # as written before cells
    loaded, _, meta = load_model(tmp_path / "old.npz")
    assert "cell" not in meta["model"] and loaded.rnn.cell_kind == "rnn"
    assert all(np.array_equal(a.data, b.data) for a, b in zip(loaded.parameters(), model.parameters()))


def test_unknown_cell_kind_is_a_checkpoint_error():
    meta = {"kind": CHECKPOINT_KIND, "vocab": VOCAB.to_list(),
            "model": dict(SequenceModel(len(VOCAB), 4, len(VOCAB), rng=0).config, cell="transformer")}
    with pytest.raises(CheckpointError, match="cell must be one of"):
        model_from_meta(meta)
