"""Views of gated cells and of the Jacobian: the LSTM's cell-state path, gate activity, ||dh_T/dh_t||."""
import re

import numpy as np
import pytest

from micrornn.cli import main
from micrornn.nn import SequenceModel
from micrornn.viz import (draw_folded, draw_unrolled, gate_activity, gate_summary, jacobian_norms, jacobian_view,
                          plot_gate_activity, plot_jacobian_view, recurrent_singular_values)


def model_and_data(cell="rnn", T=6, layers=1, hidden=5, batch=2, seed=0, **kw):
    rng = np.random.default_rng(seed)
    model = SequenceModel(3, hidden, 3, num_layers=layers, cell=cell, rng=rng, **kw)
    return model, rng.standard_normal((T, batch, 3)), rng.integers(0, 3, size=(T, batch))


# ---- the LSTM's cell-state path, drawn apart ------------------------------------------------------

def test_unrolled_lstm_draws_the_cell_state_as_its_own_row():
    model, _, _ = model_and_data("lstm", layers=2)
    source = draw_unrolled(model, steps=4).source
    for layer in (0, 1):
        assert re.search(rf"subgraph row_c{layer} \{{", source)
        cell_path = re.findall(rf"^\s*c{layer}_(\d+) -> c{layer}_(\d+) \[[^\n]*penwidth=2\.5", source, flags=re.M)
        assert [(int(a), int(b)) for a, b in cell_path] == [(0, 1), (1, 2), (2, 3), (3, 4)]  # from c_0
        assert re.search(rf"^\s*c{layer}_0 \[label=<c<SUB>0</SUB>", source, flags=re.M)
        out = re.findall(rf"^\s*c{layer}_(\d+) -> h{layer}_(\d+) (\[[^\n]*)", source, flags=re.M)
        assert [(int(a), int(b)) for a, b, _ in out] == [(t, t) for t in range(1, 5)]
        assert not any("penwidth" in attrs or "#1b7837" in attrs for _, _, attrs in out)  # not the cell path
    assert "forget gate f" in source
    rnn_source = draw_unrolled(model_and_data("rnn")[0], steps=4).source
    assert "row_c0" not in rnn_source and "penwidth" not in rnn_source


def test_gru_and_folded_lstm_name_their_gates():
    gru = draw_unrolled(model_and_data("gru")[0], steps=3).source
    assert "W (r, z, n); z ⊙ h" in gru and "U (r, z, n)" in gru and "row_c0" not in gru
    folded = draw_folded(model_and_data("lstm")[0]).source
    loops = [s for s, d in re.findall(r"^\s*(\w+) -> (\w+)", folded, flags=re.M) if s == d]
    assert sorted(loops) == ["c0", "h0"]


# ---- gate activity ------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("indices", [False, True])
def test_gates_give_back_the_engines_states(cell, indices):
    model, x, _ = model_and_data(cell, layers=2)
    if indices:
        x = np.random.default_rng(1).integers(0, 3, size=(6, 2))
    activity = gate_activity(model, x)
    output, _ = model.rnn(x)
    assert np.allclose(activity[(1, "h")], output.data, rtol=1e-12, atol=1e-14)
    names = {"lstm": "ifgo", "gru": "rzn"}[cell]
    assert {name for layer, name in activity if layer == 0} == set(names) | {"h"}


def test_saturation_counts_gates_near_0_or_1():
    activity = {(0, "f"): np.array([[[0.01, 0.5, 0.99, 0.96]], [[0.5, 0.5, 0.5, 0.04]]]), (0, "g"): np.linspace(-1, 1, 8).reshape(2, 1, 4)}
    summary = gate_summary(activity)
    mean, saturated = summary[(0, "f")]
    assert list(saturated) == [0.75, 0.25] and np.allclose(mean, [0.615, 0.385])
    assert (0, "g") not in summary  # tanh candidates (values below 0) are not gates that open and close


def test_gates_refuse_vanilla_rnn():
    with pytest.raises(ValueError, match="gate_activity: RNNCell names no gates"):
        gate_activity(model_and_data("rnn")[0], np.zeros((2, 1, 3)))


# ---- the Jacobian view ------------------------------------------------------------------------------

def test_jacobian_norms_match_the_product_of_step_jacobians():
    model, x, _ = model_and_data("rnn", T=7, hidden=4)
    norms = jacobian_norms(model, x)
    output, _ = model.rnn(x)
    h, W = output.data[:, 0], model.rnn.cells[0].W.data
    J = np.eye(4)
    for t in range(7, 0, -1):  # dh_T/dh_t = prod_{k=t+1..T} diag(1 - h_k^2) W
        assert norms[t] == pytest.approx(np.linalg.norm(J, 2), rel=1e-10)
        J = J @ (np.diag(1 - h[t - 1] ** 2) @ W)
    assert norms[7] == pytest.approx(1.0)
    assert all(p.grad is None for p in model.parameters())  # the H backward passes leave no trace


def test_singular_values_per_gate_block():
    model = model_and_data("lstm", hidden=4)[0]
    sv = recurrent_singular_values(model)
    W = model.rnn.cells[0].W.data
    assert list(sv) == ["W_i", "W_f", "W_g", "W_o"]
    assert np.allclose(sv["W_f"], np.linalg.svd(W[4:8], compute_uv=False))
    assert list(recurrent_singular_values(model_and_data("gru")[0])) == ["W_r", "W_z", "W_n"]


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_jacobian_view_and_plots_write_pngs(tmp_path, cell):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    model, x, y = model_and_data(cell, T=5)
    view = jacobian_view(model, x, y)
    assert sorted(view["jacobian"]) == sorted(view["grad"]) == [1, 2, 3, 4, 5] and view["loss"] == "last"
    assert plot_jacobian_view(view, tmp_path / "j.png").read_bytes()[:4] == b"\x89PNG"
    if cell == "lstm":
        path = plot_gate_activity(gate_activity(model, x), tmp_path / "g.png")
        assert path.read_bytes()[:4] == b"\x89PNG"


# ---- the command line ---------------------------------------------------------------------------------

def test_cli_cell_gates_and_jacobian(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    out, gates, jac = tmp_path / "u.dot", tmp_path / "g.png", tmp_path / "j.png"
    assert main(["viz", "--cell", "lstm", "--view", "unrolled", "--steps", "5", "-o", str(out),
                 "--gates", str(gates), "--jacobian", str(jac)]) == 0
    assert "row_c0" in out.read_text()
    assert gates.read_bytes()[:4] == jac.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert f"wrote {gates} (lstm gate activity" in printed and f"wrote {jac} (" in printed


@pytest.mark.parametrize("args,message", [
    (["--gates", "g.png", "-o", "u.dot"], "--cell lstm or --cell gru"),
    (["--cell", "gru", "--nonlinearity", "relu", "-o", "u.dot"], "--cell rnn only"),
    (["--cell", "lstm", "--gates", "g.gif", "-o", "u.dot"], "--gates: cannot write"),
    (["--jacobian", "j.png", "--plot", "j.png", "-o", "u.dot"], "both name"),
    (["--fused", "--jacobian", "j.png", "-o", "u.dot"], "--fused"),
    (["--html", "p.html", "--cell", "lstm"], "drop --cell"),
])
def test_cli_refuses_gate_and_jacobian_misuse(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["viz", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())
