"""Training for quality: warm-up, time budget, state resets, early stopping, one-stream validation, presets."""
import math

import numpy as np
import pytest

from micrornn.train.checkpoint import load_checkpoint
from micrornn.nn import SequenceModel
from micrornn.train import TrainConfig, Trainer, bits_per_char, evaluate
from micrornn.train.config import PRESETS, preset_config
from micrornn.train.references import REFERENCES, standing
from micrornn.train.carried_state import reset_some_streams
from micrornn.train.schedule import learning_rate
from micrornn.train.stopping import Budget, EarlyStopping
from micrornn.train.trainer import best_checkpoint_path

from tiny_runs import quiet_run

TEXT = ("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n"
        "And all the clouds that lour'd upon our house\n") * 6


def tiny(**kw):
    base = dict(hidden_size=10, num_layers=1, seq_len=8, batch_size=4, steps=12, val_every=0, sample_every=0,
                dtype="float64", warmup=0, state_reset=0.0, val_chars=0)
    return TrainConfig(**{**base, **kw})


# ---- learning rate ------------------------------------------------------------------------------
def test_warmup_rises_linearly_then_the_cosine_takes_over():
    lrs = [learning_rate(0.1, s, progress=s / 100, warmup=10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01 * 0.5 * (1 + math.cos(0.0)))
    assert lrs[4] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 0.04)))
    assert lrs[9] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.09)))  # warm-up done
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))  # rising
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))  # then decaying
    assert learning_rate(0.1, 3, progress=0.5, warmup=0, schedule="constant") == 0.1
    assert learning_rate(0.1, 3, progress=0.5, warmup=8, schedule="constant") == pytest.approx(0.05)
    assert learning_rate(0.1, 500, progress=1.7) == 0.0  # progress is clamped


def test_trainer_lr_follows_warmup_and_the_time_budget_when_it_is_ahead():
    trainer = Trainer(TEXT, tiny(steps=100, lr=0.2, warmup=4))
    for s in range(4):
        assert trainer.lr_at(s) == pytest.approx(0.2 * (s + 1) / 4 * 0.5 * (1 + math.cos(math.pi * s / 100)))
    trainer.time_progress = 0.5  # half the time budget used at step 10: the decay follows the time
    assert trainer.lr_at(10) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    trainer.time_progress = 0.05  # behind the steps: the steps lead
    assert trainer.lr_at(10) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 0.10)))


def test_budget_reserves_time_for_the_final_evaluation():
    budget = Budget(100.0, already_used=20.0)
    assert budget.fraction(30.0) == pytest.approx(0.5)
    assert budget.fraction(30.0, reserve=50.0) == pytest.approx(1.0) and budget.exhausted(30.0, reserve=50.0)
    assert not budget.exhausted(29.0, reserve=50.0)
    assert Budget(0).fraction(1e9) == 0.0 and not Budget(0).exhausted(1e9)


def test_a_used_up_time_budget_stops_training_and_still_validates():
    trainer = Trainer(TEXT, tiny(steps=10_000, time_budget=1e-6))
    result = quiet_run(trainer)
    assert result.stopped_by == "time budget" and result.step < 10_000
    assert result.val_loss == pytest.approx(trainer.evaluate())


# ---- state resets -------------------------------------------------------------------------------
def test_state_resets_zero_whole_streams_reproducibly():
    state = np.ones((2, 64, 3))
    out = reset_some_streams(state, 0.25, seed=7, step=3)
    zeroed = np.all(out == 0, axis=(0, 2))
    assert np.all((out == 0) | (out == 1)) and np.array_equal(zeroed, np.any(out == 0, axis=(0, 2)))
    assert 4 <= zeroed.sum() <= 30  # about a quarter of 64 streams
    assert np.array_equal(out, reset_some_streams(state, 0.25, seed=7, step=3))  # same (seed, step): same streams
    assert not np.array_equal(out, reset_some_streams(state, 0.25, seed=7, step=4))
    assert np.all(state == 1)  # the input is not modified
    assert reset_some_streams(state, 0.0, 7, 3) is state and reset_some_streams(None, 0.5, 7, 3) is None
    h, c = reset_some_streams((np.ones((1, 64, 2)), 2 * np.ones((1, 64, 2))), 0.25, seed=7, step=3)
    np.testing.assert_array_equal(h[0, :, 0] == 0, zeroed)  # an LSTM's h and c reset together
    np.testing.assert_array_equal(c[0, :, 0] == 0, zeroed)


def test_training_with_state_resets_starts_some_chunks_fresh(monkeypatch):
    trainer = Trainer(TEXT, tiny(state_reset=0.5, steps=3))
    seen = []
    real = trainer.model.loss

    def spy(x, y, h0=None, reduction="sum"):
        seen.append(None if h0 is None else np.asarray(h0.data if hasattr(h0, "data") else h0).copy())
        return real(x, y, h0, reduction=reduction)
    monkeypatch.setattr(trainer.model, "loss", spy)
    for _ in range(3):
        trainer.train_step()
    assert seen[0] is None  # the first chunk of an epoch starts from zero
    later = np.concatenate([s[0] for s in seen[1:]], axis=0)  # (2 steps x 4 streams, H)
    fresh = np.all(later == 0, axis=1)
    assert 0 < fresh.sum() < len(fresh)


