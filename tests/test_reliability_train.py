"""Training that survives its own output, signals, full disks and divergence (issue 16, items 1-5,
8, 9 and 14), and the sampling options that go with item 1 (temperature 0, --top-k)."""
import errno
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from micrornn.nn import optim
from micrornn.cli import main
from micrornn.train import TrainConfig, Trainer
from micrornn.train import trainer as trainer_module
from micrornn.train.checkpoint import load_checkpoint
from micrornn.train.sample import sample

TEXT = "the quick brown fox jumps over the lazy dog. " * 40
SMALL = dict(hidden_size=8, num_layers=1, seq_len=8, batch_size=2, steps=4, val_every=0, sample_every=0,
             warmup=0)
CLI_SMALL = ["--hidden-size", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "--warmup", "0",
             "--val-every", "0", "--sample-every", "0", "--no-plot"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def _train(corpus, checkpoint, *extra):
    return main(["train", "--data", str(corpus), "--checkpoint", str(checkpoint), *CLI_SMALL, *extra])


def _saved_step(path) -> int:
    return load_checkpoint(path)[1]["step"]


# ---- item 1: output that fails never costs the run ------------------------------------------

def test_a_log_that_raises_broken_pipe_does_not_stop_training(tmp_path):
    calls = []

    def broken(text):
        calls.append(text)
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")
    trainer = Trainer(TEXT, TrainConfig(**{**SMALL, "val_every": 1}))
    result = trainer.run(checkpoint=tmp_path / "ck.npz", progress=False, log=broken)
    assert result.step == 4 and _saved_step(tmp_path / "ck.npz") == 4 and len(calls) == 1


def _child(args, env=None, stdout=subprocess.PIPE):
    return subprocess.Popen([sys.executable, "-m", "micrornn", *args], stdout=stdout, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, text=True)


def test_output_piped_into_head_still_saves_the_run(tmp_path, corpus):
    ck = tmp_path / "ck.npz"
    child = _child(["train", "--data", str(corpus), "--checkpoint", str(ck), *CLI_SMALL, "--steps", "30",
                    "--val-every", "1", "--sample-every", "1"])
    child.stdout.readline()
    child.stdout.close()  # as `| head -1` does
    _, err = child.communicate(timeout=300)
    assert "Traceback" not in err and child.returncode == 0, err
    assert _saved_step(ck) == 30


def test_a_terminal_that_cannot_encode_the_corpus_still_saves_the_run(tmp_path):
    corpus = tmp_path / "accents.txt"
    corpus.write_text("café déjà vu, naïve façade. " * 60, encoding="utf-8")
    ck = tmp_path / "ck.npz"
    child = _child(["train", "--data", str(corpus), "--checkpoint", str(ck), *CLI_SMALL, "--steps", "6",
                    "--sample-every", "2", "--sample-length", "40"], env={"PYTHONIOENCODING": "ascii"})
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0 and "Traceback" not in err, err
    assert "\\x" in out or "\\u" in out or "?" in out  # escaped, not lost
    assert _saved_step(ck) == 6


@pytest.mark.parametrize("temperature", [1e-310, 5e-324])
def test_tiny_temperatures_sample_without_nan(temperature):
    trainer = Trainer(TEXT, TrainConfig(**SMALL))
    greedy = sample(trainer.model, trainer.vocab, 20, 0, "the", rng=0)
    assert sample(trainer.model, trainer.vocab, 20, temperature, "the", rng=1) == greedy


def test_top_k_draws_only_among_the_k_most_likely():
    trainer = Trainer(TEXT, TrainConfig(**SMALL))
    model, vocab = trainer.model, trainer.vocab
    assert sample(model, vocab, 20, 1.0, "the", rng=3, top_k=1) == sample(model, vocab, 20, 0, "the")
    from micrornn.train.sample import next_id
    logits = np.array([0.0, 5.0, 1.0, 4.0, 3.0])
    drawn = {next_id(logits, 10.0, np.random.default_rng(s), top_k=2) for s in range(200)}
    assert drawn == {1, 3}


def test_sample_command_temperature_zero_and_top_k(tmp_path, corpus, capsys):
    ck = tmp_path / "ck.npz"
    assert _train(corpus, ck, "--steps", "2", "--quiet") == 0
    capsys.readouterr()
    outputs = []
    for extra in (["--temperature", "0", "--seed", "1"], ["--temperature", "0", "--seed", "2"],
                  ["--top-k", "1", "--seed", "3"], ["--temperature", "1e-310", "--seed", "4"]):
        assert main(["sample", "--checkpoint", str(ck), "--length", "30", "--prime", "the", *extra]) == 0
        outputs.append(capsys.readouterr().out)
    assert len(set(outputs)) == 1  # all greedy


# ---- item 2: Ctrl-C at any moment ------------------------------------------------------------

def test_ctrl_c_during_the_final_validation_saves(tmp_path, monkeypatch):
    trainer = Trainer(TEXT, TrainConfig(**SMALL))
    real = trainer.evaluate

    def interrupted(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)
    monkeypatch.setattr(trainer, "evaluate", interrupted)
    result = trainer.run(checkpoint=tmp_path / "ck.npz", progress=False, log=lambda s: None)
    assert result.interrupted and result.step == 4 and _saved_step(tmp_path / "ck.npz") == 4


def test_two_ctrl_c_save_the_last_completed_step_and_never_half_an_update(tmp_path, monkeypatch):
    trainer = Trainer(TEXT, TrainConfig(**{**SMALL, "steps": 10}))
    real_step = trainer.optimizer.step

    def step_interrupted_twice():
        if trainer.optimizer.step_count == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        real_step()
    monkeypatch.setattr(trainer.optimizer, "step", step_interrupted_twice)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(checkpoint=tmp_path / "ck.npz", progress=False, log=lambda s: None)
    assert trainer.step == 3 == trainer.optimizer.step_count  # the update in progress completed
    assert _saved_step(tmp_path / "ck.npz") == 3


# ---- item 3: a full disk ---------------------------------------------------------------------

def test_a_full_disk_at_the_final_save_keeps_the_old_checkpoint_and_rescues_the_state(
        tmp_path, corpus, monkeypatch, capsys):
    ck = tmp_path / "ck.npz"
    assert _train(corpus, ck, "--steps", "2", "--quiet") == 0
    before = ck.read_bytes()
    real = trainer_module.save_checkpoint

    def full(path, *a, **k):
        if str(path) == str(ck):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *a, **k)
    monkeypatch.setattr(trainer_module, "save_checkpoint", full)
    monkeypatch.setattr(trainer_module.tempfile, "gettempdir", lambda: str(tmp_path))
    capsys.readouterr()
    assert _train(corpus, ck, "--steps", "4", "--resume", "--quiet") == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "No space left on device" in err and "Traceback" not in err
    assert ck.read_bytes() == before
    rescue = [p for p in tmp_path.iterdir() if "rescue" in p.name]
    assert len(rescue) == 1 and str(rescue[0]) in err and _saved_step(rescue[0]) == 4


