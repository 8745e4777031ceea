"""The rest of the tensor API for people who write cells: factories, functional ops, module modes and
tree, plain functions, version, progress bar, plain numbers in failure messages."""
from __future__ import annotations

import inspect
import io
import re
import sys
import tomllib
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import micrornn as mr
import micrornn.check.finite_differences
import micrornn.engine.tensor
from micrornn import Tensor, nn
from micrornn.train import progress
from micrornn.nn import functional as F
from micrornn.cli import main
from micrornn.check.finite_differences import GradcheckError, gradcheck

RNG = np.random.default_rng(7)


def leaf(*shape, scale=1.0):
    """A float64 tensor of normal values that requires grad."""
    return Tensor(RNG.standard_normal(shape) * scale, requires_grad=True)


# ---- plain functions ---------------------------------------------------------------------------

def test_tensor_and_gradcheck_are_plain_functions_with_their_signatures():
    t = mr.tensor([1.0, 2.0], requires_grad=True)
    assert isinstance(t, Tensor) and t.requires_grad and t.dtype == np.float64
    assert mr.tensor([1, 2], dtype=np.float32).dtype == np.float32
    assert inspect.isfunction(mr.tensor) and inspect.isfunction(mr.gradcheck)
    assert list(inspect.signature(mr.gradcheck).parameters)[:2] == ["fn", "inputs"]
    assert mr.gradcheck(lambda a: a * a, [t]) is True
    assert mr.gradcheck(lambda a: a * a, [t], eps=1e-6, atol=1e-5) is True
    assert mr.gradcheck is gradcheck and mr.numerical_grad is micrornn.check.numerical_grad


# ---- factories ---------------------------------------------------------------------------------

def test_factories():
    assert mr.zeros(2, 3).shape == (2, 3) and mr.zeros((2, 3)).dtype == np.float64
    assert mr.ones(4, dtype=np.float32).dtype == np.float32 and mr.ones(4).data.sum() == 4
    like = Tensor(np.ones((2, 2), dtype=np.float32))
    assert mr.zeros_like(like).dtype == np.float32 and mr.ones_like(like, requires_grad=True).requires_grad
    np.testing.assert_array_equal(mr.arange(5).data, np.arange(5))
    np.testing.assert_array_equal(mr.arange(1.0, 2.0, 0.5).data, [1.0, 1.5])
    with pytest.raises(ValueError, match="non-negative integers"):
        mr.zeros(2, -1)


def test_randn_is_seeded_by_manual_seed():
    mr.manual_seed(3)
    first = mr.randn(3, 2).data
    mr.manual_seed(3)
    np.testing.assert_array_equal(mr.randn(3, 2).data, first)
    assert not np.array_equal(mr.randn(3, 2).data, first)
    assert mr.randn(2, dtype=np.float32, requires_grad=True).dtype == np.float32
    with pytest.raises(TypeError, match="randn: normal samples need a float dtype, got int64"):
        mr.randn(3, dtype=np.int64)  # was: the samples silently truncated to integers


# ---- functional ------------------------------------------------------------------------------

FUNCTIONAL_CASES = {
    "sigmoid": (F.sigmoid, [(3, 4)]),
    "tanh": (F.tanh, [(3, 4)]),
    "relu": (lambda x: F.relu(x + 0.05), [(3, 4)]),
    "softplus": (F.softplus, [(3, 4)]),
    "layer_norm": (F.layer_norm, [(3, 5)]),
    "layer_norm affine": (lambda x, w, b: F.layer_norm(x, w, b), [(2, 3, 5), (5,), (5,)]),
    "embedding": (lambda w: F.embedding(np.array([[0, 2], [2, 3]]), w), [(4, 3)]),
    "dropout": (lambda x: F.dropout(x, 0.3, rng=np.random.default_rng(0)), [(4, 5)]),
}


@pytest.mark.parametrize("label", sorted(FUNCTIONAL_CASES))
def test_functional_gradients(label):
    fn, shapes = FUNCTIONAL_CASES[label]
    assert gradcheck(fn, [leaf(*s) for s in shapes])


def test_softplus_is_finite_for_large_inputs_and_matches_the_formula():
    x = Tensor([-800.0, -1.0, 0.0, 2.0, 800.0], requires_grad=True)
    y = F.softplus(x)
    np.testing.assert_allclose(y.data, [0.0, np.log1p(np.exp(-1.0)), np.log(2.0), np.log1p(np.exp(2.0)), 800.0])
    y.sum().backward()
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(x.grad, 1 / (1 + np.exp(-x.data)))


def test_layer_norm_normalises_the_last_axis():
    out = F.layer_norm(Tensor(RNG.standard_normal((4, 6)) * 3 + 2)).data
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=-1), 1.0, rtol=1e-5)


def test_dropout_keeps_the_expectation_and_is_off_outside_training():
    x = Tensor(np.ones((200, 200)))
    y = F.dropout(x, 0.25, rng=np.random.default_rng(1)).data
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert F.dropout(x, 0.25, training=False) is x
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\)"):
        F.dropout(x, 1.0)
    with pytest.raises(TypeError, match="dropout: x must be floating point, got int64"):
        F.dropout(Tensor([10, 10, 10]), 0.3)  # was: scaled by int(1/0.7) = 1, silently


def test_embedding_refuses_float_indices():
    with pytest.raises(TypeError, match="indices must be integers"):
        F.embedding(np.array([0.0, 1.0]), Tensor(np.zeros((3, 2))))


# ---- Module.train() / eval() and the tree repr ----------------------------------------------