def test_resume_is_exact_with_state_resets_and_warmup(tmp_path):
    config = tiny(state_reset=0.3, warmup=5, steps=14)
    straight = Trainer(TEXT, config)
    quiet_run(straight)
    first = Trainer(TEXT, config)
    quiet_run(first, steps=6, checkpoint=tmp_path / "a.npz")
    resumed = Trainer.resume(tmp_path / "a.npz", TEXT)
    quiet_run(resumed)
    for (name, p), (_, q) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert straight.history["loss"] == resumed.history["loss"]


# ---- validation ---------------------------------------------------------------------------------
def test_evaluate_is_one_stream_with_the_state_carried():
    model = SequenceModel(5, 6, 5, num_layers=2, rng=1)
    ids = np.random.default_rng(2).integers(0, 5, size=300)
    whole, _ = model.loss(ids[:-1].reshape(-1, 1), ids[1:].reshape(-1, 1), reduction="mean")
    assert evaluate(model, ids, chunk=16) == pytest.approx(whole.item(), rel=1e-10)
    # restarting from a zero state at each chunk would be another number
    restarted = np.mean([model.loss(ids[s:s + 16].reshape(-1, 1), ids[s + 1:s + 17].reshape(-1, 1),
                                    reduction="mean")[0].item() for s in range(0, 288, 16)])
    assert abs(restarted - evaluate(model, ids[:289], chunk=16)) > 1e-6
    part, _ = model.loss(ids[:40].reshape(-1, 1), ids[1:41].reshape(-1, 1), reduction="mean")
    assert evaluate(model, ids, chunk=16, max_chars=40) == pytest.approx(part.item(), rel=1e-10)
    assert model.rnn.fused is False  # the fast path is switched on only while scoring
    with pytest.raises(ValueError, match="at least 2 ids"):
        evaluate(model, ids[:1])


def test_bits_per_char():
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert bits_per_char(1.47) == pytest.approx(1.47 / math.log(2))


def test_periodic_validation_scores_a_prefix_and_the_final_one_the_whole_split():
    text = TEXT * 3
    trainer = Trainer(text, tiny(steps=4, val_every=2, val_chars=30))
    result = quiet_run(trainer)
    assert trainer.history["val_step"] == [2, 4] and trainer.history["val_chars"] == [30, 0]
    assert result.val_loss == trainer.history["val_loss"][-1] == pytest.approx(trainer.evaluate())
    assert trainer.history["val_loss"][0] != pytest.approx(trainer.evaluate())


# ---- early stopping and the best checkpoint -----------------------------------------------------
def test_early_stopping_counts_validations_without_a_new_best():
    stop = EarlyStopping(patience=2)
    assert stop.update(3.0, 10) and stop.update(2.0, 20) and not stop.stop
    assert not stop.update(2.5, 30) and not stop.stop
    assert not stop.update(2.0, 40) and stop.stop  # equal is not better
    assert (stop.best, stop.best_step) == (2.0, 20)
    never = EarlyStopping(patience=0)
    for i in range(10):
        never.update(5.0 + i, i)
    assert not never.stop


def test_early_stopping_ends_the_run_and_the_best_checkpoint_is_tagged(tmp_path, monkeypatch):
    trainer = Trainer(TEXT, tiny(steps=100, val_every=2, patience=2))
    scores = iter([3.0, 2.0, 2.4, 2.6, 9.0, 9.0])
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda ids=None, max_chars=None:
                        next(scores) if max_chars is None and trainer.step < 100 else real(ids, max_chars))
    checkpoint = tmp_path / "run.npz"
    result = quiet_run(trainer, checkpoint=checkpoint)
    assert result.stopped_by == "early stopping" and result.step == 8
    best = best_checkpoint_path(checkpoint)
    assert best == tmp_path / "run_best.npz"
    _, meta, _ = load_checkpoint(best)
    assert meta["step"] == 4 and meta["validation"]["nats_per_char"] == 2.0
    assert meta["validation"]["bits_per_char"] == pytest.approx(2.0 / math.log(2))
    _, last, _ = load_checkpoint(checkpoint)
    assert last["step"] == 8 and last["validation"]["step"] == 8 and last["validation"]["chars"] == 0
    assert last["early_stopping"] == {"best": 2.0, "best_step": 4, "bad": 2}
    resumed = Trainer.resume(checkpoint, TEXT)
    assert (resumed.early.best, resumed.early.best_step, resumed.early.bad) == (2.0, 4, 2)


