"""Every picture and diagnostic for cells micrornn does not ship: a peephole LSTM ((h, c) state), the
minimal gated unit and IndRNN (no recurrent matrix), from tests/user_cells.py."""
import re

import numpy as np
import pytest
from user_cells import USER_CELLS, IndRNN, MGUCell, PeepholeLSTM, user_data, user_model

import micrornn as mr
from micrornn import nn
from micrornn.viz import draw_folded, draw_unrolled


def edges_of(source):
    """{(src, dst): attribute text} of a DOT source."""
    return {(s, d): a for s, d, a in re.findall(r"^\s*(\w+) -> (\w+) ?(\[[^\n]*)?$", source, flags=re.MULTILINE)}


# ---- the unrolled and folded pictures ---------------------------------------------------------------

def test_unrolled_labels_edges_with_the_cells_own_parameter_names():
    peephole = draw_unrolled(user_model(PeepholeLSTM), steps=3).source
    e = edges_of(peephole)
    assert "label=<W_x>" in e[("x_2", "h0_2")] and "label=<W_x>" in e[("x_2", "c0_2")]
    assert "label=<W_h>" in e[("h0_1", "h0_2")] and "label=<W_h>" in e[("h0_1", "c0_2")]
    assert "label=<p_i, p_f>" in e[("c0_1", "c0_2")]      # the peepholes into i and f read c_{t-1}
    assert "label=<p_o>" in e[("c0_2", "h0_2")]           # o reads the new c_t
    assert ("c0_1", "h0_2") not in e                       # h_t sees c_{t-1} only through c_t
    assert "W_x, W_h, p_i, p_f, p_o, b = rnn.cell" in peephole and "U, W" not in peephole
    mgu = edges_of(draw_unrolled(user_model(MGUCell), steps=3).source)
    assert "label=<U_f, U_h>" in mgu[("h0_1", "h0_2")] and "label=<W_f, W_h, U_h>" in mgu[("x_2", "h0_2")]


def test_unrolled_draws_only_the_dependencies_that_exist():
    source = draw_unrolled(user_model(IndRNN), steps=3).source
    e = edges_of(source)
    assert "label=<u>" in e[("h0_1", "h0_2")] and "label=<W>" in e[("x_2", "h0_2")]
    assert not any("W" in a for (s, d), a in e.items() if s.startswith("h0") and d.startswith("h0"))
    assert "row_c0" not in source


def test_each_state_entry_gets_its_row_and_its_start():
    source = draw_unrolled(user_model(PeepholeLSTM), steps=4).source
    for row in ("h0", "c0"):
        assert re.search(rf"subgraph row_{row} \{{", source)
        assert re.search(rf"^\s*{row}_0 \[label=<{row[0]}<SUB>0</SUB>>", source, flags=re.MULTILINE)
        assert [(f"{row}_{t - 1}", f"{row}_{t}") in edges_of(source) for t in range(1, 5)] == [True] * 4
    assert "row_c0" not in draw_unrolled(user_model(MGUCell), steps=2).source


@pytest.mark.parametrize("cls", USER_CELLS)
def test_folded_view_of_user_cells(cls):
    source = draw_folded(user_model(cls)).source
    loops = {s: a for (s, d), a in edges_of(source).items() if s == d}
    assert "h0" in loops and ("c0" in loops) == (cls is PeepholeLSTM)
    expected = {PeepholeLSTM: "W_h (", MGUCell: "U_f, U_h (", IndRNN: "u ("}[cls]
    assert f"label=<{expected}h<SUB>t-1</SUB>" in loops["h0"]
    assert "label=<U>" not in source and "label=<W>" not in loops["h0"]


def test_a_cell_that_cannot_be_drawn_is_refused_in_one_line():
    class NoSize(nn.Module):
        def __init__(self):
            self.A, self.input_size = nn.Parameter(np.ones((3, 3))), 3

        def forward(self, x, h):
            return x @ self.A + h

    with pytest.raises(TypeError, match="NoSize has neither hidden_size nor initial_state"):
        draw_unrolled(nn.Recurrent(NoSize()), steps=2)

    class ReturnsArray(MGUCell):
        def forward(self, x, h):
            return np.zeros((1, self.hidden_size))

    with pytest.raises(TypeError, match="ReturnsArray returned ndarray"):
        draw_unrolled(nn.Recurrent(ReturnsArray(3, 4, 0)), steps=2)