# ---- item 4: divergence saves the last finite state ------------------------------------------

def test_divergence_saves_the_last_finite_state(tmp_path):
    trainer = Trainer(TEXT, TrainConfig(**{**SMALL, "steps": 8}))

    def blow_up(t):
        if t.step == 2:
            t.model.head.weight.data[...] = 3e38  # finite float32, but the logits overflow
    with pytest.raises(FloatingPointError):
        trainer.run(checkpoint=tmp_path / "ck.npz", progress=False, log=lambda s: None, on_step=blow_up)
    params, meta, _ = load_checkpoint(tmp_path / "ck.npz")
    assert meta["step"] == 2 and all(np.isfinite(p).all() for p in params.values())


def test_divergence_in_the_cli_is_one_line_on_stderr_naming_the_checkpoint(tmp_path, corpus, monkeypatch, capsys):
    real = Trainer.train_step

    def diverging(self):
        if self.step == 2:
            raise FloatingPointError("Adam.step: gradient of parameter 0 contains NaN or Inf")
        return real(self)
    monkeypatch.setattr(Trainer, "train_step", diverging)
    ck = tmp_path / "ck.npz"
    assert _train(corpus, ck, "--steps", "5", "--quiet") == 1
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and str(ck) in captured.err
    assert "diverged" in captured.err and "diverged" not in captured.out
    assert _saved_step(ck) == 2


# ---- item 5: the optimizer checks its update, not only the gradient ---------------------------

def test_a_nan_optimizer_state_is_refused_by_step_and_changes_nothing():
    w = optim.Adam([p := __import__("micrornn").Tensor(np.ones(3), requires_grad=True)], lr=0.1)
    p.grad = np.ones(3)
    w.step()
    w.state[0]["exp_avg_sq"][1] = np.nan
    before, state = p.data.copy(), {k: np.copy(v) for k, v in w.state[0].items()}
    with pytest.raises(FloatingPointError, match="update"):
        w.step()
    np.testing.assert_array_equal(p.data, before)
    for k, v in state.items():
        np.testing.assert_array_equal(w.state[0][k], v)
    assert w.step_count == 1


