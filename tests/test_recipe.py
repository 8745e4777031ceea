"""The training recipe: gate-bias init, the EMA of the weights, weight decay through the trainer."""
import numpy as np
import pytest

import micrornn as mr
from micrornn.nn import GRUCell, LSTMCell, SequenceModel, init_gate_bias
from micrornn.nn.cells import CELLS
from micrornn.train import Trainer, evaluate
from micrornn.train.ema import WeightAverage
from micrornn.train.sample import load_model

from tiny_runs import SOLILOQUY as TEXT, quiet_run, tiny


# ---- gate bias ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,gate", [("lstm", "f"), ("gru", "z")])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gate_bias_lands_in_the_memory_gate_block(cell, gate, fused, bidirectional):
    model = SequenceModel(5, 4, 5, num_layers=2, cell=cell, fused=fused, bidirectional=bidirectional, rng=3)
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    changed = init_gate_bias(model, 2.5)
    cells = list(model.rnn.cells) + list(getattr(model.rnn, "reverse_cells", []))
    assert changed == len(cells) == 2 * (2 if bidirectional else 1)
    for c in cells:  # the gate view: with U, W zero the gate is sigmoid(its bias block)
        c.U.data[...] = 0.0
        c.W.data[...] = 0.0
        x = mr.tensor(np.ones((1, c.input_size)))
        state = (mr.tensor(np.ones((1, 4))), mr.tensor(np.ones((1, 4)))) if cell == "lstm" else mr.tensor(np.ones((1, 4)))
        gates = c.gates(x, state)
        np.testing.assert_allclose(gates[gate].data, 1 / (1 + np.exp(-2.5)), rtol=1e-12)
        others = [g for g in type(c).gate_names if g != gate]
        assert all(not np.allclose(gates[g].data, 1 / (1 + np.exp(-2.5))) for g in others)
    for name, p in model.named_parameters():  # only the b vectors changed
        if not name.endswith(".b"):
            continue
        H, k = 4, CELLS[cell].blocks.index(gate)
        rest = np.delete(np.arange(p.data.size), np.arange(k * H, (k + 1) * H))
        np.testing.assert_array_equal(p.data[rest], before[name][rest])


def test_positive_gru_update_bias_keeps_the_state():
    """micrornn's GRU is h' = (1 - z) n + z h: a large positive z bias keeps h (the sign keeps memory)."""
    c = GRUCell(3, 4, rng=0)
    init_gate_bias(c, 8.0)
    h = mr.tensor(np.random.default_rng(1).normal(size=(2, 4)))
    out = c(mr.tensor(np.random.default_rng(2).normal(size=(2, 3))), h)
    np.testing.assert_allclose(out.data, h.data, atol=2e-3)
    lstm = LSTMCell(3, 4, rng=0)
    init_gate_bias(lstm, 8.0)
    zeros = mr.tensor(np.zeros((2, 4)))
    assert np.all(lstm.gates(mr.tensor(np.zeros((2, 3))), (zeros, zeros))["f"].data > 0.999)  # c' = f c + i g


def test_gate_bias_refuses_cells_without_a_memory_gate():
    with pytest.raises(ValueError, match="vanilla rnn cell has no forget/update gate"):
        init_gate_bias(SequenceModel(5, 4, 5), 1.0)
    from user_cells import MGUCell
    with pytest.raises(ValueError, match="user cell MGUCell"):
        init_gate_bias(SequenceModel(5, 4, 5, cell=MGUCell), 1.0)
    assert init_gate_bias(SequenceModel(5, 4, 5), 0.0) == 0  # 0: nothing to do, no error
    with pytest.raises(ValueError, match="finite"):
        init_gate_bias(LSTMCell(2, 2), float("nan"))
    with pytest.raises(ValueError, match="gate_bias"):
        Trainer(TEXT, tiny(gate_bias=1.0))  # cell rnn


def test_trainer_applies_the_gate_bias_at_creation():
    trainer = Trainer(TEXT, tiny(cell="lstm", gate_bias=1.5, steps=0))
    b = trainer.model.rnn.cells[0].b.data
    np.testing.assert_array_equal(b[12:24], 1.5)
    assert not np.any(b[:12] == 1.5)


