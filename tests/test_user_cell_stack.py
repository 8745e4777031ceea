"""A user's cell through the whole stack: SequenceModel(cell=...), the Trainer, and
`micrornn train|eval|sample|gradcheck --cell package.module:Class`; a checkpoint records the cell's
import name but never imports it."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.cli import main
from micrornn.train import TrainConfig, Trainer
from micrornn.train.checkpoint import CheckpointError, load_checkpoint
from micrornn.train.sample import load_model

from tiny_runs import WINTER as TEXT
from user_cells import MGU

TINY = ["--hidden-size", "6", "--layers", "2", "--seq-len", "8", "--batch-size", "4", "--val-every", "0",
        "--sample-every", "0", "--sample-length", "20", "--dtype", "float64"]
CELL_SOURCE = '''
import numpy as np
from micrornn.nn import Module, Parameter
{side_effect}

class MGU(Module):
    """Minimal gated unit."""

    def __init__(self, input_size, hidden_size):
        rng = np.random.default_rng(hidden_size)
        self.hidden_size = hidden_size
        self.U = Parameter(rng.uniform(-0.3, 0.3, (input_size, 2 * hidden_size)))
        self.W_f = Parameter(rng.uniform(-0.3, 0.3, (hidden_size, hidden_size)))
        self.W_n = Parameter(rng.uniform(-0.3, 0.3, (hidden_size, hidden_size)))

    def forward(self, x, h):
        H = self.hidden_size
        p = x @ self.U
        f = (p[:, :H] + h @ self.W_f).sigmoid()
        n = (p[:, H:] + (f * h) @ self.W_n).tanh()
        return h + f * (n - h)
'''


@pytest.fixture
def cell_module(tmp_path, monkeypatch):
    """An importable module 'usercells_<id>' holding MGU; returns its import name 'usercells_<id>:MGU'."""
    name = f"usercells_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(CELL_SOURCE.format(side_effect=""), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:MGU"
    sys.modules.pop(name, None)


def test_sequence_model_gives_a_user_cell_one_hot_rows_for_indices():
    seen = []

    class Spy(MGU):
        def forward(self, x, h):
            seen.append(x.data.copy())
            return super().forward(x, h)
    model = nn.SequenceModel(5, 3, 5, num_layers=2, cell=Spy, bidirectional=True, rng=0)
    ids = np.array([[1, 4], [0, 2]])
    logits, h_n = model(mr.Tensor(ids))
    assert logits.shape == (2, 2, 5) and h_n.shape == (4, 2, 3)
    np.testing.assert_array_equal(seen[0], np.eye(5)[ids[0]])  # layer 0, forward, step 1: one-hot rows (B, 5)
    floats = np.random.default_rng(0).standard_normal((2, 2, 5))
    seen.clear()
    model(mr.Tensor(floats))
    np.testing.assert_array_equal(seen[0], floats[0])  # float inputs reach the cell as they are
    assert [n for n, _ in model.named_parameters()][:3] == ["rnn.cells.0.U", "rnn.cells.0.W_f", "rnn.cells.0.W_n"]
    with pytest.raises(ValueError, match="fused=True needs a built-in cell"):
        nn.SequenceModel(5, 3, 5, cell=MGU, fused=True)


def test_the_trainer_takes_the_cell_and_checkpoints_its_import_name(tmp_path, cell_module):
    module = sys.modules.get(cell_module.split(":")[0]) or __import__(cell_module.split(":")[0])
    cell = module.MGU
    config = TrainConfig(hidden_size=6, num_layers=2, seq_len=8, batch_size=4, steps=40, val_every=0, sample_every=0,
                         dtype="float64", warmup=0, lr=1e-2)
    trainer = Trainer(TEXT, config, cell=cell)
    assert trainer.config.cell == cell_module and not trainer.config.fused  # a user cell runs unrolled
    losses = [trainer.train_step() for _ in range(30)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1  # it learns
    path = tmp_path / "ck.npz"
    trainer.save(path)
    assert load_checkpoint(path)[1]["model"]["cell"] == cell_module
    with pytest.raises(CheckpointError, match=f"trained with the user cell {cell_module}; pass --cell {cell_module}"):
        load_model(path)
    with pytest.raises(CheckpointError, match="not user_cells:MGU"):
        load_model(path, MGU)
    model, vocab, _ = load_model(path, cell)
    np.testing.assert_array_equal(model.rnn.cells[0].U.data, trainer.model.rnn.cells[0].U.data)
    resumed = Trainer.resume(path, TEXT, cell=cell)
    assert resumed.step == trainer.step
    with pytest.raises(ValueError, match="is a user cell: pass the class too"):
        Trainer(TEXT, TrainConfig(cell=cell_module))


def test_cli_train_sample_eval_resume_need_the_same_cell(tmp_path, corpus, cell_module, capsys):
    ck = str(tmp_path / "ck.npz")
    assert main(["train", "--data", str(corpus), "--checkpoint", ck, "--cell", cell_module, "--steps", "3",
                 "--quiet", "--no-plot", *TINY]) == 0
    capsys.readouterr()
    for argv in (["sample", "--checkpoint", ck], ["eval", "--checkpoint", ck],
                 ["train", "--resume", "--checkpoint", ck, "--steps", "5", "--quiet", "--no-plot"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"pass --cell {cell_module}" in err and "never imports code" in err and "Traceback" not in err
    assert main(["sample", "--checkpoint", ck, "--cell", cell_module, "--length", "10", "--seed", "0"]) == 0
    assert main(["eval", "--checkpoint", ck, "--cell", cell_module, "--max-chars", "50"]) == 0
    assert main(["train", "--resume", "--checkpoint", ck, "--cell", cell_module, "--steps", "5", "--quiet",
                 "--no-plot"]) == 0
    assert load_checkpoint(ck)[1]["step"] == 5
    capsys.readouterr()
    assert main(["sample", "--checkpoint", ck, "--cell", "no_such_module_xyz:Cell"]) == 2
    assert "--cell: cell no_such_module_xyz:Cell: cannot import no_such_module_xyz" in capsys.readouterr().err
    assert main(["train", "--cell", "not a cell"]) == 2


def test_gradcheck_cli_checks_a_user_cell_against_central_differences(cell_module, capsys):
    assert main(["gradcheck", "--cell", cell_module, "--bidirectional", "--lengths", "6,3"]) == 0
    out = capsys.readouterr().out
    assert "graph~numeric" in out and "PASS: all 14 parameters agree" in out
    assert main(["gradcheck", "--cell", cell_module, "--fused"]) == 2
    assert "--fused need a built-in cell" in capsys.readouterr().err


def test_a_checkpoint_never_imports_the_module_it_names(tmp_path, corpus):
    """The module writes a marker file when imported; loading a checkpoint that names it must not."""
    marker = tmp_path / "imported.txt"
    side_effect = f"open({str(marker)!r}, 'w').write('imported')"
    (tmp_path / "sidefx_cell.py").write_text(CELL_SOURCE.format(side_effect=side_effect), encoding="utf-8")
    ck = tmp_path / "ck.npz"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{Path(__file__).resolve().parents[1]}"}
    run = lambda *argv: subprocess.run([sys.executable, "-m", "micrornn", *argv], capture_output=True,  # noqa: E731
                                       text=True, cwd=tmp_path, env=env)
    done = run("train", "--data", str(corpus), "--checkpoint", str(ck), "--cell", "sidefx_cell:MGU", "--steps", "2",
               "--quiet", "--no-plot", *TINY)
    assert done.returncode == 0, done.stderr
    assert marker.exists()  # --cell imports it: that is what the user asked for
    marker.unlink()
    for argv in (("sample", "--checkpoint", str(ck)), ("eval", "--checkpoint", str(ck)),
                 ("train", "--resume", "--checkpoint", str(ck), "--steps", "4", "--quiet", "--no-plot")):
        done = run(*argv)
        assert done.returncode == 2 and "pass --cell sidefx_cell:MGU" in done.stderr
        assert not marker.exists(), f"{argv[0]} imported the module a checkpoint named"


def test_a_user_cell_trains_at_the_default_float32_and_its_hint_names_the_cell(tmp_path, corpus, cell_module, capsys):
    ck = str(tmp_path / "ck.npz")
    float32 = [a for a in TINY if a not in ("--dtype", "float64")]  # the default dtype, float32
    assert main(["train", "--data", str(corpus), "--checkpoint", ck, "--cell", cell_module, "--steps", "2",
                 "--no-plot", *float32]) == 0
    out = capsys.readouterr().out
    assert f"micrornn sample --checkpoint {ck} --cell {cell_module}" in out  # the hint is a command that works
    model, _, _ = load_model(ck, __import__(cell_module.split(":")[0]).MGU)
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float32)}


def test_fused_with_a_user_cell_and_a_mismatched_built_in_cell_are_refused(tmp_path, corpus, cell_module, capsys):
    ck = str(tmp_path / "ck.npz")
    assert main(["train", "--data", str(corpus), "--checkpoint", ck, "--cell", cell_module, "--fused", "--steps",
                 "2", "--quiet", "--no-plot", *TINY]) == 2
    assert "--fused: only the built-in cells" in capsys.readouterr().err
    assert main(["train", "--data", str(corpus), "--checkpoint", ck, "--cell", "gru", "--steps", "2", "--quiet",
                 "--no-plot", *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", ck, "--cell", "lstm", "--max-chars", "50"]) == 2
    assert "trained with the built-in cell 'gru', not lstm" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", ck, "--cell", "gru", "--max-chars", "50"]) == 0


def test_sequence_model_casts_a_user_cell_to_its_dtype():
    model = nn.SequenceModel(5, 4, 5, cell=MGU, dtype=np.float32)
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    x, y = np.random.default_rng(0).integers(0, 5, (6, 2)), np.random.default_rng(1).integers(0, 5, (6, 2))
    loss, _ = model.loss(x, y)
    loss.backward()
    assert loss.dtype == np.float32


def test_train_load_model_is_the_public_loader(tmp_path):
    config = TrainConfig(hidden_size=6, num_layers=1, seq_len=8, batch_size=4, steps=2, val_every=0, sample_every=0,
                         dtype="float64")
    trainer = Trainer(TEXT, config)
    trainer.run(checkpoint=tmp_path / "ck.npz", progress=False, log=lambda s: None)
    model, vocab, meta = mr.train.load_model(tmp_path / "ck.npz")  # the name the API contract gives
    assert isinstance(model, nn.SequenceModel) and len(vocab) == model.head.out_features and meta["step"] == 2
