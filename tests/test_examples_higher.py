"""The higher-order examples run, agree with BPTT, and print what they promise (small sizes)."""
import pathlib
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run(name, *args):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_rtrl_equals_bptt_and_its_memory_does_not_grow_with_T():
    out = run("rtrl_vs_bptt.py", "--steps", "3", "6", "--hidden", "2", "--batch", "2")
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("3", "8"), ("6", "8"), ("50", "2")]
    for r in rows:  # T H params | bptt ms MB | rtrl ms MB gap | jvp ms MB gap
        assert float(r[9]) < 1e-12 and float(r[13]) < 1e-12
    short, long = rows[0], rows[1]
    assert float(long[5]) > float(short[5])  # BPTT keeps every step
    assert float(long[8]) == float(short[8])  # RTRL keeps none
    assert "PASS" in out.splitlines()[-1]


def test_hessian_sharpness_example_prints_its_table():
    out = run("hessian_sharpness.py", "--steps", "4", "--every", "2", "--iterations", "3", "--seq-len", "5",
              "--hidden", "4", "--batch", "4", "--cells", "rnn", "gru")
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit() and len(line.split()) == 4]
    assert [r[0] for r in rows] == ["0", "2", "4"] * 2
    assert all(float(r[1]) > 0 and abs(float(r[2])) < 1e3 for r in rows)
    assert "RNN, hidden 4" in out and "GRU, hidden 4" in out