# ---- weight decay through the trainer -------------------------------------------------------------
def test_weight_decay_needs_adamw_and_decays_matrices_only():
    with pytest.raises(ValueError, match="needs optimizer adamw"):
        Trainer(TEXT, tiny(weight_decay=0.1))
    trainer = Trainer(TEXT, tiny(optimizer="adamw", weight_decay=0.5, lr=0.01))
    assert trainer.optimizer.hyperparameters["weight_decay"] == 0.5
    assert trainer.optimizer.hyperparameters["matrices_only"] is True
    plain = Trainer(TEXT, tiny(optimizer="adam", lr=0.01))
    quiet_run(trainer, steps=1)  # one step: the gradients are the same, only the decay differs
    quiet_run(plain, steps=1)
    for (name, p), (_, q) in zip(trainer.model.named_parameters(), plain.model.named_parameters()):
        same = np.array_equal(p.data, q.data)
        assert same == (p.data.ndim < 2), name  # biases follow adam exactly, matrices shrink


# ---- EMA of the weights ---------------------------------------------------------------------------
def test_weight_average_is_the_moving_average_and_swaps_exactly():
    model = SequenceModel(4, 3, 4, rng=0)
    ema = WeightAverage(model, 0.9)
    by_hand = {n: p.data.copy() for n, p in model.named_parameters()}
    for step in (1, 2, 3, 50, 51):
        for p in model.parameters():
            p.data += 0.1 * step
        ema.update(step)
        d = min(0.9, (1 + step) / (10 + step))  # warm-up: 2/11, 3/12, 4/13, 51/60, 52/61 (0.9 from step 80 on)
        for n, p in model.named_parameters():
            by_hand[n] = d * by_hand[n] + (1 - d) * p.data
    trained = {n: p.data.copy() for n, p in model.named_parameters()}
    for n in by_hand:
        np.testing.assert_allclose(ema.average[n], by_hand[n], rtol=1e-14)
    with ema.swapped_in():
        for n, p in model.named_parameters():
            np.testing.assert_array_equal(p.data, ema.average[n])
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, trained[n])
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, 1.0)
    with pytest.raises(ValueError, match="expected shape"):
        ema.load_state_dict({n: np.zeros(1) for n in by_hand})


def test_ema_is_used_for_validation_and_is_the_checkpoint_model(tmp_path):
    trainer = Trainer(TEXT, tiny(ema=0.8, steps=6, optimizer="adamw", weight_decay=0.1))
    quiet_run(trainer, checkpoint=tmp_path / "ck.npz")
    ids = np.asarray(trainer.val_ids, dtype=np.int64)
    with trainer.ema.swapped_in():
        averaged = evaluate(trainer.model, ids)
    raw = evaluate(trainer.model, ids)
    assert averaged != raw
    assert trainer.evaluate() == averaged
    assert trainer.history["val_loss"][-1] == averaged  # the final validation scored the averaged weights
    model, _, _ = load_model(tmp_path / "ck.npz")  # what `micrornn eval` / `sample` load
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, trainer.ema.average[name], err_msg=name)
    resumed = Trainer.resume(tmp_path / "ck.npz", TEXT)  # the parameters are the trained weights
    for (name, p), (_, q) in zip(resumed.model.named_parameters(), trainer.model.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)


def test_ema_checkpoint_without_averages_is_refused(tmp_path):
    from micrornn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    trainer = Trainer(TEXT, tiny(ema=0.5, steps=2))
    quiet_run(trainer, checkpoint=tmp_path / "ck.npz")
    params, meta, state = load_checkpoint(tmp_path / "ck.npz")
    del state["ema"]
    save_checkpoint(tmp_path / "bad.npz", params, meta, state)
    with pytest.raises(CheckpointError, match="no averaged weights"):
        Trainer.resume(tmp_path / "bad.npz", TEXT)


