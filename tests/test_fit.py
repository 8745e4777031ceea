"""train.fit: the generic truncated-BPTT loop on a user's own cell, with the state carried and cut."""
from __future__ import annotations

import json

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.nn import functional as F
from micrornn.nn.optim import SGD, Adam
from micrornn.train import fit
from micrornn.train.loop import TruncatedBPTT
from micrornn.train.metrics import MetricsLog, read_log

V, H = 5, 8


class MinimalCell(nn.Module):
    """A user cell: h' = tanh(x Wx + h Wh + b)."""

    def __init__(self, input_size, hidden_size, rng):
        self.hidden_size = hidden_size
        self.Wx = nn.Parameter(rng.standard_normal((input_size, hidden_size)) * 0.5)
        self.Wh = nn.Parameter(rng.standard_normal((hidden_size, hidden_size)) * 0.3)
        self.b = nn.Parameter(np.zeros(hidden_size))

    def forward(self, x, h):
        return (x @ self.Wx + h @ self.Wh + self.b).tanh()


class Tagger(nn.Module):
    """ids (T, B) -> logits (T, B, V) through the user cell, carrying its state."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.rec = nn.Recurrent(MinimalCell(V, H, rng))
        self.head = nn.Linear(H, V, rng=rng)

    def forward(self, x, state=None):
        out, final = self.rec(F.one_hot(x, V), state)
        return self.head(out), final


def chunks(ids, seq_len, batch):
    """Consecutive (x, y) chunks of `batch` parallel streams of the id sequence."""
    streams = np.stack([np.roll(ids, 3 * b) for b in range(batch)], axis=1)  # (N, B)
    for s in range(0, len(ids) - seq_len - 1, seq_len):
        yield streams[s:s + seq_len], streams[s + 1:s + seq_len + 1]


def test_fit_trains_a_user_cell_with_carried_state():
    ids = np.tile(np.array([0, 1, 2, 3, 4, 3, 2, 1]), 200)  # next id depends on more than the current one
    model = Tagger()
    seen = []
    result = fit(model, chunks(ids, 6, 4), Adam(model.parameters(), lr=0.05), steps=150, progress=False,
                 callbacks=[lambda info: seen.append(info.state)])
    assert result.steps == 150 and result.stopped_by == "steps"
    assert np.mean(result.losses[-10:]) < 0.25 * np.mean(result.losses[:10])
    assert all(s.is_leaf and not s.requires_grad for s in seen)  # the carried state is cut from the graph
    assert not np.allclose(seen[-1].data, 0)


def test_state_is_carried_and_the_gradient_spans_detach_every_chunks():
    ids = np.random.default_rng(1).integers(0, V, 200)
    batches = list(chunks(ids, 5, 3))[:4]
    model, reference = Tagger(seed=2), Tagger(seed=2)
    lr = 0.1
    fit(model, iter(batches), SGD(model.parameters(), lr=lr), steps=2, clip=None, detach_every=2, progress=False)

    # by hand: update 1 back-propagates through chunks 0 and 1 (state carried, not cut between them);
    # update 2 starts chunk 2 from chunk 1's final state, cut from the graph
    state = None
    for first in (0, 2):
        losses = []
        for k in (first, first + 1):
            logits, state = reference(*batches[k][:1], state)
            losses.append(F.cross_entropy(logits.reshape(-1, V), batches[k][1].reshape(-1)))
        params = reference.parameters()
        grads = mr.grad((losses[0] + losses[1]) * 0.5, params)
        with mr.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g.data
        state = state.detach()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14, err_msg=name)


def test_callbacks_clipping_schedule_and_metrics_log(tmp_path):
    ids = np.random.default_rng(4).integers(0, V, 400)
    model = Tagger()
    log_path = tmp_path / "fit.jsonl"
    infos = []
    with MetricsLog(log_path) as metrics:
        result = fit(model, chunks(ids, 4, 2), SGD(model.parameters(), lr=0.1), clip=1e-3, progress=False,
                     lr_schedule=lambda step: 0.1 / (step + 1), metrics=metrics, log_every=2,
                     callbacks=[infos.append, lambda info: info.step == 7])
    assert result.steps == 7 and result.stopped_by == "callback" and len(result.losses) == 7
    assert [i.lr for i in infos] == pytest.approx([0.1 / (k + 1) for k in range(7)])
    assert all(i.grad_norm > 1e-3 for i in infos)  # the norm before clipping is reported
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert {"loss", "lr", "grad_norm", "chars_per_sec", "seconds"} <= set(records[0])
    assert read_log(log_path)["loss"] == pytest.approx([infos[k].loss for k in (1, 3, 5)], rel=1e-5)


def test_clipping_limits_the_update():
    ids = np.random.default_rng(5).integers(0, V, 100)
    x, y = next(chunks(ids, 5, 2))
    model = Tagger()
    before = [p.data.copy() for p in model.parameters()]
    loop = TruncatedBPTT(model, SGD(model.parameters(), lr=1.0), clip=0.01)
    loss, norm = loop.step(x, y)
    step = np.sqrt(sum(((p.data - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert norm > 0.01 and step == pytest.approx(0.01, rel=1e-9)


def test_fit_on_a_sequence_model_uses_its_loss_and_runs_out_of_data():
    model = nn.SequenceModel(V, H, V, cell="gru", rng=np.random.default_rng(0))
    ids = np.random.default_rng(6).integers(0, V, 60)
    result = fit(model, chunks(ids, 5, 2), Adam(model.parameters(), lr=0.01), progress=False)
    assert result.stopped_by == "data" and result.steps == len(list(chunks(ids, 5, 2)))
    assert result.state.shape == (1, 2, H)


def test_bad_arguments():
    model = Tagger()
    with pytest.raises(ValueError, match="detach_every"):
        fit(model, [], SGD(model.parameters(), lr=0.1), detach_every=0)
    with pytest.raises(TypeError, match="optimizer is missing"):
        fit(model, [])