def test_loading_a_non_finite_optimizer_state_is_refused():
    p = __import__("micrornn").Tensor(np.ones(3), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    state = opt.state_dict()
    state["state"][0]["momentum_buffer"][0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        optim.SGD([p], lr=0.1, momentum=0.9).load_state_dict(state)


# ---- items 8 and 9: paths, overwriting, concurrent runs --------------------------------------

def test_a_second_fresh_run_refuses_to_overwrite_and_says_what_to_do(tmp_path, corpus, capsys):
    ck = tmp_path / "ck.npz"
    assert _train(corpus, ck, "--steps", "3", "--quiet") == 0
    before = ck.read_bytes()
    capsys.readouterr()
    assert _train(corpus, ck, "--steps", "1", "--quiet") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--resume" in err and "--overwrite" in err
    assert ck.read_bytes() == before
    assert _train(corpus, ck, "--steps", "1", "--quiet", "--overwrite") == 0 and _saved_step(ck) == 1


def test_a_run_refuses_a_checkpoint_another_run_holds(tmp_path, corpus, capsys):
    from micrornn.train.lock import checkpoint_lock
    ck = tmp_path / "ck.npz"
    with checkpoint_lock(ck):
        code = subprocess.run([sys.executable, "-m", "micrornn", "train", "--data", str(corpus), "--checkpoint",
                               str(ck), *CLI_SMALL, "--steps", "1", "--quiet"], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
    assert code.returncode == 2 and "in use by another micrornn train" in code.stderr and not ck.exists()
    assert _train(corpus, ck, "--steps", "1", "--quiet") == 0  # released


def test_a_killed_run_leaves_no_lock_behind(tmp_path, corpus):
    ck = tmp_path / "ck.npz"
    script = ("import time\nfrom micrornn.train.lock import checkpoint_lock\n"
              f"with checkpoint_lock({str(ck)!r}):\n    print('locked', flush=True)\n    time.sleep(300)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": ROOT})
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait(60)
    assert _train(corpus, ck, "--steps", "1", "--quiet") == 0


@pytest.mark.parametrize("extra, message", [
    (["--plot", "{ck}"], "--plot"),
    (["--plot", "{dir}/new/picture.gif"], "--plot"),
    (["--resume", "--layers", "2"], "--layers"),
])
def test_refused_runs_create_nothing_and_name_the_option(tmp_path, corpus, capsys, extra, message):
    ck = tmp_path / "deep" / "dir" / "ck.npz"
    if "--resume" in extra:
        ck.parent.mkdir(parents=True)
        assert _train(corpus, ck, "--steps", "1", "--quiet") == 0
    capsys.readouterr()
    listing = sorted(tmp_path.rglob("*"))
    extra = [e.format(ck=ck, dir=tmp_path) for e in extra]
    args = [a for a in CLI_SMALL if a != "--no-plot"]
    assert main(["train", "--data", str(corpus), "--checkpoint", str(ck), *args, "--steps", "2", "--quiet",
                 *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "--num-layers" not in err and len(err.strip().splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == listing


def test_a_special_file_as_checkpoint_is_refused(tmp_path, corpus, capsys):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    assert _train(corpus, fifo, "--steps", "1", "--quiet", "--overwrite") == 2
    assert "not a regular file" in capsys.readouterr().err and not fifo.is_file()


# ---- item 14: sizes that cannot fit in memory ------------------------------------------------

@pytest.mark.parametrize("option", ["--hidden-size", "--layers", "--sample-length"])
def test_absurd_sizes_are_refused_in_one_line_naming_the_option(tmp_path, corpus, capsys, option):
    args = [a for a in CLI_SMALL]
    if option in args:
        i = args.index(option)
        del args[i:i + 2]
    code = main(["train", "--data", str(corpus), "--checkpoint", str(tmp_path / "ck.npz"), *args,
                 option, "99999999999", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and option in err and "bytes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ck.npz").exists()


@pytest.mark.parametrize("command", [["gradcheck", "--hidden-size"], ["gradcheck", "--input-size"],
                                     ["gradcheck", "--output-size"], ["gradcheck", "--steps"],
                                     ["gradcheck", "--batch"], ["viz", "--hidden-size"]])
def test_absurd_sizes_elsewhere_are_refused(tmp_path, capsys, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = ["-o", "x.dot"] if command[0] == "viz" else []
    code = main([*command, "99999999999", *extra])
    err = capsys.readouterr().err
    assert code == 2 and command[1] in err and len(err.strip().splitlines()) == 1


# ---- item 15: a large corpus costs a small multiple of its size -----------------------------

def test_loading_a_long_text_stays_within_a_small_multiple_of_its_size():
    import tracemalloc
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghij klmnopqrstuvwxyz.,\n", dtype=np.uint8)
    text = letters[rng.integers(0, len(letters), 8_000_000)].tobytes().decode("ascii")
    tracemalloc.start()
    try:
        trainer = Trainer(text, TrainConfig(**SMALL))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(text), peak  # was about 10x (int64 ids, a UTF-32 copy, a UTF-8 copy, ...)
    assert trainer.train_ids.itemsize == 1 and len(trainer.vocab) == len(set(text))
    x, y = trainer.stream.chunk(0)
    assert x.dtype == np.int64 and x.shape == (8, 2) and trainer.vocab.decode(x[:, 0]) == text[:8]


def test_periodic_validation_reads_only_the_characters_it_scores(monkeypatch):
    trainer = Trainer(TEXT, TrainConfig(**SMALL))
    seen = []
    monkeypatch.setattr(trainer_module, "evaluate", lambda model, ids, max_chars=None: seen.append(len(ids)) or 1.0)
    trainer.evaluate(max_chars=50)
    trainer.evaluate()
    assert seen == [51, len(trainer.val_ids)]
