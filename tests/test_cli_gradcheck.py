"""`micrornn gradcheck`: the three-way RNN gradient check from the command line."""
import subprocess
import sys

import pytest

from micrornn import bptt

from micrornn.check import routes as rnncheck
from micrornn.cli import main
from micrornn.nn import SequenceModel


def test_default_run_passes_and_prints_a_row_per_parameter(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "|auto-analytic|" in out and "auto~numeric" in out and "analytic~numeric" in out
    rows = [l for l in lines if l.split() and l.split()[0] in {
        "rnn.cells.0.U", "rnn.cells.0.W", "rnn.cells.0.b", "rnn.cells.1.U", "rnn.cells.1.W", "rnn.cells.1.b",
        "head.weight", "head.bias"}]
    assert len(rows) == 8 and all(r.endswith("PASS") for r in rows)
    assert lines[-1].startswith("PASS: all 8 parameters agree")
    # the numbers in the table are the measured ones: autograd and analytic agree to round-off
    assert all(float(r.split()[2]) < 1e-12 for r in rows)


@pytest.mark.parametrize("argv", [
    ["--layers", "3", "--nonlinearity", "relu", "--seed", "3", "--h0"],
    ["--fused", "--steps", "9", "--batch", "1", "--input-size", "2", "--hidden-size", "3", "--output-size", "6"],
    ["--layers", "1", "--steps", "1", "--eps", "1e-5", "--atol", "1e-4", "--rtol", "1e-2"],
])
def test_other_configurations_pass(argv, capsys):
    assert main(["gradcheck", *argv]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS")


def test_a_wrong_analytic_gradient_fails_with_exit_1(monkeypatch, capsys):
    real = bptt.loss_and_grads

    def wrong(model, *args, **kwargs):
        loss, grads = real(model, *args, **kwargs)
        grads["rnn.cells.1.W"] = grads["rnn.cells.1.W"] * 1.01
        return loss, grads

    monkeypatch.setattr(bptt, "loss_and_grads", wrong)
    assert main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    failed = [l.split()[0] for l in out.splitlines() if l.endswith("FAIL")]
    assert failed == ["rnn.cells.1.W"]
    assert out.splitlines()[-1].startswith("FAIL: 1 of 8 parameters disagree (rnn.cells.1.W)")


def test_a_wrong_autograd_gradient_fails_with_exit_1(monkeypatch, capsys):
    real = rnncheck.model_autograd_grads

    def wrong(*args, **kwargs):
        loss, grads = real(*args, **kwargs)
        grads["head.bias"] = grads["head.bias"] + 1e-9  # tiny, but far beyond round-off
        return loss, grads

    monkeypatch.setattr(rnncheck, "model_autograd_grads", wrong)
    assert main(["gradcheck"]) == 1
    assert [l.split()[0] for l in capsys.readouterr().out.splitlines() if l.endswith("FAIL")] == ["head.bias"]


def test_numeric_disagreement_is_reported_in_the_numeric_columns():
    model, x, targets, h0 = rnncheck.random_problem(seed=1)
    rows = rnncheck.compare(model, x, targets, h0)
    assert all(r.passed for r in rows)
    assert all(r.autograd_vs_numeric < 0.1 and r.analytic_vs_numeric < 0.1 for r in rows)
    # a far too large step makes the central differences wrong: the numeric columns must show it
    rows = rnncheck.compare(model, x, targets, h0, eps=0.5)
    assert not all(r.passed for r in rows)
    assert all(r.autograd_vs_analytic <= r.agree_tol for r in rows)
    assert max(r.analytic_vs_numeric for r in rows) > 1


def test_batch_first_model_is_compared_in_its_own_layout():
    model, x, targets, h0 = rnncheck.random_problem(seed=2, with_h0=True)
    cfg = {k: v for k, v in model.config.items() if k != "dtype"}
    bf = SequenceModel(**dict(cfg, batch_first=True), rng=0)
    bf.load_state_dict(model.state_dict())
    rows = rnncheck.compare(bf, x, targets, h0)
    assert all(r.passed for r in rows)


@pytest.mark.parametrize("argv, fragment", [
    (["--layers", "-1"], "--layers"),
    (["--hidden-size", "0"], "--hidden-size"),
    (["--steps", "two"], "--steps"),
    (["--batch", "1.5"], "--batch"),
    (["--nonlinearity", "sigmoid"], "--nonlinearity"),
    (["--eps", "abc"], "--eps"),
    (["--eps", "0"], "--eps"),
    (["--atol", "-1"], "--atol"),
    (["--atol", "0", "--rtol", "0"], "--atol"),
    (["--seed", "-3"], "--seed"),
    (["--bogus"], "--bogus"),
])
def test_invalid_options_exit_2_with_one_line(argv, fragment, capsys):
    assert main(["gradcheck", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err


def test_python_dash_m_runs_the_same_command():
    ok = subprocess.run([sys.executable, "-m", "micrornn", "gradcheck", "--steps", "3"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1].startswith("PASS") and ok.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "micrornn", "gradcheck", "--nonlinearity", "cube"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_a_closed_pipe_ends_the_command_quietly():
    """`micrornn gradcheck | head -1`: no BrokenPipeError traceback, the shell's status for SIGPIPE."""
    proc = subprocess.Popen([sys.executable, "-m", "micrornn", "gradcheck"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away after one line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
