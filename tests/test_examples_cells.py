"""Smoke test: the custom-cell example gradchecks, learns its task and draws its pictures."""
import pathlib
import re
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_cell.py"


def test_custom_cell_example(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(tmp_path), "--format", "dot",
                           "--steps", "100"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "gradcheck (autograd vs central differences" in proc.stdout and ": PASS" in proc.stdout
    accuracy = float(re.search(r"on new sequences: ([\d.]+)%", proc.stdout).group(1))
    assert accuracy >= 90, proc.stdout  # chance is 50%
    unrolled = (tmp_path / "custom_unrolled.dot").read_text()
    graph = (tmp_path / "custom_graph.dot").read_text()
    assert "h<SUB>4</SUB>" in unrolled and "step 1" in graph and "steps 3 to 4" in graph
