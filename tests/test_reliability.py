"""Reliability across the whole tool: every command's bad arguments, and a checkpoint save killed
half-way through."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from micrornn.train.checkpoint import load_checkpoint, save_checkpoint
from micrornn.cli import main

BAD_ARGUMENTS = [
    [],                                              # no command
    ["nonsense"],                                    # unknown command
    ["train", "--hidden-size", "-3"],
    ["train", "--layers", "0"],
    ["train", "--lr", "-1"],
    ["train", "--steps", "many"],
    ["train", "--optimizer", "rmsprop"],
    ["train", "--data", "/no/such/file.txt"],
    ["train", "--dtype", "float16"],
    ["sample", "--checkpoint", "/no/such/checkpoint.npz"],
    ["sample", "--temperature", "-1"],
    ["sample", "--length", "-5"],
    ["gradcheck", "--steps", "0"],
    ["gradcheck", "--nonlinearity", "sigmoid"],
    ["gradcheck", "--eps", "-1e-6"],
    ["viz", "-o", "picture.gif"],
    ["viz", "--steps", "-2", "-o", "x.dot"],
    ["viz", "--view", "sideways", "-o", "x.dot"],
    ["bench", "--sizes", "huge"],
    ["bench", "--repeats", "0"],
    ["bench", "--threads", "7"],
]


@pytest.mark.parametrize("argv", BAD_ARGUMENTS, ids=lambda a: " ".join(a) or "(none)")
def test_bad_arguments_exit_2_with_one_line_and_no_traceback(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own --help/--version paths only
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2, (argv, captured)
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in captured.err + captured.out
    assert list(tmp_path.iterdir()) == []  # a refused command writes nothing


def test_bad_arguments_in_a_real_process_exit_2_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "micrornn", "train", "--seq-len", "-1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_save_killed_half_way_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "model.npz"
    previous = {"w": np.arange(6.0).reshape(2, 3)}
    save_checkpoint(path, previous, {"step": 1}, None)
    child = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from micrornn.train import checkpoint
        def killed(fd):  # the process dies after writing the data, before it is made durable and renamed
            os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.os.fsync = killed
        checkpoint.save_checkpoint({str(path)!r}, {{"w": np.zeros((500, 500))}}, {{"step": 2}}, None)
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120)
    assert result.returncode == -9  # really killed
    params, meta, _ = load_checkpoint(path)
    np.testing.assert_array_equal(params["w"], previous["w"])
    assert meta["step"] == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.npz"]
    assert all(name.endswith(".tmp") for name in leftovers)  # only the dead process's temporary file
