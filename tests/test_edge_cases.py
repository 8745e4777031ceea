"""Edge cases found in review: each was a wrong result or an unclear error before its fix."""
import warnings

import numpy as np
import pytest

import micrornn as mr
from micrornn.engine.backward import _joined_rows
from micrornn.cli import main
from micrornn.check.finite_differences import gradcheck


def test_sigmoid_of_integer_or_bool_data_is_a_float_result():
    np.testing.assert_allclose(mr.Tensor(np.array([1, 2, -3])).sigmoid().data, 1 / (1 + np.exp([-1.0, -2.0, 3.0])))
    np.testing.assert_allclose(mr.Tensor(np.array([True, False])).sigmoid().data, [1 / (1 + np.exp(-1.0)), 0.5])


@pytest.mark.parametrize("make", [
    lambda a: mr.concatenate([a, a], axis=2),
    lambda a: mr.stack([a, a], axis=3),
    lambda a: a.transpose(2, 3),
    lambda a: a.mean(axis=4),
    lambda a: a.sum(axis=-3),
    lambda a: a.logsumexp(axis=2),
])
def test_out_of_range_axes_raise_instead_of_wrapping(make):
    with pytest.raises(ValueError, match="out of range"):
        make(mr.Tensor(np.ones((2, 3))))


def test_numpy_integer_axes_are_accepted():
    t = mr.Tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(t.sum(axis=np.int64(0)).data, [3.0, 5.0, 7.0])
    np.testing.assert_allclose(t.max(axis=np.int32(1)).data, [2.0, 5.0])


def test_mean_of_nothing_names_the_problem():
    with pytest.raises(ValueError, match="no elements"):
        mr.Tensor(np.zeros((0, 3))).mean()


def test_logsumexp_of_all_minus_infinity_is_minus_infinity():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = mr.Tensor([[-np.inf, -np.inf], [0.0, 0.0]]).logsumexp(axis=1).data
    assert out[0] == -np.inf
    np.testing.assert_allclose(out[1], np.log(2.0))


def test_zero_dimensional_results_are_ndarrays():
    loss = (mr.Tensor([1.0, 2.0], requires_grad=True) ** 2).sum()
    assert type(loss.data) is np.ndarray and loss.data.shape == ()
    assert type(loss.detach().numpy()) is np.ndarray


@pytest.mark.parametrize("base,exponent,value,slope", [
    (0.0, 0.5, 0.0, np.inf), (0.0, 0, 1.0, 0.0), (-8.0, 1 / 3, np.nan, np.nan), (2.0, 3, 8.0, 12.0),
    (0.0, -1, np.inf, -np.inf),
])
def test_value_power_at_awkward_bases_gives_real_numbers_not_exceptions(base, exponent, value, slope):
    x = mr.Value(base)
    y = x ** exponent
    y.backward()
    np.testing.assert_equal(y.data, value)
    np.testing.assert_equal(x.grad, slope)


def test_tensor_power_zero_has_zero_gradient_even_at_zero():
    x = mr.Tensor([0.0, 2.0], requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])
    y = mr.Tensor(np.random.default_rng(0).uniform(0.5, 2, size=(3, 2)), requires_grad=True)
    assert gradcheck(lambda t: t ** 0 + t ** 2.5, [y])


def test_joined_rows_copies_when_the_base_has_another_dtype():
    base = np.arange(24.0)
    rows = base.view(np.float32).reshape(-1, 3)  # the same memory read as float32
    parts = [rows[0:2], rows[2:4]]
    np.testing.assert_array_equal(_joined_rows(parts), np.concatenate(parts))


def test_trainer_run_creates_the_checkpoint_directory_first(tmp_path, monkeypatch):
    from micrornn.train import TrainConfig, Trainer
    monkeypatch.chdir(tmp_path)
    text = "the quick brown fox jumps over the lazy dog. " * 40
    config = TrainConfig(steps=2, hidden_size=8, num_layers=1, seq_len=8, batch_size=2, val_every=0,
                         sample_every=0)
    Trainer(text, config).run(checkpoint="runs/mine.npz", progress=False, log=lambda s: None)
    assert (tmp_path / "runs" / "mine.npz").exists()


def test_train_refuses_an_unsupported_plot_format_before_training(tmp_path, capsys):
    data = tmp_path / "text.txt"
    data.write_text("to be or not to be, that is the question. " * 50)
    tiny = ["--hidden-size", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "2"]
    code = main(["train", "--data", str(data), "--checkpoint", str(tmp_path / "ck.npz"),
                 "--plot", str(tmp_path / "curve.txt"), "--steps", "2", "--quiet", *tiny])
    err = capsys.readouterr().err
    assert code == 2 and "--plot" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ck.npz").exists()


def test_weight_products_folded_mid_backward_in_a_deep_batched_stack():
    """T*B = 1040 rows > the 1024-row fold: folding happens mid-way, with h0 and two layers."""
    model = mr.nn.SequenceModel(5, 6, 4, num_layers=2, rng=3)
    rng = np.random.default_rng(3)
    x, y, h0 = rng.standard_normal((130, 8, 5)), rng.integers(0, 4, (130, 8)), rng.standard_normal((2, 8, 6))
    loss, _ = model.loss(x, y, h0=h0)
    loss.backward()
    _, reference = mr.bptt.loss_and_grads(model, x, y, h0)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, reference[name], rtol=1e-10, atol=1e-10 * np.abs(reference[name]).max())
