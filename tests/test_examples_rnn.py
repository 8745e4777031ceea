"""Smoke tests: the RNN gradient examples run and print what they promise."""
import pathlib
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run(name):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_gradcheck_rnn_example():
    out = run("gradcheck_rnn.py")
    assert out.count("PASS") == 9 and "FAIL" not in out
    assert out.splitlines()[-1].startswith("PASS: all 8 parameters agree")


def test_two_paths_example():
    lines = run("two_paths.py").splitlines()
    diffs = {l.split("(")[1].split(")")[0]: float(l.rsplit("=", 1)[1]) for l in lines if "max |engine -" in l}
    assert diffs["path 1 + path 2"] < 1e-12
    assert diffs["path 1 alone"] > 1e-3 and diffs["path 2 alone"] > 1e-3
    assert any("path 2  W^T" in l for l in lines)
