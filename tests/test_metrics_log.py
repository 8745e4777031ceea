"""`micrornn train --log/--tensorboard` and `micrornn plot`: a run's metrics outlive it and redraw its curve."""
from __future__ import annotations

import json

import pytest

from micrornn.cli import main
from micrornn.train.checkpoint import load_checkpoint
from micrornn.train.metrics import MetricsLog, read_log

from tiny_runs import TINY_TRAIN

TINY = [*TINY_TRAIN, "--quiet", "--no-plot"]


def records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_log_has_a_line_per_step_and_validation_and_redraws_the_curve(tmp_path, corpus, capsys):
    log, ck = tmp_path / "logs" / "run.jsonl", tmp_path / "ck.npz"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(ck), *TINY, "--steps", "6",
                 "--val-every", "3", "--val-chars", "10", "--log", str(log)]) == 0
    lines = records(log)
    train = [r for r in lines if r["kind"] == "train"]
    val = [r for r in lines if r["kind"] == "val"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6] and [r["step"] for r in val] == [3, 6]
    for r in train:
        assert {"loss", "lr", "grad_norm", "chars_per_sec", "seconds"} <= set(r) and r["grad_norm"] > 0
    assert val[0]["val_chars"] > 0 and val[1]["val_chars"] == 0  # a prefix, then the whole split at the end
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(lines, lines[1:]))
    _, meta, _ = load_checkpoint(ck)
    assert read_log(log) == {k: meta["history"][k] for k in ("step", "loss", "val_step", "val_loss", "val_chars")}

    out = tmp_path / "curve.png"
    assert main(["plot", str(log), "-o", str(out)]) == 0
    assert out.stat().st_size > 1000 and "6 training steps, 2 validations" in capsys.readouterr().out


def test_resume_appends_to_the_log(tmp_path, corpus):
    log, ck = tmp_path / "run.jsonl", tmp_path / "ck.npz"
    base = ["train", "--data", str(corpus), "--checkpoint", str(ck), *TINY, "--val-every", "0", "--log", str(log)]
    assert main(base + ["--steps", "3"]) == 0
    assert main(base + ["--steps", "5", "--resume"]) == 0
    assert [r["step"] for r in records(log) if r["kind"] == "train"] == [1, 2, 3, 4, 5]


def test_log_every(tmp_path, corpus):
    log = tmp_path / "run.jsonl"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(tmp_path / "ck.npz"), *TINY, "--steps", "6",
                 "--val-every", "0", "--log", str(log), "--log-every", "4"]) == 0
    assert [r["step"] for r in records(log) if r["kind"] == "train"] == [4]


def test_plot_refuses_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "train", "step": 1, "loss": 2.0}\nnot json\n')
    assert main(["plot", str(bad)]) == 2
    assert "bad.jsonl:2: not a micrornn metrics record" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["plot", str(bad), "-o", str(tmp_path / "x.txt")]) == 2
    assert not (tmp_path / "bad_loss.png").exists()


def test_tensorboard_scalars(tmp_path, corpus):
    pytest.importorskip("tensorboardX", reason="the TensorBoard writer is an optional extra")
    tb = tmp_path / "tb"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(tmp_path / "ck.npz"), *TINY, "--steps", "3",
                 "--val-every", "0", "--tensorboard", str(tb)]) == 0
    events = list(tb.glob("events.out.tfevents.*"))
    assert len(events) == 1
    content = events[0].read_bytes()
    assert b"train/loss" in content and b"train/grad_norm" in content and b"val/val_loss" in content


def test_metrics_log_writes_null_for_nan(tmp_path):
    with MetricsLog(tmp_path / "m.jsonl") as m:
        m.write("train", 1, loss=float("nan"), lr=0.1)
    (record,) = records(tmp_path / "m.jsonl")
    assert record["loss"] is None and record["lr"] == 0.1
