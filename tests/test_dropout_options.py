"""Input, output and locked (variational) dropout: mask shapes and scaling, eval() switches them off,
fused = unrolled = compiled for one seed, gradients through a fixed mask, user cells, checkpoints,
exact resume, and the `micrornn train` options."""
import subprocess
import sys

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.cli import main
from micrornn.nn import Module, Parameter, Recurrent, SequenceModel
from micrornn.nn import functional as F
from micrornn.train import TrainConfig, Trainer
from micrornn.train.checkpoint import save_checkpoint
from micrornn.train.data import Vocab
from micrornn.train.sample import CHECKPOINT_KIND, load_model

from user_cells import MGU

TEXT = ("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n"
        "And all the clouds that lour'd upon our house\n") * 6
V = 11


class Minimal(MGU):
    """The shared user MGU seeded by its input size: the weights the gradient check below runs on."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size, rng=input_size)


class Recorder(Module):
    """A cell that remembers every input it is given and outputs ones (to see the masks it receives)."""

    def __init__(self, input_size, hidden_size):
        self.hidden_size, self.seen = hidden_size, []
        self.w = Parameter(np.zeros(1))

    def forward(self, x, h):
        self.seen.append(x.data.copy())
        return h * 0.0 + 1.0 + self.w


def batch(T=6, B=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))


OPTIONS = {"input": dict(input_dropout=0.4), "input locked": dict(input_dropout=0.4, locked_dropout=True),
           "output": dict(output_dropout=0.3), "output locked": dict(output_dropout=0.3, locked_dropout=True),
           "all locked": dict(dropout=0.3, input_dropout=0.2, output_dropout=0.3, locked_dropout=True)}


# ---- the masks ----------------------------------------------------------------------------------
def test_locked_masks_repeat_over_time_and_differ_across_sequences_and_features():
    mr.manual_seed(0)
    y = F.locked_dropout(np.ones((7, 40, 30)), 0.5).data
    assert (y == y[:1]).all()  # the same zero pattern at every t
    assert len({row.tobytes() for row in y[0]}) == 40  # each sequence its own draw
    assert 0 < (y[0] == 0).mean() < 1 and not (y[0] == 0).all(axis=0).any()  # features drawn independently
    plain = F.dropout(np.ones((7, 40, 30)), 0.5).data
    assert not (plain == plain[:1]).all()  # ordinary dropout: a new draw at every step


def test_masks_scale_the_survivors_and_keep_the_expectation():
    mr.manual_seed(1)
    p, n = 0.3, 200_000
    for shared in [(), (0,), (-1,)]:
        x = np.ones((4, n // 4, 5)) if shared != (0,) else np.ones((3, n, 1))
        y = F.dropout(x, p, shared_axes=shared).data
        assert set(np.unique(y)) == {0.0, 1 / (1 - p)}  # dropped, or kept and scaled by 1/(1-p)
        draws = y.size // (x.shape[shared[0]] if shared else 1)
        assert abs(y.mean() - 1) < 5 * np.sqrt(p / (1 - p) / draws)  # E[mask] = 1 within 5 sigma
    whole = F.dropout(np.ones((5, 6, 8)), 0.5, shared_axes=(-1,)).data  # a vector is dropped whole
    assert ((whole == 0).all(axis=-1) | (whole != 0).all(axis=-1)).all()


def test_input_dropout_drops_whole_characters_and_locked_drops_a_character_from_the_sequence():
    x = np.tile(np.arange(V)[:, None], (4, 50))  # every character 4 times in each of 50 sequences
    for locked in (False, True):
        model = SequenceModel(V, 5, V, input_dropout=0.5, locked_dropout=locked, rng=0)
        mr.manual_seed(2)
        rows = model._rnn_input(x).data  # (T, B, V) one-hot rows times the mask
        kept = rows.sum(axis=-1)
        assert set(np.unique(kept)) == {0.0, 2.0}  # a row dropped whole, or kept at 1/(1-p)
        np.testing.assert_array_equal(rows.argmax(-1)[kept > 0], x[kept > 0])
        same_char = kept.reshape(4, V, 50)  # the four occurrences of each character in a sequence
        agree = (same_char == same_char[:1]).all()
        assert agree == locked  # locked: the same character is kept or dropped all through its sequence


def test_between_layer_masks_are_locked_across_time_for_every_layer_class():
    for locked in (False, True):
        rec = Recurrent(Recorder, 3, 40, num_layers=2, dropout=0.5, locked_dropout=locked)
        mr.manual_seed(3)
        rec(np.ones((6, 5, 3)))
        seen = np.stack(rec.cells[1].seen)  # what layer 1 received: dropout(ones)
        assert ((seen == seen[:1]).all()) == locked and (seen == 0).any()
    for layer in (nn.RNN, nn.LSTM, nn.GRU):
        x = np.random.default_rng(0).standard_normal((5, 3, 4))
        net = layer(4, 6, 2, dropout=0.5, locked_dropout=True, rng=0)
        mr.manual_seed(4)
        out, _ = net(x)
        mr.manual_seed(4)
        assert np.array_equal(out.data, net(x)[0].data)  # reproducible from the seed
        assert net.locked_dropout is True
        with pytest.raises(TypeError, match="locked_dropout must be True or False"):
            layer(4, 6, 2, locked_dropout="yes")


def test_output_dropout_zero_pattern_is_locked_across_time():
    model = SequenceModel(V, 8, V, output_dropout=0.5, locked_dropout=True, batch_first=True, rng=0)
    mr.manual_seed(5)
    y = model._output(mr.Tensor(np.ones((3, 9, 8)))).data  # batch first: time is axis 1
    assert (y == y[:, :1]).all() and (y == 0).any()


# ---- eval(), validation, reproducibility -----------------------------------------------------------
@pytest.mark.parametrize("name", list(OPTIONS))
def test_eval_turns_every_dropout_off(name):
    x, y = batch()
    model = SequenceModel(V, 6, V, num_layers=2, cell="lstm", fused=True, rng=0, **OPTIONS[name])
    plain = SequenceModel(V, 6, V, num_layers=2, cell="lstm", fused=True, rng=0)
    train_a, train_b = model.loss(x, y)[0].item(), model.loss(x, y)[0].item()
    assert train_a != train_b  # fresh masks on every call while training
    model.eval()
    assert model.loss(x, y)[0].item() == plain.loss(x, y)[0].item() == model.loss(x, y)[0].item()
    np.testing.assert_array_equal(model(x)[0].data, plain(x)[0].data)


def test_bad_probabilities_and_flags_are_refused_by_name():
    for name in ("input_dropout", "output_dropout"):
        for bad in (1.0, -0.1, True, "0.2"):
            with pytest.raises(ValueError, match=rf"{name} must be a probability in \[0, 1\)"):
                SequenceModel(V, 4, V, **{name: bad})
            with pytest.raises(ValueError, match=name):
                TrainConfig(**{name: bad}).validated()
    with pytest.raises(TypeError, match="locked_dropout must be True or False"):
        SequenceModel(V, 4, V, locked_dropout=1)
    with pytest.raises(ValueError, match="locked_dropout must be true or false"):
        TrainConfig(locked_dropout="yes").validated()
    with pytest.raises(ValueError, match="shared_axes"):
        F.dropout(np.ones((2, 3)), 0.5, shared_axes=(2,))
    with pytest.raises(ValueError, match="locked_dropout .* needs dropout, input_dropout or output_dropout"):
        TrainConfig(locked_dropout=True).validated()  # a flag with no mask to lock is a mistake, not a no-op
    TrainConfig(locked_dropout=True, output_dropout=0.1).validated()


def test_the_analytic_route_refuses_model_dropout_in_training_mode():
    x, y = batch()
    model = SequenceModel(V, 4, V, input_dropout=0.2, rng=0)
    with pytest.raises(ValueError, match=r"input_dropout=0.2 in training mode.*model.eval\(\)"):
        mr.bptt.loss_and_grads(model, x, y)
    model.eval()
    mr.bptt.loss_and_grads(model, x, y)


# ---- fused = unrolled = compiled; gradients ---------------------------------------------------------
def _loss_and_grads(model, fn, x, y, seed):
    model.zero_grad()
    mr.manual_seed(seed)
    loss = fn(x, y)
    loss.backward()
    return loss.item(), {n: p.grad.copy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_fused_unrolled_and_compiled_agree_for_one_seed(cell, name):
    x, y = batch()
    fused = SequenceModel(V, 6, V, num_layers=2, cell=cell, fused=True, rng=0, **OPTIONS[name])
    unrolled = SequenceModel(V, 6, V, num_layers=2, cell=cell, fused=False, rng=0, **OPTIONS[name])
    ref_loss, ref = _loss_and_grads(fused, lambda a, b: fused.loss(a, b, reduction="mean")[0], x, y, 7)
    compiled = mr.compile(lambda a, b: unrolled.loss(a, b, reduction="mean")[0])
    other = _loss_and_grads(fused, lambda a, b: fused.loss(a, b, reduction="mean")[0], x, y, 8)[0]
    assert other != ref_loss  # another seed, other masks
    for fn in (lambda a, b: unrolled.loss(a, b, reduction="mean")[0], compiled, compiled):
        loss, grads = _loss_and_grads(unrolled, fn, x, y, 7)
        assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
        for n in ref:
            np.testing.assert_allclose(grads[n], ref[n], rtol=1e-9, atol=1e-12, err_msg=f"{name} {n}")
    assert "random" in str(compiled.program(x, y))  # masks are drawn on every call, not baked in


@pytest.mark.parametrize("cell", ["rnn", "lstm", Minimal])
def test_gradients_through_a_fixed_mask_match_central_differences(cell):
    rng = np.random.default_rng(3)
    x = mr.Tensor(rng.standard_normal((4, 3, 5)), requires_grad=True)  # float inputs: dropped vectors
    y = rng.integers(0, 5, (4, 3))
    model = SequenceModel(5, 4, 5, num_layers=2, cell=cell, rng=0, dropout=0.3, input_dropout=0.3,
                          output_dropout=0.3, locked_dropout=cell == "lstm")

    def loss(*inputs):
        mr.manual_seed(11)  # the same masks at every evaluation
        return model.loss(x, y)[0]
    assert mr.gradcheck(loss, [x] + model.parameters(), atol=1e-7, rtol=1e-6)


def test_a_user_cell_gets_every_dropout_and_the_same_numbers_as_its_seed():
    x, y = batch()
    model = SequenceModel(V, 5, V, num_layers=2, cell=Minimal, rng=0, **OPTIONS["all locked"])
    plain = SequenceModel(V, 5, V, num_layers=2, cell=Minimal, rng=0)
    mr.manual_seed(9)
    a = model.loss(x, y)[0].item()
    mr.manual_seed(9)
    assert model.loss(x, y)[0].item() == a != plain.loss(x, y)[0].item()
    assert model.rnn.locked_dropout is True and model.config["input_dropout"] == 0.2
    model.eval()
    assert model.loss(x, y)[0].item() == plain.loss(x, y)[0].item()


# ---- checkpoints, resume, the command line -----------------------------------------------------------
def test_the_model_config_rebuilds_the_options_and_old_checkpoints_load_without_them(tmp_path):
    vocab = Vocab("hello world\n")
    model = SequenceModel(len(vocab), 5, len(vocab), num_layers=2, cell="gru", rng=0, **OPTIONS["all locked"])
    for drop, expected in [((), (0.2, 0.3, True)),
                           (("input_dropout", "output_dropout", "locked_dropout"), (0.0, 0.0, False))]:
        meta = {"kind": CHECKPOINT_KIND, "model": {k: v for k, v in model.config.items() if k not in drop},
                "vocab": vocab.to_list()}
        save_checkpoint(tmp_path / "m.npz", model.state_dict(), meta)
        loaded, _, _ = load_model(tmp_path / "m.npz")
        assert (loaded.input_dropout, loaded.output_dropout, loaded.locked_dropout) == expected
        assert loaded.rnn.locked_dropout == expected[2] and loaded.rnn.dropout == 0.3


@pytest.mark.parametrize("fused", [True, False])
def test_a_run_with_the_options_resumes_bit_exact(tmp_path, fused):
    config = TrainConfig(cell="lstm", hidden_size=10, num_layers=2, seq_len=8, batch_size=4, steps=8, val_every=0,
                         sample_every=0, dtype="float64", warmup=0, state_reset=0.0, val_chars=0, fused=fused,
                         input_dropout=0.2, output_dropout=0.3, locked_dropout=True)  # no between-layer dropout
    straight = Trainer(TEXT, config)
    straight.run(progress=False, log=lambda s: None)
    first = Trainer(TEXT, config)
    first.run(progress=False, log=lambda s: None, steps=3, checkpoint=tmp_path / "a.npz")
    resumed = Trainer.resume(tmp_path / "a.npz", TEXT)
    assert resumed.model.config["locked_dropout"] is True and resumed.model.output_dropout == 0.3
    resumed.run(progress=False, log=lambda s: None)
    assert straight.history["loss"] == resumed.history["loss"]  # the same masks after the resume
    for (name, p), (_, q) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    plain = Trainer(TEXT, TrainConfig(**{**config.__dict__, "input_dropout": 0.0, "output_dropout": 0.0,
                                         "dropout": 0.0, "locked_dropout": False, "lr": None}))
    plain.run(progress=False, log=lambda s: None)
    assert plain.history["loss"] != straight.history["loss"]  # the options changed the training


def test_train_options_exist_and_bad_values_exit_2(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    for args, message in [(["--input-dropout", "1"], "--input-dropout"), (["--output-dropout", "-0.2"],
                          "--output-dropout"), (["--input-dropout", "x"], "--input-dropout"),
                          (["--locked-dropout=yes"], "--locked-dropout"), (["--locked-dropout"], "locked_dropout")]:
        assert main(["train", "--data", str(corpus), *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    out = tmp_path / "run.npz"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(out), "--steps", "2", "--hidden-size", "8",
                 "--seq-len", "8", "--batch-size", "2", "--input-dropout", "0.1", "--output-dropout", "0.2",
                 "--locked-dropout", "--val-every", "0", "--sample-every", "0", "--val-chars", "200"]) == 0
    model, _, meta = load_model(out)
    assert (model.input_dropout, model.output_dropout, model.locked_dropout) == (0.1, 0.2, True)
    proc = subprocess.run([sys.executable, "-m", "micrornn", "train", "--output-dropout", "1.5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_the_options_export_to_torch_as_fresh_masks_of_the_locked_shape():
    torch = pytest.importorskip("torch", reason="to_torch needs torch")
    from micrornn.interop import to_torch
    from micrornn.interop_torch import torch_code
    model = SequenceModel(9, 5, 9, num_layers=2, rng=1, **OPTIONS["all locked"])
    x = np.random.default_rng(6).integers(0, 9, (4, 3))
    exported = to_torch(model)
    assert not torch.equal(exported(torch.as_tensor(x))[0], exported(torch.as_tensor(x))[0])
    masks = [line for line in torch_code(model, x, training=True).splitlines() if "bernoulli_" in line]
    shapes = [m.split("torch.empty(")[1].split(", dtype")[0] for m in masks]
    assert shapes == ["(1, 3, 9)", "(1, 3, 5)", "(1, 3, 5)"]  # input, between layers, output: (1, B, F)
    exported.eval()
    np.testing.assert_allclose(exported(torch.as_tensor(x))[0].detach().numpy(), model.eval()(x)[0].data,
                               rtol=1e-12, atol=1e-14)


def test_train_header_names_every_dropout_option(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 4, encoding="utf-8")
    assert main(["train", "--hidden-size", "8", "--seq-len", "8", "--batch-size", "2", "--steps", "1",
                 "--val-every", "0", "--sample-every", "0", "--no-plot", "--data", str(corpus),
                 "--checkpoint", str(tmp_path / "ck.npz"), "--dropout", "0.1", "--input-dropout", "0.05",
                 "--output-dropout", "0.2", "--locked-dropout"]) == 0
    out = capsys.readouterr().out
    assert "dropout 0.1, input dropout 0.05, output dropout 0.2" in out and "(locked over time)" in out
