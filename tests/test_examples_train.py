"""Smoke tests: each training example runs with tiny settings and prints what it promises."""
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run(name, *args, cwd=None):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_char_rnn(tmp_path):
    out = run("char_rnn.py", "--steps", "4", "--hidden-size", "16", "--seq-len", "16", "--batch-size", "4",
              "--checkpoint", str(tmp_path / "ck.npz"), cwd=tmp_path)
    assert re.search(r"4 steps in .* validation \d+\.\d+ nats/char", out)
    assert "--- temperature 0.5 ---\nFirst Citizen:\n" in out and "(step 4)" in out
    assert (tmp_path / "ck.npz").is_file()


def test_binary_addition():
    out = run("binary_addition.py", "--steps", "20", "--hidden-size", "8")
    assert "held-out" in out and re.search(r"\d+ \+ +\d+ = +\d+; the RNN says \d+", out)
    assert "after 20 steps" in out


def test_sine_wave():
    out = run("sine_wave.py", "--steps", "5", "--hidden-size", "8")
    assert "trained 5 steps" in out and re.search(r"RNN \d\.\d+ +'next = current' \d\.\d+", out)


def test_vanishing_gradients(tmp_path):
    pytest.importorskip("matplotlib")
    out = run("vanishing_gradients.py", "--hidden-size", "8", "--lengths", "4", "30", "--out-dir", str(tmp_path))
    diffs = [float(d) for d in re.findall(r"max relative difference (\S+)", out)]
    assert len(diffs) == 4 and max(diffs) < 1e-10  # engine and analytic BPTT agree
    assert len(re.findall(r"T= 30 (tanh|relu) radius", out)) == 4
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "gradient_flow_T30.png", "gradient_flow_T30_summed_loss.png", "gradient_flow_T4.png"]
