"""--layer-norm on the command line: train writes a layer-norm checkpoint that load_model and sample
read back; gradcheck checks the layer-norm cells three ways; rnn and user cells are refused (exit 2)."""
import pytest

from micrornn.cli import main
from micrornn.train import load_model
from micrornn.train.checkpoint import load_checkpoint

TINY = ["--hidden-size", "8", "--layers", "2", "--seq-len", "6", "--batch-size", "3", "--val-every", "0",
        "--sample-every", "0", "--sample-length", "10", "--dtype", "float64"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("fused", ["--fused", "--no-fused"])
def test_train_and_sample_a_layer_norm_model(tmp_path, cell, fused, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question\n" * 6, encoding="utf-8")
    ck = tmp_path / "ck.npz"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(ck), "--cell", cell, "--layer-norm", fused,
                 "--steps", "3", *TINY]) == 0
    _, meta, _ = load_checkpoint(ck)
    assert meta["model"]["layer_norm"] is True
    model, _, _ = load_model(ck)
    assert all(c.layer_norm for c in model.rnn.cells)
    assert "rnn.cells.1.gain_h" in dict(model.named_parameters())
    assert f"{cell.upper()} with layer norm" in capsys.readouterr().out  # the run's header says so
    assert main(["eval", "--checkpoint", str(ck)]) == 0
    assert f"{cell} with layer norm" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(ck), "--length", "12", "--seed", "1"]) == 0


def test_train_refuses_layer_norm_for_the_rnn(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abc " * 50, encoding="utf-8")
    assert main(["train", "--data", str(corpus), "--checkpoint", str(tmp_path / "ck.npz"), "--cell", "rnn",
                 "--layer-norm", "--steps", "1", *TINY]) == 2
    assert "layer_norm needs cell lstm or gru" in capsys.readouterr().err
    assert not (tmp_path / "ck.npz").exists()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck_layer_norm_passes_three_ways(cell, capsys):
    assert main(["gradcheck", "--cell", cell, "--layer-norm", "--bidirectional", "--h0", "--lengths", "6,3"]) == 0
    out = capsys.readouterr().out
    assert "layer norm" in out and "gain_h" in out and "PASS: all" in out


@pytest.mark.parametrize("cell", ["rnn", "user_cells:MGUCell"])
def test_gradcheck_refuses_layer_norm_for_other_cells(cell, capsys):
    assert main(["gradcheck", "--cell", cell, "--layer-norm"]) == 2
    assert "--layer-norm" in capsys.readouterr().err


def test_layer_norm_must_be_a_bool_and_needs_two_units(tmp_path, capsys):
    from micrornn.nn import LSTMCell, SequenceModel
    from micrornn.train import TrainConfig
    with pytest.raises(ValueError, match="layer_norm must be true or false"):
        TrainConfig(cell="lstm", layer_norm="false").validated()  # a TOML string is not silently truthy
    with pytest.raises(TypeError, match="layer_norm must be True or False"):
        SequenceModel(5, 4, 5, cell="gru", layer_norm="false")
    with pytest.raises(ValueError, match="hidden_size >= 2"):
        LSTMCell(3, 1, layer_norm=True)
    config = tmp_path / "c.toml"
    config.write_text('cell = "lstm"\nlayer_norm = "false"\n', encoding="utf-8")
    assert main(["train", "--config", str(config), "--steps", "0", "--checkpoint", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "layer_norm" in err and len(err.strip().splitlines()) == 1
