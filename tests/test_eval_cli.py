"""`micrornn eval` and the quality options of `micrornn train`: output, agreement with the library, bad input."""
import gzip
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from micrornn.train.checkpoint import load_checkpoint, save_checkpoint
from micrornn.cli import main
from micrornn.train.data import load_text
from micrornn.train.sample import load_model
from micrornn.train import evaluate

TINY = ["--hidden-size", "12", "--layers", "1", "--seq-len", "8", "--batch-size", "4", "--val-every", "0",
        "--sample-every", "0", "--dtype", "float64", "--no-plot", "--quiet"]
TEXT = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 10


@pytest.fixture
def trained(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    ck = tmp_path / "ck.npz"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(ck), "--steps", "5", *TINY]) == 0
    capsys.readouterr()
    return ck, corpus


def scores(out):
    nats, bits = re.search(r"(\d+\.\d+) nats/char, (\d+\.\d+) bits/char", out).groups()
    return float(nats), float(bits)


def test_eval_prints_the_validation_loss_the_library_computes(trained, capsys):
    ck, corpus = trained
    assert main(["eval", "--checkpoint", str(ck)]) == 0
    out = capsys.readouterr().out
    nats, bits = scores(out)
    model, vocab, meta = load_model(ck)
    cut = int(len(TEXT) * 0.9)
    expected = evaluate(model, vocab.encode(TEXT[cut:]))
    assert nats == pytest.approx(expected, abs=1e-4) and bits == pytest.approx(expected / math.log(2), abs=1e-4)
    assert f"{len(TEXT) - cut:,} characters" in out and "one stream" in out and "step 5" in out
    assert nats == pytest.approx(meta["validation"]["nats_per_char"], abs=1e-4)  # the run's own final score


def test_eval_splits_and_caps(trained, capsys):
    ck, corpus = trained
    model, vocab, _ = load_model(ck)
    cut = int(len(TEXT) * 0.9)
    for split, part in (("train", TEXT[:cut]), ("all", TEXT)):
        assert main(["eval", "--checkpoint", str(ck), "--split", split]) == 0
        assert scores(capsys.readouterr().out)[0] == pytest.approx(evaluate(model, vocab.encode(part)), abs=1e-4)
    assert main(["eval", "--checkpoint", str(ck), "--max-chars", "20"]) == 0
    out = capsys.readouterr().out
    assert "20 predictions" in out
    assert scores(out)[0] == pytest.approx(evaluate(model, vocab.encode(TEXT[cut:]), max_chars=20), abs=1e-4)


def test_eval_reads_gzip_data_and_notes_a_different_text(trained, tmp_path, capsys):
    ck, _ = trained
    other = tmp_path / "other.txt.gz"
    other.write_bytes(gzip.compress(TEXT[::-1].encode()))
    assert main(["eval", "--checkpoint", str(ck), "--data", str(other)]) == 0
    assert "not the text this checkpoint was trained on" in capsys.readouterr().out
    assert load_text(other) == TEXT[::-1]


def test_eval_bad_input_exits_2_with_one_line(trained, tmp_path, capsys):
    ck, corpus = trained
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04truncated")
    save_checkpoint(tmp_path / "foreign.npz", {"w": np.ones(2)})
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("Zebra Xylophone " * 20)
    cases = [(["--checkpoint", str(tmp_path / "missing.npz")], "not found"),
             (["--checkpoint", str(tmp_path)], "is a directory"),
             (["--checkpoint", str(broken)], "checkpoint"),
             (["--checkpoint", str(tmp_path / "foreign.npz")], "not a character model"),
             (["--checkpoint", str(ck), "--data", str(tmp_path / "nope.txt")], "nope.txt"),
             (["--checkpoint", str(ck), "--data", str(unknown)], "not in the vocabulary"),
             (["--checkpoint", str(ck), "--max-chars", "0"], "--max-chars"),
             (["--checkpoint", str(ck), "--split", "test"], "--split")]
    for args, message in cases:
        assert main(["eval", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    corpus.unlink()  # the checkpoint's own training text is gone
    assert main(["eval", "--checkpoint", str(ck)]) == 2
    err = capsys.readouterr().err
    assert "corpus.txt" in err and "--data" in err


def test_eval_through_the_real_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "micrornn", "eval", "--checkpoint", str(tmp_path / "x.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


# ---- the quality options of `micrornn train` ----------------------------------------------------
def test_train_refuses_bidirectional_and_bad_probabilities(trained, capsys):
    _, corpus = trained
    for args, message in [(["--bidirectional"], "left to right"), (["--dropout", "1"], "--dropout"),
                          (["--state-reset", "-0.1"], "--state-reset"), (["--preset", "huge"], "--preset"),
                          (["--cell", "transformer"], "--cell"), (["--time-budget", "-3"], "--time-budget"),
                          (["--layers", "1", "--dropout", "0.2"], "dropout acts between stacked layers")]:
        assert main(["train", "--data", str(corpus), *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)


def test_train_preset_with_overrides_and_the_final_report(trained, tmp_path, capsys):
    _, corpus = trained
    ck = tmp_path / "preset.npz"
    assert main(["train", "--preset", "rnn", "--data", str(corpus), "--checkpoint", str(ck), *TINY,
                 "--steps", "6", "--layers", "2", "--fused", "--patience", "3", "--val-every", "2", "--val-chars", "30",
                 "--warmup", "2", "--state-reset", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "done: 6 steps" in out and "bits/char" in out
    assert "reference figures are for the bundled tinyshakespeare" in out  # --data: not comparable
    _, meta, _ = load_checkpoint(ck)
    config = meta["config"]
    assert config["time_budget"] == 900.0 and config["hidden_size"] == 12 and config["fused"] is True
    assert (config["patience"], config["val_chars"], config["warmup"], config["state_reset"]) == (3, 30, 2, 0.1)
    assert (tmp_path / "preset_best.npz").is_file()


def test_eval_windows_protocol_prints_it_and_matches_the_library(trained, capsys):
    from micrornn.train import windowed_loss
    ck, _ = trained
    model, vocab, _ = load_model(ck)
    val = vocab.encode(TEXT[int(len(TEXT) * 0.9):])
    args = ["eval", "--checkpoint", str(ck), "--protocol", "windows", "--window", "16", "--windows", "30", "--seed", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "protocol windows" in out and "30 random windows of 16 predictions" in out and "seed 4" in out
    assert scores(out)[0] == pytest.approx(windowed_loss(model, val, 16, 30, 4), abs=1e-4)
    assert main(["eval", "--checkpoint", str(ck)]) == 0
    assert "protocol stream" in capsys.readouterr().out
    for bad, message in ((["--window", "500"], "--window 500"), (["--windows", "0"], "--windows"),
                         (["--protocol", "random"], "--protocol"), (["--seed", "-1"], "--seed")):
        assert main(["eval", "--checkpoint", str(ck), "--protocol", "windows", *bad]) == 2, bad
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (bad, err)


@pytest.mark.parametrize("extra", [["--windows", "5"], ["--window", "8", "--seed", "3"]])
def test_window_options_with_the_stream_protocol_are_refused(trained, capsys, extra):
    ck, _ = trained
    assert main(["eval", "--checkpoint", str(ck), *extra]) == 2  # not silently ignored
    err = capsys.readouterr().err
    assert "apply to --protocol windows only" in err and extra[0] in err and len(err.strip().splitlines()) == 1