# ---- gradient flow and the Jacobian ----------------------------------------------------------------

@pytest.mark.parametrize("cls", USER_CELLS)
def test_gradient_flow_for_user_cells(cls):
    from micrornn.viz import gradient_flow
    from micrornn.viz.flow import hidden_states
    model = user_model(cls)
    x, y = user_data(T=5)
    _, norms = gradient_flow(model, x, y)
    assert sorted(norms) == [(0, t) for t in range(1, 6)] and norms.loss == "sum" and norms.steps == 5
    # the same numbers from the engine directly: dL/dh_t of the summed cross-entropy
    from micrornn.nn.functional import cross_entropy
    logits, _ = model(x)
    ref = cross_entropy(logits, y, reduction="sum")
    states = hidden_states(ref)
    for h in states.values():
        h.retain_grad()
    ref.backward()
    for (l, t), h in states.items():
        assert norms[(l, t)] == pytest.approx(float(np.linalg.norm(h.grad)), rel=1e-12)
    _, last = gradient_flow(model, x, y, loss="last")
    assert last.loss == "last" and last[(0, 5)] > 0
    source = draw_unrolled(model, hidden_grads=last).source
    assert 'L_1 [label=<L<SUB>1</SUB>>' in source and "not in the loss" in source


def test_gradient_flow_of_a_bare_recurrent_layer_scores_its_states():
    from micrornn.viz import gradient_flow
    rec = nn.Recurrent(IndRNN(3, 4, 0))
    x, _ = user_data(T=4)
    target = np.zeros((4, 2, 4))
    loss, norms = gradient_flow(rec, x, target)
    out, _ = rec(x)
    assert loss.item() == pytest.approx(float((out.data ** 2).sum()))
    assert len(norms) == 4


def _run_from(cell, x, t, state):
    """h_T of the cell run over x[t:] from state (plain Tensors, no time loop)."""
    for k in range(t, x.shape[0]):
        state = cell(mr.Tensor(x[k]), state)
    return (state[0] if isinstance(state, tuple) else state).data


@pytest.mark.parametrize("cls", USER_CELLS)
def test_jacobian_norms_for_user_cells_match_central_differences(cls):
    import micrornn as mr
    from micrornn.viz import jacobian_norms
    model = user_model(cls)
    x, _ = user_data(T=4, B=1)
    norms = jacobian_norms(model, x)
    cell, T = model.rnn.cell, x.shape[0]
    states, state = [], cell.initial_state(1) if hasattr(cell, "initial_state") else mr.Tensor(np.zeros((1, 4)))
    for k in range(T):
        state = cell(mr.Tensor(x[k]), state)
        states.append(state)
    for t in range(1, T + 1):
        s = states[t - 1]
        h = (s[0] if isinstance(s, tuple) else s).data
        J = np.zeros((4, 4))
        for j in range(4):
            cols = []
            for sign in (1, -1):
                hp = h.copy()
                hp[0, j] += sign * 1e-6
                start = (mr.Tensor(hp), s[1]) if isinstance(s, tuple) else mr.Tensor(hp)
                cols.append(_run_from(cell, x, t, start)[0])
            J[:, j] = (cols[0] - cols[1]) / 2e-6
        assert norms[t] == pytest.approx(np.linalg.norm(J, 2), rel=1e-6, abs=1e-9), t


def test_recurrent_singular_values_of_user_cells():
    from micrornn.viz import recurrent_singular_values
    ind = user_model(IndRNN)
    sv = recurrent_singular_values(ind)
    assert list(sv) == ["u"] and np.allclose(sv["u"], np.sort(np.abs(ind.rnn.cell.u.data))[::-1])
    assert list(recurrent_singular_values(user_model(MGUCell))) == ["U_f", "U_h"]
    assert list(recurrent_singular_values(user_model(PeepholeLSTM))) == ["W_h_i", "W_h_f", "W_h_g", "W_h_o"]