def test_best_checkpoint_holds_the_averages(tmp_path):
    trainer = Trainer(TEXT, tiny(ema=0.7, steps=6, val_every=2, patience=5))
    quiet_run(trainer, checkpoint=tmp_path / "ck.npz")
    from micrornn.train.checkpoint import load_checkpoint
    params, meta, state = load_checkpoint(tmp_path / "ck_best.npz")
    assert set(state["ema"]) == {n for n, _ in trainer.model.named_parameters()}
    again = Trainer(TEXT, tiny(ema=0.7, steps=6, val_every=2, patience=5))
    quiet_run(again, steps=meta["step"])  # the same run stopped at the best step: its average, exactly
    for name, average in again.ema.average.items():
        np.testing.assert_array_equal(state["ema"][name], average, err_msg=name)
        assert not np.array_equal(state["ema"][name], params[name]) or average.ndim == 0, name


# ---- the command line -----------------------------------------------------------------------------
def test_cli_trains_with_the_recipe_and_eval_loads_the_average(tmp_path, capsys):
    from micrornn.cli import main
    corpus, ck = tmp_path / "corpus.txt", tmp_path / "ck.npz"
    corpus.write_text(TEXT, encoding="utf-8")
    tiny_cli = ["--hidden-size", "12", "--layers", "1", "--seq-len", "8", "--batch-size", "4", "--val-every", "0",
                "--sample-every", "0", "--dtype", "float64", "--no-plot", "--quiet", "--data", str(corpus)]
    assert main(["train", *tiny_cli, "--checkpoint", str(ck), "--steps", "4", "--cell", "gru", "--optimizer",
                 "adamw", "--weight-decay", "0.1", "--gate-bias", "-0.5", "--ema", "0.9"]) == 0
    model, _, meta = load_model(ck)
    assert meta["config"]["weight_decay"] == 0.1 and meta["config"]["gate_bias"] == -0.5
    assert meta["config"]["ema"] == 0.9
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(ck)]) == 0
    out = capsys.readouterr().out
    assert "its averaged weights (ema 0.9)" in out
    nats = float(out.split(" nats/char")[0].rsplit(" ", 1)[1])
    assert nats == pytest.approx(evaluate(model, model_ids(meta)), abs=1e-4)
    for bad, words in ((["--weight-decay", "0.1"], "needs optimizer adamw"),
                       (["--gate-bias", "1"], "gate_bias"), (["--ema", "1"], "--ema"),
                       (["--cell", "gru", "--gate-bias", "nan"], "--gate-bias")):
        assert main(["train", *tiny_cli, "--checkpoint", str(tmp_path / "x.npz"), "--steps", "1", *bad]) == 2, bad
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, (bad, err)


def model_ids(meta):
    from micrornn.train.data import Vocab
    vocab = Vocab.from_list(meta["vocab"])
    return vocab.encode(TEXT[int(len(TEXT) * 0.9):])


def test_out_of_range_gate_bias_and_weight_decay_are_refused_by_name():
    from micrornn.train import TrainConfig
    with pytest.raises(ValueError, match="gate_bias 1e\\+39 is out of range"):
        TrainConfig(cell="lstm", gate_bias=1e39).validated()  # float32 would store it as inf
    TrainConfig(cell="lstm", gate_bias=-100.0).validated()
    with pytest.raises(ValueError, match="weight_decay 2000.0 with lr 0.005"):
        TrainConfig(optimizer="adamw", weight_decay=2000.0, lr=5e-3).validated()  # weights flip sign each step
    TrainConfig(optimizer="adamw", weight_decay=100.0, lr=5e-3).validated()


def test_a_run_ending_with_non_finite_weights_says_no_checkpoint_was_written(tmp_path, monkeypatch, capsys):
    # the run trains with an infinite gate bias (finite losses: the gates saturate); the final save refuses
    # non-finite weights, so the command must not name a checkpoint it did not write
    from micrornn.cli import main
    monkeypatch.setattr("micrornn.train.config.GATE_BIAS_LIMIT", float("inf"))
    corpus, out = tmp_path / "c.txt", tmp_path / "run.npz"
    corpus.write_text(TEXT, encoding="utf-8")
    code = main(["train", "--data", str(corpus), "--cell", "lstm", "--gate-bias=1e39", "--steps", "2",
                 "--hidden-size", "4", "--seq-len", "8", "--batch-size", "2", "--quiet", "--no-plot",
                 "--val-every", "0", "--checkpoint", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and "not finite" in captured.err and "checkpoint:" not in captured.out
    assert not out.exists()