# ---- presets and references ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_configurations_within_their_budget(name):
    config = preset_config(name).validated()
    assert config.time_budget == (3600.0 if name == "best" else 900.0)
    assert config.cell == (name if name in ("rnn", "lstm", "gru") else config.cell)
    assert preset_config(name, hidden_size=8).hidden_size == 8


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="preset must be one of"):
        preset_config("huge")


@pytest.mark.parametrize("field,value", [("cell", "transformer"), ("dropout", 1.0), ("dropout", -0.1),
                                         ("state_reset", 1.5), ("warmup", -1), ("time_budget", -5.0),
                                         ("patience", 1.5), ("val_chars", -1)])
def test_new_config_fields_reject_nonsense(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value}).validated()


def test_dropout_needs_two_layers():
    with pytest.raises(ValueError, match="dropout acts between stacked layers"):
        TrainConfig(num_layers=1, dropout=0.2).validated()


def test_standing_places_the_run_among_the_references():
    class FakeTrainer:  # only what standing() reads
        text_sha256 = __import__("micrornn.train.data", fromlist=["x"]).BUNDLED_CORPUS_SHA256
        config = TrainConfig()
    lines = standing(1.55, FakeTrainer()).splitlines()
    assert len(lines) == len(REFERENCES) + 2
    order = [float(line.split()[0]) for line in lines[1:]]
    assert order == sorted(order) and "1.550  this run" in "\n".join(lines)
    FakeTrainer.text_sha256 = "0" * 64
    assert "differs" in standing(1.55, FakeTrainer())


# ---- gated cells and dropout through the trainer ------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_train_resume_exactly_and_evaluate(cell, tmp_path):
    config = tiny(cell=cell, num_layers=2, dropout=0.3, state_reset=0.3, steps=8, fused=True)
    straight = Trainer(TEXT, config)
    quiet_run(straight)
    first = Trainer(TEXT, config)
    quiet_run(first, steps=3, checkpoint=tmp_path / "a.npz")
    resumed = Trainer.resume(tmp_path / "a.npz", TEXT)
    if cell == "lstm":
        assert isinstance(resumed.hidden, tuple) and len(resumed.hidden) == 2
    quiet_run(resumed)
    assert straight.history["loss"] == resumed.history["loss"]  # same dropout masks and resets
    for (name, p), (_, q) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert straight.model.config["cell"] == cell


def test_dropout_is_off_while_evaluating_and_sampling():
    trainer = Trainer(TEXT, tiny(num_layers=2, dropout=0.5))
    ids = trainer.val_ids
    first, second = trainer.evaluate(), trainer.evaluate()
    assert first == second  # no random masks
    model = trainer.model
    loss_a, _ = model.loss(ids[:-1].reshape(-1, 1), ids[1:].reshape(-1, 1), reduction="mean")
    loss_b, _ = model.loss(ids[:-1].reshape(-1, 1), ids[1:].reshape(-1, 1), reduction="mean")
    assert loss_a.item() != loss_b.item()  # training mode again afterwards: masks differ per call
    assert trainer.sample(30, rng=1) == trainer.sample(30, rng=1)


def test_a_time_budgeted_run_shows_its_progress_in_seconds_of_the_budget(monkeypatch):
    """A preset's step target is only an upper bound, so its bar counts the budget's seconds and names the step."""
    bars = []

    class Bar:
        def __init__(self, **kw):
            self.kw, self.n, self.postfix = kw, kw["initial"], ""
            bars.append(self)

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def update(self, n):
            self.n += n

        def close(self):
            pass

    monkeypatch.setattr("micrornn.train.trainer.progress_bar", Bar)
    Trainer(TEXT, tiny(steps=3, time_budget=500)).run(progress=True, log=lambda s: None)
    Trainer(TEXT, tiny(steps=3)).run(progress=True, log=lambda s: None)
    timed, counted = bars
    assert (timed.kw["total"], timed.kw["unit"]) == (500, "s") and 0 <= timed.n < 500
    assert timed.postfix.startswith("step 3, loss ")
    assert (counted.kw["total"], counted.kw["unit"], counted.n) == (3, "step", 3)
    assert counted.postfix.startswith("loss ")


def test_the_loss_plot_keeps_prefix_and_whole_split_validations_apart(tmp_path, monkeypatch):
    """Periodic validations score a prefix, the final one the whole split: one line through both would
    draw a jump that never happened, so they are two series with their own labels."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from micrornn.train import plot_history
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, path: figures.append(self))
    history = {"step": [1, 2, 3, 4], "loss": [3.0, 2.5, 2.2, 2.0], "val_step": [2, 4, 4],
               "val_loss": [2.4, 2.1, 2.3], "val_chars": [20000, 20000, 0]}
    plot_history(history, tmp_path / "curve.png", title="micrornn: character-level GRU")
    ax = figures[0].axes[0]
    series = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    assert series["validation, first part of the split"] == ([2, 4], [2.4, 2.1])
    assert series["validation, whole split"] == ([4], [2.3])
    assert ax.get_title() == "micrornn: character-level GRU"
