"""The training loop: exact resume, Ctrl-C, truncated BPTT state, evaluation, sampling."""
import numpy as np
import pytest

from micrornn.nn import functional as F
from micrornn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from micrornn.nn import Linear, SequenceModel
from micrornn.train.sample import load_model, sample
from micrornn.engine.tensor import Tensor
from micrornn.train import TrainConfig, Trainer, evaluate, fit, make_optimizer, update

from tiny_runs import SOLILOQUY as TEXT, quiet_run, tiny


def assert_same_state(a, b):
    assert a.step == b.step
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    for sa, sb in zip(a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]):
        for key in sa:
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
    np.testing.assert_array_equal(a.hidden, b.hidden)
    assert a.history["step"] == b.history["step"] and a.history["loss"] == b.history["loss"]
    val_a = dict(zip(a.history["val_step"], a.history["val_loss"]))
    val_b = dict(zip(b.history["val_step"], b.history["val_loss"]))  # + one at each stop
    assert all(val_b[s] == v for s, v in val_a.items())
    assert a.sample_rng.bit_generator.state == b.sample_rng.bit_generator.state
    assert a.optimizer.hyperparameters == b.optimizer.hyperparameters
    assert (a.ema is None) == (b.ema is None)
    for name, avg in ({} if a.ema is None else a.ema.average).items():
        np.testing.assert_array_equal(avg, b.ema.average[name], err_msg=f"ema {name}")


@pytest.mark.parametrize("optimizer,fused,layers,extra", [
    ("adam", False, 2, {}), ("adagrad", True, 1, {}), ("sgd", False, 1, {}),
    ("adamw", True, 2, {"weight_decay": 0.1, "ema": 0.9}),
    ("adamw", False, 1, {"weight_decay": 0.05, "ema": 0.8, "cell": "gru", "gate_bias": 1.0})])
def test_resume_is_exact(tmp_path, optimizer, fused, layers, extra):
    """N steps, save, resume for M == N + M straight, across epoch boundaries and a sample (adamw: its decay
    and the EMA of the weights round-trip too)."""
    cfg = tiny(optimizer=optimizer, fused=fused, num_layers=layers, steps=30, val_every=7, sample_every=9, **extra)
    straight = Trainer(TEXT, cfg)
    assert straight.stream.steps_per_epoch < 30  # the run wraps around the data
    quiet_run(straight)

    first = Trainer(TEXT, cfg)
    quiet_run(first, steps=13, checkpoint=tmp_path / "ck.npz")
    resumed = Trainer.resume(tmp_path / "ck.npz", TEXT)
    assert resumed.step == 13 and resumed.stream.position == 13
    quiet_run(resumed, checkpoint=tmp_path / "ck.npz")
    assert_same_state(straight, resumed)
    assert straight.sample(30) == resumed.sample(30)


def test_resume_differs_without_the_carried_state(tmp_path):
    """The hidden state in the checkpoint matters: dropping it changes the resumed run."""
    cfg = tiny(steps=6)
    straight, first = Trainer(TEXT, cfg), Trainer(TEXT, cfg)
    quiet_run(straight)
    quiet_run(first, steps=3, checkpoint=tmp_path / "ck.npz")
    resumed = Trainer.resume(tmp_path / "ck.npz", TEXT)
    resumed.hidden = np.zeros_like(resumed.hidden)
    quiet_run(resumed)
    assert not np.array_equal(straight.model.head.weight.data, resumed.model.head.weight.data)


def test_keyboard_interrupt_saves_and_resumes(tmp_path):
    cfg = tiny(steps=12)
    straight = Trainer(TEXT, cfg)
    quiet_run(straight)

    def interrupt_at_5(trainer):
        if trainer.step == 5:
            raise KeyboardInterrupt

    ck = tmp_path / "ck.npz"
    result = quiet_run(Trainer(TEXT, cfg), checkpoint=ck, on_step=interrupt_at_5)
    assert result.interrupted and result.step == 5 and result.val_loss is None
    _, meta, _ = load_checkpoint(ck)
    assert meta["step"] == 5
    resumed = Trainer.resume(ck, TEXT)
    quiet_run(resumed)
    assert_same_state(straight, resumed)


