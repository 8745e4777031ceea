"""Tests for `micrornn viz`: in-process through micrornn.cli.main, and once as a subprocess."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from micrornn.cli import main

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="the Graphviz 'dot' program is not installed here (.ci/run installs it)")


def test_graph_view_to_dot_text(tmp_path, capsys):
    out = tmp_path / "g.dot"
    assert main(["viz", "--steps", "3", "--layers", "2", "-o", str(out)]) == 0
    source = out.read_text()
    assert len(set(re.findall(r"subgraph (cluster_l\d+_t\d+) \{", source))) == 6
    assert "rnn.cells.1.W (8, 8)" in source
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (graph view, ") and "nodes" in printed and "edges" in printed


def test_max_steps_collapses(tmp_path):
    out = tmp_path / "g.dot"
    assert main(["viz", "--steps", "40", "--max-steps", "4", "-o", str(out)]) == 0
    source = out.read_text()
    assert len(re.findall(r"subgraph cluster_l0_t\d+ \{", source)) == 4
    assert "steps 3 to 38" in source


@needs_dot
@pytest.mark.parametrize("view", ["graph", "unrolled", "folded"])
def test_each_view_renders_svg(tmp_path, view):
    out = tmp_path / f"{view}.svg"
    grad = ["--grad"] if view != "folded" else []
    assert main(["viz", "--view", view, "--steps", "3", "--layers", "2", *grad, "-o", str(out)]) == 0
    assert b"<svg" in out.read_bytes()


def test_grad_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    out, plot = tmp_path / "u.dot", tmp_path / "flow.png"
    args = ["viz", "--view", "unrolled", "--steps", "12", "--layers", "2", "--grad", "--loss", "last",
            "--max-steps", "6", "--plot", str(plot), "-o", str(out)]
    assert main(args) == 0
    assert "</FONT>" in out.read_text()  # the h_t carry their gradient norms
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {plot}" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["-o", "g.gif"], "unknown extension"),
    (["--steps", "0", "-o", "g.dot"], "--steps must be a positive integer"),
    (["--hidden-size", "-3", "-o", "g.dot"], "--hidden-size must be a positive integer"),
    (["--layers", "0", "-o", "g.dot"], "--layers must be a positive integer"),
    (["--max-steps", "0", "-o", "g.dot"], "--max-steps must be a positive integer"),
    (["--view", "sideways", "-o", "g.dot"], "invalid choice"),
    (["--plot", "flow.txt", "-o", "g.dot"], "--plot"),
    (["--fused", "--grad", "-o", "g.dot"], "--fused"),
    (["--steps", "three", "-o", "g.dot"], "invalid int value"),
    (["-o", "no/such/dir/g.dot"], "does not exist"),
    ([], "required"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["viz", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_missing_dot_program_keeps_the_dot_text(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    out = tmp_path / "g.png"
    assert main(["viz", "-o", str(out)]) == 1
    assert "apt-get install graphviz" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "g.dot").read_text().startswith("digraph")


def test_python_dash_m_subprocess(tmp_path):
    out = tmp_path / "folded.dot"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                              os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "micrornn", "viz", "--view", "folded", "--layers", "2",
                             "-o", str(out)], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and out.read_text().startswith("digraph folded")
    bad = subprocess.run([sys.executable, "-m", "micrornn", "viz", "--steps", "-1", "-o", str(out)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


@needs_dot
def test_html_writes_the_stepper_page(tmp_path, capsys):
    out = tmp_path / "bptt.html"
    assert main(["viz", "--html", str(out), "--steps", "4", "--layers", "2"]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1
    assert "layer 1, step 4" in page and "from the layer above" in page
    assert capsys.readouterr().out.startswith(f"wrote {out} (backprop stepper: 4 steps")


@pytest.mark.parametrize("args,message", [
    (["--html", "p.html", "-o", "g.dot"], "drop -o"),
    (["--html", "p.html", "--grad", "--plot", "f.png"], "drop --plot, --grad"),
    (["--html", "p.txt"], "use a .html file"),
    (["--html", "p.html", "--steps", "11"], "at most 10"),
    (["--html", "p.html", "--steps", "1"], "--steps 2 or more"),
    (["--html", "no/such/dir/p.html"], "does not exist"),
])
def test_html_usage_errors(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["viz", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_plot_alone_needs_no_picture(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    plot = tmp_path / "flow.png"
    assert main(["viz", "--steps", "6", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {plot} (gradient flow") and printed.count("wrote") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["flow.png"]  # no picture, no stray .dot
    jac = tmp_path / "jac.png"
    assert main(["viz", "--steps", "4", "--jacobian", str(jac)]) == 0 and jac.read_bytes()[:4] == b"\x89PNG"
