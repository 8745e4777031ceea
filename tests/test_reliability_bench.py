"""`micrornn bench` killed: its measuring subprocess dies with it (issue 16, item 16)."""
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_a_killed_bench_takes_its_subprocess_with_it():
    bench = subprocess.Popen([sys.executable, "-m", "micrornn", "bench", "--isolate", "--sizes", "large",
                              "--dtype", "float64", "--threads", "1", "--no-torch", "--no-extras", "--repeats", "50"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": ROOT})
    try:
        deadline, children = time.time() + 120, []
        while not children and time.time() < deadline:
            time.sleep(0.2)
            children = _children(bench.pid)
        assert children, "the benchmark started no subprocess"
        bench.send_signal(signal.SIGKILL)
        bench.wait(30)
        deadline = time.time() + 30
        while any(_alive(c) for c in children) and time.time() < deadline:
            time.sleep(0.2)
        survivors = [c for c in children if _alive(c)]
        for c in survivors:  # clean up what the test started, then fail
            os.kill(c, signal.SIGKILL)
        assert not survivors
    finally:
        if bench.poll() is None:
            bench.kill()