def test_interrupt_inside_a_step_rereads_the_chunk():
    """A KeyboardInterrupt during forward/backward leaves step, stream and state untouched."""
    trainer = Trainer(TEXT, tiny())
    trainer.train_step()
    hidden, position = trainer.hidden.copy(), trainer.stream.position

    class Boom(SequenceModel):
        def loss(self, *a, **k):
            raise KeyboardInterrupt

    original = trainer.model.__class__
    trainer.model.__class__ = Boom
    with pytest.raises(KeyboardInterrupt):
        trainer.train_step()
    trainer.model.__class__ = original
    assert trainer.step == 1 and trainer.stream.position == position
    np.testing.assert_array_equal(trainer.hidden, hidden)


def test_hidden_state_is_carried_and_detached():
    trainer = Trainer(TEXT, tiny())
    model = trainer.model
    x1, y1 = trainer.stream.chunk(0)
    x2, y2 = trainer.stream.chunk(1)
    trainer.train_step()
    _, h1 = model.loss(x1, y1, None)  # parameters have changed since; recompute the state
    # the state handed to the next chunk is a plain array: the graph (and gradient) stops here
    assert isinstance(trainer.hidden, np.ndarray) and trainer.hidden.shape == (1, 4, 12)
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    carried = trainer.hidden.copy()
    expected, _ = model.loss(x2, y2, carried, reduction="mean")
    fresh, _ = model.loss(x2, y2, None, reduction="mean")
    loss = trainer.train_step()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    assert abs(loss - fresh.item()) > 1e-6  # the carried state was used
    assert any(not np.array_equal(before[n], p.data) for n, p in model.named_parameters())
    assert h1.shape == (1, 4, 12)


def test_hidden_state_resets_at_epoch_start():
    trainer = Trainer(TEXT, tiny())
    n = trainer.stream.steps_per_epoch
    for _ in range(n):
        trainer.train_step()
    model, x, y = trainer.model, *trainer.stream.chunk(n)
    fresh, _ = model.loss(x, y, None, reduction="mean")
    assert trainer.train_step() == pytest.approx(fresh.item(), rel=1e-12)


def test_training_learns_a_repetitive_text():
    text = "abcdefgh\n" * 120
    trainer = Trainer(text, tiny(hidden_size=24, steps=150, lr=1e-2))
    start = trainer.evaluate()
    result = quiet_run(trainer)
    assert start > 1.5
    assert result.val_loss < 0.2 and result.train_loss < 0.4
    assert trainer.sample(18, prime="abc", temperature=0.01).startswith("abcdefgh\nabcdefgh")


def test_evaluate_matches_one_pass_and_is_chunk_independent():
    model = SequenceModel(5, 7, 5, rng=3)
    ids = np.random.default_rng(0).integers(0, 5, size=61)
    whole, _ = model.loss(ids[:-1].reshape(-1, 1), ids[1:].reshape(-1, 1), reduction="mean")
    assert evaluate(model, ids, chunk=7) == pytest.approx(whole.item(), rel=1e-12)
    a, b = evaluate(model, ids, chunk=4), evaluate(model, ids, chunk=100)
    assert a == pytest.approx(b, rel=1e-12)


def test_sample_prime_temperature_and_seed():
    trainer = Trainer(TEXT, tiny())
    model, vocab = trainer.model, trainer.vocab
    a = sample(model, vocab, 40, 1.0, "To be", rng=5)
    assert a.startswith("To be") and len(a) == 45 and set(a) <= set(TEXT)
    assert a == sample(model, vocab, 40, 1.0, "To be", rng=5)
    assert a != sample(model, vocab, 40, 1.0, "To be", rng=6)
    # a tiny temperature is greedy decoding
    greedy, h = [], None
    ids = vocab.encode("To be")
    logits, h = model(ids.reshape(-1, 1))
    for _ in range(10):
        nxt = int(np.argmax(logits.data[-1, 0]))
        greedy.append(nxt)
        logits, h = model(np.array([[nxt]]), h)
    assert sample(model, vocab, 10, 1e-4, "To be", rng=1) == "To be" + vocab.decode(greedy)
    assert sample(model, vocab, 10, 0, "To be", rng=2) == "To be" + vocab.decode(greedy)  # 0: greedy
    assert len(sample(model, vocab, 15, rng=0)) == 15  # no prime
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            sample(model, vocab, 5, bad)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        sample(model, vocab, 5, 1.0, prime="Zebra")


