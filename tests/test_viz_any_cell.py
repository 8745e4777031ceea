"""Every picture and diagnostic for cells micrornn does not ship: a peephole LSTM ((h, c) state), the
minimal gated unit and IndRNN (no recurrent matrix), from tests/user_cells.py."""
import re

import numpy as np
import pytest

from micrornn import nn
from micrornn.viz import draw_folded, draw_unrolled

from user_cells import USER_CELLS, IndRNN, MGUCell, PeepholeLSTM, user_data, user_model


def edges_of(source):
    """{(src, dst): attribute text} of a DOT source."""
    return {(s, d): a for s, d, a in re.findall(r"^\s*(\w+) -> (\w+) ?(\[[^\n]*)?$", source, flags=re.M)}


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
        assert re.search(rf"^\s*{row}_0 \[label=<{row[0]}<SUB>0</SUB>>", source, flags=re.M)
        assert [(f"{row}_{t - 1}", f"{row}_{t}") in edges_of(source) for t in range(1, 5)] == [True] * 4
    assert "row_c0" not in draw_unrolled(user_model(MGUCell), steps=2).source


@pytest.mark.parametrize("cls", USER_CELLS)
def test_folded_view_of_user_cells(cls):
    source = draw_folded(user_model(cls)).source
    loops = {s: a for (s, d), a in edges_of(source).items() if s == d}
    assert "h0" in loops and ("c0" in loops) == (cls is PeepholeLSTM)
    expected = {PeepholeLSTM: "W_h (", MGUCell: "U_f, U_h (", IndRNN: "u ("}[cls]
    assert f"label=<{expected}h<SUB>t-1</SUB>" in loops["h0"] and "label=<U>" not in source and "label=<W>" not in loops["h0"]


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