@pytest.mark.parametrize("cls", USER_CELLS)
def test_jacobian_view_plots_for_user_cells(tmp_path, cls):
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (an optional extra)")
    from micrornn.viz import jacobian_view, plot_jacobian_view
    x, y = user_data(T=5)
    view = jacobian_view(user_model(cls), x, y)
    assert view["cell"] == cls.__name__ and sorted(view["jacobian"]) == [1, 2, 3, 4, 5]
    path = plot_jacobian_view(view, tmp_path / f"{cls.__name__}.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


# ---- gate views ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [PeepholeLSTM, MGUCell])
def test_gate_views_use_the_cells_own_gates(cls, tmp_path):
    from micrornn.viz import gate_activity, gate_summary
    model = user_model(cls)
    x, _ = user_data(T=6)
    activity = gate_activity(model, x)
    out, _ = model.rnn(x)
    assert np.allclose(activity[(0, "h")], out.data, rtol=1e-12, atol=1e-14)  # the cell's own forward
    assert {g for _, g in activity} == set(cls.gate_names) | {"h"} and activity.cell == cls.__name__
    cell = model.rnn.cell
    state = cell.initial_state(2) if cls is PeepholeLSTM else mr.Tensor(np.zeros((2, 4)))
    for t in range(6):  # the gates the view shows are gates(x_t, state) along the cell's own states
        expected = cell.gates(mr.Tensor(x[t]), state)
        for name in cls.gate_names:
            assert np.allclose(activity[(0, name)][t], expected[name].data, rtol=1e-12)
        state = cell(mr.Tensor(x[t]), state)
    summary = gate_summary(activity)
    assert set(summary) == {(0, g) for g in cls.gate_names if g != "g"}  # the tanh candidate g is left out
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (an optional extra)")
    from micrornn.viz import plot_gate_activity
    assert plot_gate_activity(activity, tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_gate_view_refuses_a_cell_without_gates_in_one_line():
    from micrornn.viz import gate_activity
    x, _ = user_data(T=3)
    with pytest.raises(ValueError, match=r"^gate_activity: IndRNN names no gates: the gate view needs gate_names"):
        gate_activity(user_model(IndRNN), x)

    class Forgetful(MGUCell):
        def gates(self, x, h):
            return {}

    with pytest.raises(ValueError, match="Forgetful gates\\(\\) returned no f"):
        gate_activity(nn.Recurrent(Forgetful(3, 4, 0)), x)


def test_the_gate_view_holds_no_copy_of_the_cell_equations():
    import inspect

    from micrornn.viz import gates
    source = inspect.getsource(gates)
    assert "_sigmoid" not in source and "np.tanh" not in source


# ---- draw_graph names every parameter -------------------------------------------------------------------

def test_draw_graph_names_every_parameter_of_a_recurrent_model():
    from micrornn.viz import draw_graph
    from micrornn.viz.flow import sequence_loss
    model = user_model(IndRNN)
    x, y = user_data(T=2)
    source = draw_graph(sequence_loss(model, x, y), names=model).source
    for name, _ in model.named_parameters():
        assert f'label="{name} (' in source, name
    assert 'label="parameter' not in source
    rec, head = nn.Recurrent(IndRNN(3, 4, 0)), nn.Linear(4, 3, rng=0)
    out, _ = rec(x)
    loss = head(out).sum()
    both = draw_graph(loss, names={"rnn": rec, "head": head}).source
    assert all(f'label="{n} (' in both for n in ("rnn.cell.W", "rnn.cell.u", "head.weight", "head.bias"))
    alone = draw_graph(loss, names=rec).source  # the head is not in names: said so, not a bare "parameter"
    assert 'label="parameter (not in names=) (3,)' in alone and 'label="cell.u (4,)' in alone


# ---- first divergence without an analytic route -------------------------------------------------------

@pytest.mark.parametrize("cls", USER_CELLS)
def test_first_divergence_of_a_correct_user_cell_is_none(cls):
    from micrornn.check import divergence
    x, y = user_data(T=3, B=2)
    model = user_model(cls)
    before = [p.grad for p in model.parameters()]
    assert divergence.first_divergence(model, x, y) is None
    assert [p.grad for p in model.parameters()] == before  # parameter gradients left as they were
    assert "forward" not in vars(model.rnn.cell)  # the probes are gone


def test_first_divergence_finds_a_wrong_gradient_in_a_user_cell():
    from micrornn.check import divergence
    from micrornn.engine.ops import PRIMITIVES, defprimitive
    from micrornn.engine.tensor import apply

    def fwd(a):
        out = np.tanh(a)
        return out, out

    def wrong_vjp(g, out, needs):  # d tanh/da is 1 - tanh^2; this is 1.5 times that
        return (1.5 * g * (1 - out * out),)

    prim = defprimitive("divergence_wrong_tanh", fwd, wrong_vjp)

    class WrongMGU(MGUCell):
        def forward(self, x, h):
            f = self.gates(x, h)["f"]
            candidate = apply(prim, x @ self.W_h.T + (f * h) @ self.U_h.T + self.b_h)
            return h + f * (candidate - h)

    try:
        x, y = user_data(T=4, B=1)
        model = user_model(MGUCell)
        model.rnn.cell.__class__ = WrongMGU
        found = divergence.first_divergence(model, x, y)
        assert found is not None and found["t"] == 3 and found["quantity"] == "h"  # dL/dh_4 is right: L_4 reads it
        assert found["disagree"] == [("graph", "numeric")] and found["no_reference"]
        text = divergence.describe(found)
        assert "step t=3 of 4" in text and "no analytic route" in text
    finally:
        del PRIMITIVES["divergence_wrong_tanh"]


# ---- refusals: one line naming the cell, never an AttributeError ---------------------------------------

class Bare(nn.Module):
    """A cell with no hidden_size, no initial_state and no input_size: only parameters and forward."""

    def __init__(self):
        self.A = nn.Parameter(np.full((3, 4), 0.1))

    def forward(self, x, h):
        return (x @ self.A + h).tanh()


class ReturnsDict(MGUCell):
    def forward(self, x, h):
        return {"h": super().forward(x, h)}


def _every_view(model, x, y):
    """Each picture and diagnostic on one model, as (name, zero-argument call)."""
    from micrornn.check import divergence
    from micrornn.viz import (
        draw_folded,
        gate_activity,
        gradient_flow,
        jacobian_norms,
        jacobian_view,
        to_html,
    )
    return [("draw_unrolled", lambda: draw_unrolled(model, steps=2)), ("draw_folded", lambda: draw_folded(model)),
            ("gradient_flow", lambda: gradient_flow(model, x, y)), ("jacobian_norms", lambda: jacobian_norms(model, x)),
            ("jacobian_view", lambda: jacobian_view(model, x, y)), ("gate_activity", lambda: gate_activity(model, x)),
            ("first_divergence", lambda: divergence.first_divergence(model, x, y)),
            ("to_html", lambda: to_html(model, x, y, focus_step=1))]


@pytest.mark.parametrize("cell", [Bare(), ReturnsDict(3, 4, 0)], ids=["Bare", "ReturnsDict"])
def test_no_view_raises_an_attribute_error_for_a_user_cell(cell):
    from user_cells import Tagged
    model = Tagged(MGUCell(3, 4, 0), 3, rng=0)
    model.rnn = nn.Recurrent(cell)
    x, y = user_data(T=2, B=1)
    for name, call in _every_view(model, x, y):
        try:
            call()
        except (ValueError, TypeError) as err:
            message = str(err)
            assert "\n" not in message and type(cell).__name__ in message, (name, message)
        except AttributeError as err:  # the one thing a user must never see
            pytest.fail(f"{name}: AttributeError {err}")
