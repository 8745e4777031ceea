"""The two example cells (a peephole LSTM, IndRNN) train on tasks where they must beat chance, and
each gradient checks against central differences."""
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the cells get an import name, as on a command line
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, cell", [("peephole_lstm", "PeepholeLSTMCell"), ("indrnn", "IndRNNCell")])
def test_each_example_cell_beats_chance(name, cell):
    module = load(name)
    chance = 1 / module.SYMBOLS
    accuracy = module.train(getattr(module, cell), steps=80)
    assert accuracy > chance + 0.4, f"{cell}: accuracy {accuracy:.2f}, chance {chance:.2f}"


@pytest.mark.parametrize("name, cell", [("peephole_lstm", "PeepholeLSTMCell"), ("indrnn", "IndRNNCell")])
def test_each_example_cell_passes_gradcheck_stacked_with_lengths(name, cell):
    module = load(name)
    rec = nn.Recurrent(getattr(module, cell), 2, 3, num_layers=2, bidirectional=True)
    x = mr.Tensor(np.random.default_rng(0).uniform(0.1, 1.0, (4, 2, 2)), requires_grad=True)
    assert mr.gradcheck(lambda x, *ps: (rec(x, lengths=[4, 2])[0] ** 2).sum(), [x, *rec.parameters()])


def test_the_peephole_gates_are_the_step():
    module = load("peephole_lstm")
    cell = module.PeepholeLSTMCell(2, 3)
    rng = np.random.default_rng(1)
    x, h, c = (mr.Tensor(rng.standard_normal(s)) for s in ((2, 2), (2, 3), (2, 3)))
    gates = cell.gates(x, (h, c))
    h_next, c_next = cell(x, (h, c))
    np.testing.assert_allclose(c_next.data, gates["f"].data * c.data + gates["i"].data * gates["g"].data, rtol=1e-14)
    np.testing.assert_allclose(h_next.data, gates["o"].data * np.tanh(c_next.data), rtol=1e-14)
