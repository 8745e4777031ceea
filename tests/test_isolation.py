"""Tests never read or write the current folder: following the README (`micrornn train` leaves
runs/char_rnn.npz in the checkout) cannot change a test's result."""
from pathlib import Path

from micrornn.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_each_test_runs_in_an_empty_temporary_folder(tmp_path):
    assert Path.cwd() == tmp_path and not list(tmp_path.iterdir())
    assert REPO != Path.cwd() and REPO not in Path.cwd().parents


def test_a_default_checkpoint_in_the_current_folder_belongs_to_this_test_only(capsys):
    # `micrornn train` refuses to overwrite runs/char_rnn.npz: a test that trained with the default
    # checkpoint in the checkout would fail after a reader ran the README's first command.
    assert not Path("runs").exists()
    assert main(["train", "--steps", "1", "--hidden-size", "8", "--seq-len", "8", "--batch-size", "2",
                 "--val-every", "0", "--val-chars", "0", "--sample-every", "0", "--no-plot", "--quiet",
                 "--data", str(REPO / "LICENSE")]) == 0
    assert Path("runs/char_rnn.npz").is_file()