class DropoutCell(nn.Module):
    """An Elman cell with a softsign activation and dropout on its input."""

    def __init__(self, input_size, hidden_size, p=0.5):
        self.p = p
        self.inner = nn.Linear(input_size + hidden_size, hidden_size)
        self.extras = [nn.Linear(hidden_size, hidden_size)]

    def forward(self, x, h):
        x = F.dropout(x, self.p, self.training)
        a = self.inner(mr.concatenate([x, h], axis=-1))
        return a / (1.0 + a.abs())


def test_train_and_eval_set_the_flag_on_the_whole_tree():
    cell = DropoutCell(3, 4)
    assert all(m.training for m in cell.modules()) and len(cell.modules()) == 3
    assert cell.eval() is cell and not any(m.training for m in cell.modules())
    x, h = Tensor(np.ones((2, 3))), Tensor(np.zeros((2, 4)))
    np.testing.assert_array_equal(cell(x, h).data, cell(x, h).data)  # deterministic in eval mode
    cell.train()
    assert all(m.training for m in cell.modules())
    mr.manual_seed(0)
    assert not np.array_equal(cell(x, h).data, cell(x, h).data)  # dropout acts again
    cell.train(False)
    assert not cell.extras[0].training
    assert [name for name, _ in cell.named_modules()] == ["", "inner", "extras.0"]


def test_train_refuses_a_mode_that_is_not_a_boolean():
    cell = DropoutCell(3, 4)
    with pytest.raises(TypeError, match=r"train\(mode\): mode must be True or False, got 'False'"):
        cell.train("False")  # bool("False") is True: a string from a command line would train silently
    assert all(m.training for m in cell.modules())
    assert not cell.train(np.bool_(False)).training


def test_repr_shows_the_module_tree_with_shapes():
    mr.manual_seed(0)
    text = repr(nn.SequenceModel(8, 16, 5, num_layers=2))
    lines = text.splitlines()
    assert lines[0] == "SequenceModel(input_dropout=0.0, output_dropout=0.0, locked_dropout=False"  # its own settings
    assert lines[1].startswith("  (rnn): RNN(") and all(
        setting in lines[1] for setting in ("input_size=8", "hidden_size=16", "num_layers=2"))
    assert "    (cells.0): RNNCell(" in text and "U: (16, 8), W: (16, 16), b: (16,))" in text
    assert "    (cells.1): RNNCell(" in text and "U: (16, 16)" in text
    assert "  (head): Linear(in_features=16, out_features=5, weight: (5, 16), bias: (5,))" in lines
    assert lines[-1] == ")"
    assert repr(nn.Linear(2, 3, dtype=np.float32)).endswith("weight: (3, 2) float32, bias: (3,) float32)")


def test_repr_of_a_shared_submodule_is_marked():
    cell = DropoutCell(1, 2)
    cell.extras.append(cell.inner)
    assert "(extras.1): Linear(in_features=3, out_features=2, weight: (2, 3), bias: (2,))  (shared, shown above)" \
        in repr(cell)


# ---- version -----------------------------------------------------------------------------------

def test_version_in_the_package_the_cli_and_pyproject(capsys):
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert mr.__version__ == pyproject["project"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", mr.__version__)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"micrornn {mr.__version__}"


# ---- progress bar ------------------------------------------------------------------------------

class ZMQInteractiveShell:
    """Stands in for the shell of a Jupyter kernel."""

    config = {"IPKernelApp": {}}


@pytest.fixture
def fake_notebook(monkeypatch):
    """Pretend to run inside a Jupyter kernel."""
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: ZMQInteractiveShell()
    monkeypatch.setitem(sys.modules, "IPython", fake)


def test_plain_bar_outside_a_notebook():
    assert not progress.in_notebook() and progress.bar_class() is progress.text_bar


def test_notebook_without_ipywidgets_gets_the_plain_bar_quietly(fake_notebook, monkeypatch):
    real_find_spec = progress.importlib.util.find_spec
    monkeypatch.setattr(progress.importlib.util, "find_spec",
                        lambda name: None if name == "ipywidgets" else real_find_spec(name))
    assert progress.in_notebook()
    assert progress.bar_class() is progress.text_bar
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with progress.progress_bar(total=3, file=io.StringIO()) as bar:
            bar.update(3)


def test_notebook_with_ipywidgets_gets_the_widget_bar(fake_notebook, monkeypatch):
    monkeypatch.setattr(progress.importlib.util, "find_spec", lambda name: object())
    from tqdm.notebook import tqdm as notebook_bar
    assert progress.bar_class() is notebook_bar


# ---- plain numbers in failure messages -------------------------------------------------------

def test_gradcheck_failure_prints_plain_numbers():
    bad = lambda a: Tensor(a.data * 2.0) + a * 0.0 + a  # noqa: E731  (the first term hides a gradient)
    with pytest.raises(GradcheckError) as info:
        gradcheck(bad, [Tensor([0.5, 1.5], requires_grad=True)])
    message = str(info.value)
    assert "np.float64" not in message
    found = re.search(r"autograd (\S+) vs numerical (\S+) \(", message)
    autograd, numerical = float(found.group(1)), float(found.group(2))  # plain Python number syntax
    assert numerical == pytest.approx(3 * autograd, rel=1e-6)


def test_op_errors_print_plain_numbers():
    with pytest.raises(ValueError) as info:
        Tensor(np.zeros((2, 3))).reshape(np.int64(4), 2)
    assert "np.int64" not in str(info.value) and "(4, 2)" in str(info.value)
