"""micrornn.check.divergence: per-step hidden gradients three ways, and the first step (and gate) where a
deliberately wrong derivation makes the routes part ways; `micrornn gradcheck --cell ...` around it."""
import numpy as np
import pytest

from micrornn.check import divergence

from micrornn.check import routes as rnncheck
from micrornn.bptt import lstm
from micrornn.cli import main


def small(cell, bidirectional=False, layers=1, steps=3, **kw):
    return rnncheck.random_problem(layers, 2, 2, 3, steps, 1, cell=cell, bidirectional=bidirectional, **kw)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_graph_step_grads_equal_the_analytic_ones(cell):
    model, x, y, h0 = rnncheck.random_problem(2, cell=cell, bidirectional=True, with_h0=True)
    graph = divergence.graph_step_grads(model, x, y, h0)
    analytic = divergence.analytic_step_grads(model, x, y, h0)
    assert set(graph) == set(analytic) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for key in graph:
        for q in divergence.QUANTITIES:
            if analytic[key][q] is None:
                assert cell != "lstm" or q != "c"
                continue
            np.testing.assert_allclose(graph[key][q], analytic[key][q], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_no_divergence_when_everything_is_right(cell):
    model, x, y, h0 = small(cell, bidirectional=True, with_h0=True)
    assert divergence.first_divergence(model, x, y, h0) is None
    assert "agree" in divergence.describe(None)


@pytest.mark.parametrize("cell, gate, also", [
    ("rnn", "a", []), ("lstm", "i", []), ("lstm", "f", []), ("lstm", "g", []), ("lstm", "o", []),
    ("gru", "r", []), ("gru", "z", []), ("gru", "n", ["r"])])
def test_a_wrong_gate_derivative_is_found_at_the_last_step_and_named(cell, gate, also):
    model, x, y, h0 = rnncheck.random_problem(2, cell=cell, with_h0=True)
    with divergence.wrong_derivative(cell, gate):
        found = divergence.first_divergence(model, x, y, h0)
    assert (found["layer"], found["direction"], found["t"], found["quantity"]) == (1, 0, 6, "gates")
    assert found["gate"] == gate and found["other_gates"] == also
    assert {r for pair in found["disagree"] for r in pair} == {"graph", "analytic", "numeric"}
    assert ("graph", "numeric") not in found["disagree"]  # the analytic route is the odd one out
    text = divergence.describe(found)
    assert f"gate {gate}" in text and "step t=6 of 6" in text and "the analytic route parts" in text


def test_the_reverse_direction_is_walked_from_its_own_last_step(monkeypatch):
    """A derivation that is wrong only for the reverse direction shows at t=1, its last step."""
    model, x, y, h0 = rnncheck.random_problem(1, cell="lstm", bidirectional=True, steps=4)
    real = lstm.lstm_layer_backward
    calls = []

    def wrong_second_call(*args, **kwargs):  # the analytic route runs direction 0, then direction 1
        calls.append(1)
        out = real(*args, **kwargs)
        if len(calls) % 2 == 0:
            out[-1][0][-1] *= 1.01  # the reverse direction's dL/dh at its own last step (input t=1)
        return out

    monkeypatch.setattr(lstm, "lstm_layer_backward", wrong_second_call)
    found = divergence.first_divergence(model, x, y, h0)
    assert (found["direction"], found["t"], found["quantity"]) == (1, 1, "h")


def test_a_wrong_derivative_is_undone_after_the_block():
    model, x, y, h0 = small("gru")
    with divergence.wrong_derivative("gru", "z"):
        assert divergence.first_divergence(model, x, y, h0) is not None
    assert divergence.first_divergence(model, x, y, h0) is None
    with pytest.raises(ValueError, match="gru gates are"):
        with divergence.wrong_derivative("gru", "f"):
            pass


# ----------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("argv", [
    ["--cell", "lstm"],
    ["--cell", "gru", "--bidirectional", "--h0", "--batch-first", "--layers", "1", "--steps", "4"],
    ["--cell", "lstm", "--bidirectional", "--no-bias", "--layers", "1", "--fused"],
    ["--bidirectional", "--nonlinearity", "relu", "--seed", "3", "--h0"],
])
def test_every_cell_kind_passes_every_route(argv, capsys):
    assert main(["gradcheck", *argv]) == 0
    out = capsys.readouterr().out
    assert "|fused-auto|" in out and "fused~numeric" in out
    assert out.splitlines()[-1].startswith("PASS: all")


def test_a_broken_gate_fails_and_names_step_and_gate(capsys):
    assert main(["gradcheck", "--cell", "lstm", "--break-gate", "f"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any("deliberately wrong" in line for line in lines)
    found = [line for line in lines if line.startswith("first divergence")]
    assert len(found) == 1 and "layer 1 (forward), step t=6 of 6, gate f" in found[0]
    assert lines[-1].startswith("FAIL:") and "rnn.cells.0.W" in lines[-1] and "head.weight" not in lines[-1]


@pytest.mark.parametrize("argv, message", [
    (["--cell", "gru", "--break-gate", "f"], "--break-gate for gru must be one of r, z, n"),
    (["--cell", "lstm", "--nonlinearity", "relu"], "--nonlinearity applies to --cell rnn only"),
    (["--cell", "tree"], "invalid choice"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    assert main(["gradcheck", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_gated_gradients_example_checks_its_routes(capsys):
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).parent.parent / "examples" / "gated_gradients.py"
    spec = importlib.util.spec_from_file_location("gated_gradients", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--steps", "12", "--hidden-size", "5", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    difference = float(out.split("max relative difference")[1].split()[0])
    assert difference < 1e-10
    assert out.count("per step back") == 5 and "lstm, keep-gate bias +3" in out
