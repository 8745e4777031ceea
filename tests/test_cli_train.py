"""`micrornn train` and `micrornn sample`: the main job end to end, Ctrl-C, resume, bad input."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from micrornn.train.checkpoint import load_checkpoint, save_checkpoint
from micrornn.cli import main

from tiny_runs import TINY_TRAIN, WINTER as TEXT

TINY = [*TINY_TRAIN, "--val-every", "0"]


def train(tmp_path, corpus, *extra, checkpoint="ck.npz"):
    return main(["train", "--data", str(corpus), "--checkpoint", str(tmp_path / checkpoint), *TINY, *extra])


def test_train_then_sample(tmp_path, corpus, capsys):
    assert train(tmp_path, corpus, "--steps", "6", "--plot", str(tmp_path / "plots" / "loss.png")) == 0
    out = capsys.readouterr().out
    assert "done: 6 steps" in out and "validation" in out and "nats/char" in out
    assert "--- sample" in out and "loss curve:" in out
    assert (tmp_path / "ck.npz").is_file() and (tmp_path / "plots" / "loss.png").stat().st_size > 1000
    _, meta, _ = load_checkpoint(tmp_path / "ck.npz")
    assert meta["step"] == 6 and meta["model"]["hidden_size"] == 12

    assert main(["sample", "--checkpoint", str(tmp_path / "ck.npz"), "--length", "30", "--prime", "Now",
                 "--seed", "3", "--temperature", "0.5"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Now") and len(text.rstrip("\n")) <= 33 and set(text) <= set(TEXT)
    main(["sample", "--checkpoint", str(tmp_path / "ck.npz"), "--length", "30", "--prime", "Now",
          "--seed", "3", "--temperature", "0.5"])
    assert capsys.readouterr().out == text  # same seed, same text


def test_default_checkpoint_and_plot_go_to_runs(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(corpus), *TINY, "--steps", "2", "--quiet"]) == 0
    assert (tmp_path / "runs" / "char_rnn.npz").is_file()
    assert (tmp_path / "runs" / "char_rnn_loss.png").is_file()
    assert main(["sample", "--length", "5", "--seed", "0"]) == 0


def test_cli_resume_equals_straight_run(tmp_path, corpus, capsys):
    # (with the default cosine schedule the 4-step run would decay to 0 at step 4: use constant)
    constant = ["--no-plot", "--lr-schedule", "constant"]
    assert train(tmp_path, corpus, "--steps", "9", *constant, checkpoint="straight.npz") == 0
    assert train(tmp_path, corpus, "--steps", "4", *constant, checkpoint="split.npz") == 0
    assert main(["train", "--resume", "--checkpoint", str(tmp_path / "split.npz"), "--steps", "9",
                 "--no-plot", "--quiet"]) == 0
    a, meta_a, _ = load_checkpoint(tmp_path / "straight.npz")
    b, meta_b, _ = load_checkpoint(tmp_path / "split.npz")
    assert meta_a["step"] == meta_b["step"] == 9
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    capsys.readouterr()
    assert main(["train", "--resume", "--checkpoint", str(tmp_path / "split.npz"), "--no-plot",
                 "--steps", "9"]) == 0
    assert "already trained 9 steps" in capsys.readouterr().out


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, corpus):
    ck = tmp_path / "ck.npz"
    cmd = [sys.executable, "-m", "micrornn", "train", "--data", str(corpus), "--checkpoint", str(ck),
           *TINY, "--steps", "100000", "--val-every", "1", "--no-plot"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stdout:  # wait until training is under way
            if line.startswith("step 2:"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted at step" in out and "--resume" in out
    _, meta, state = load_checkpoint(ck)
    assert 2 <= meta["step"] < 100000 and state["hidden"].shape == (1, 4, 12)
    step = meta["step"]
    assert main(["train", "--resume", "--checkpoint", str(ck), "--steps", str(step + 2), "--quiet",
                 "--no-plot"]) == 0
    assert load_checkpoint(ck)[1]["step"] == step + 2


def test_no_matplotlib_skips_the_plot_in_one_line(tmp_path, corpus):
    code = ("import sys; sys.modules['matplotlib'] = None; from micrornn.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    cmd = [sys.executable, "-c", code, "train", "--data", str(corpus), "--checkpoint",
           str(tmp_path / "ck.npz"), *TINY, "--steps", "2", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sum("matplotlib is not installed" in line for line in proc.stdout.splitlines()) == 1
    assert (tmp_path / "ck.npz").is_file() and not (tmp_path / "ck_loss.png").exists()


def _bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "short":
        path.write_text("a tiny corpus\n")
    return path


@pytest.mark.parametrize("kind,message", [("missing", "not"), ("empty", "empty"), ("binary", "binary"),
                                          ("short", "too short")])
def test_bad_data_exits_2(tmp_path, kind, message, capsys):
    data = _bad_file(tmp_path, kind)
    code = main(["train", "--data", str(data), "--checkpoint", str(tmp_path / "ck.npz"), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ck.npz").exists()


@pytest.mark.parametrize("args,message", [
    (["--hidden-size", "-4"], "--hidden-size"), (["--hidden-size", "0"], "--hidden-size"),
    (["--layers", "two"], "--layers"), (["--seq-len", "0"], "--seq-len"), (["--batch-size", "-1"], "--batch-size"),
    (["--steps", "-5"], "--steps"), (["--lr", "0"], "--lr"), (["--lr", "-0.1"], "--lr"), (["--lr", "nan"], "--lr"),
    (["--optimizer", "rmsprop"], "--optimizer"), (["--lr-schedule", "step"], "--lr-schedule"), (["--clip", "-1"], "--clip"), (["--dtype", "float16"], "--dtype"),
    (["--temperature", "-0.5"], "--temperature"), (["--seed", "-1"], "--seed"),
])
def test_nonsense_numbers_exit_2(tmp_path, corpus, args, message, capsys):
    assert train(tmp_path, corpus, *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["under_a_file", "is_a_directory"])
def test_unwritable_checkpoint_is_refused_before_training(tmp_path, corpus, where, capsys):
    blocker = tmp_path / "blocker"
    if where == "under_a_file":
        blocker.write_text("not a directory")
        ck = blocker / "ck.npz"
    else:
        blocker.mkdir()
        ck = blocker
    code = main(["train", "--data", str(corpus), "--checkpoint", str(ck), *TINY, "--steps", "5"])
    out, err = capsys.readouterr()
    assert code == 2 and "cannot write checkpoint" in err and len(err.strip().splitlines()) == 1
    assert "done" not in out and "model:" not in out


def test_unwritable_plot_is_refused_before_training(tmp_path, corpus, capsys):
    (tmp_path / "file").write_text("x")
    assert train(tmp_path, corpus, "--plot", str(tmp_path / "file" / "loss.png")) == 2
    assert "cannot write plot" in capsys.readouterr().err


def test_resume_problems_exit_2(tmp_path, corpus, capsys):
    ck = tmp_path / "ck.npz"
    assert main(["train", "--resume", "--checkpoint", str(ck)]) == 2
    assert "not found" in capsys.readouterr().err
    ck.write_bytes(b"garbage, not a checkpoint")
    assert main(["train", "--resume", "--checkpoint", str(ck)]) == 2
    assert "not a micrornn checkpoint" in capsys.readouterr().err
    assert train(tmp_path, corpus, "--steps", "2", "--no-plot", "--quiet", "--overwrite") == 0
    assert main(["train", "--resume", "--checkpoint", str(ck), "--hidden-size", "13", "--steps", "4"]) == 2
    assert "hidden" in capsys.readouterr().err
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    assert main(["train", "--resume", "--checkpoint", str(ck), "--data", str(other), "--steps", "4"]) == 2
    assert "differs" in capsys.readouterr().err


def test_sample_bad_input_exits_2(tmp_path, corpus, capsys):
    ck = tmp_path / "ck.npz"
    assert main(["sample", "--checkpoint", str(ck)]) == 2
    assert "not found" in capsys.readouterr().err
    ck.write_bytes(b"PK\x03\x04truncated")
    assert main(["sample", "--checkpoint", str(ck)]) == 2
    assert "checkpoint" in capsys.readouterr().err
    save_checkpoint(tmp_path / "foreign.npz", {"w": np.ones(2)})
    assert main(["sample", "--checkpoint", str(tmp_path / "foreign.npz")]) == 2
    assert "not a character model" in capsys.readouterr().err
    assert train(tmp_path, corpus, "--steps", "1", "--no-plot", "--quiet", "--overwrite") == 0
    capsys.readouterr()
    for args, message in [(["--prime", "Zürich"], "'Z', 'ü'"), (["--temperature", "nan"], "--temperature"),
                          (["--temperature", "-2"], "--temperature"), (["--length", "-1"], "--length")]:
        assert main(["sample", "--checkpoint", str(ck), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_bad_input_through_the_real_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "micrornn", "train", "--data", str(tmp_path / "nope.txt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "nope.txt" in proc.stderr