@pytest.mark.parametrize("field,value", [
    ("hidden_size", 0), ("hidden_size", -3), ("num_layers", 0), ("seq_len", -1), ("batch_size", 1.5),
    ("steps", -1), ("lr", 0.0), ("lr", -0.1), ("lr", float("inf")), ("clip", -1.0),
    ("optimizer", "rmsprop"), ("lr_schedule", "step"), ("dtype", "float16"), ("nonlinearity", "gelu"), ("val_fraction", 0.0),
])
def test_config_rejects_nonsense(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value}).validated()


def test_cosine_schedule_decays_to_zero_and_constant_does_not():
    trainer = Trainer(TEXT, tiny(steps=10, lr=0.2))
    assert [round(trainer.lr_at(s), 12) for s in (0, 5, 10)] == [0.2, 0.1, 0.0]
    trainer.train_step()
    assert trainer.optimizer.lr == 0.2  # step 0 used the full rate
    trainer.train_step()
    assert trainer.optimizer.lr == pytest.approx(0.1 * (1 + np.cos(np.pi / 10)))
    constant = Trainer(TEXT, tiny(steps=10, lr=0.2, lr_schedule="constant"))
    assert constant.lr_at(9) == 0.2


def test_config_fills_the_optimizer_default_lr():
    assert TrainConfig(optimizer="adagrad").validated().lr == 0.1
    assert TrainConfig(optimizer="adam", lr=0.5).validated().lr == 0.5


def test_text_too_short_names_the_need():
    with pytest.raises(ValueError, match="too short"):
        Trainer("abc" * 20, tiny(seq_len=16, batch_size=8))


def test_resume_rejects_other_text_other_settings_and_bad_files(tmp_path):
    ck = tmp_path / "ck.npz"
    quiet_run(Trainer(TEXT, tiny(steps=2)), checkpoint=ck)
    with pytest.raises(ValueError, match="differs"):
        Trainer.resume(ck, TEXT + "x")
    with pytest.raises(ValueError, match="hidden"):
        Trainer.resume(ck, TEXT, hidden_size=13)
    assert Trainer.resume(ck, TEXT, steps=4, lr=0.5, lr_schedule="constant").optimizer.lr == 0.5
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError):
        Trainer.resume(bad, TEXT)
    foreign = tmp_path / "foreign.npz"
    save_checkpoint(foreign, {"w": np.zeros(3)})
    with pytest.raises(CheckpointError, match="not a character model"):
        Trainer.resume(foreign, TEXT)


def test_checkpoint_loads_for_sampling(tmp_path):
    trainer = Trainer(TEXT, tiny(steps=3, dtype="float32"))
    quiet_run(trainer, checkpoint=tmp_path / "ck.npz")
    model, vocab, meta = load_model(tmp_path / "ck.npz")
    assert vocab == trainer.vocab and meta["step"] == 3 and model.head.weight.dtype == np.float32
    assert sample(model, vocab, 30, 0.7, "The", rng=2) == sample(trainer.model, trainer.vocab, 30, 0.7, "The", rng=2)


def test_run_validates_and_samples_on_schedule():
    messages = []
    trainer = Trainer(TEXT, tiny(steps=9, val_every=4, sample_every=6))
    result = trainer.run(progress=False, log=messages.append)
    assert trainer.history["val_step"] == [4, 8, 9]
    assert result.val_loss == trainer.history["val_loss"][-1] and np.isfinite(result.val_loss)
    assert sum(m.startswith("step ") for m in messages) == 2
    assert sum("sample at step 6" in m for m in messages) == 1
    assert len(trainer.history["loss"]) == 9 and result.chars_per_sec > 0


def test_update_clips_the_global_norm():
    layer = Linear(3, 2, rng=0)
    opt = make_optimizer("sgd", layer.parameters(), lr=0.0)
    loss = (layer(Tensor(np.full((4, 3), 100.0))) ** 2).sum()
    norm = update(loss, opt, clip=1.0)
    total = np.sqrt(sum(np.sum(p.grad ** 2) for p in layer.parameters()))
    assert norm > 10 and total == pytest.approx(1.0)


def test_fit_regression_and_early_stop():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((32, 2)))
    y = Tensor(x.data @ np.array([[2.0], [-1.0]]) + 0.5)
    layer = Linear(2, 1, rng=1)
    losses = fit(lambda step: F.mse_loss(layer(x), y), make_optimizer("adam", layer.parameters(), 0.05),
                 steps=400, progress=False, on_step=lambda step, loss: loss < 1e-4)
    assert losses[-1] < 1e-4 and len(losses) < 400
