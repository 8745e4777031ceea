"""Tests for micrornn.train.checkpoint: exact round trip, atomic saves, refusing bad or foreign files."""
import io
import os

import numpy as np
import pytest

from micrornn.train import checkpoint
from micrornn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from micrornn.nn.optim import Adam


class P:
    def __init__(self, data):
        self.data = np.asarray(data, dtype=float)
        self.grad = None


def sample_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"rnn.cells.0.U": rng.normal(size=(4, 3)),
            "rnn.cells.0.W": rng.normal(size=(4, 4)).astype(np.float32),
            "rnn.cells.0.b": np.zeros(4),
            "head.weight": rng.normal(size=(3, 4)),
            "head.bias": np.arange(3, dtype=np.int64)}


META = {"model": {"hidden_size": 4, "num_layers": 1}, "vocab": ["\n", " ", "a", "é"],
        "step": 17, "loss": 1.25, "note": None}


def leftovers(directory):
    return [f for f in os.listdir(directory) if f.endswith(".tmp")]


def test_round_trip_is_exact(tmp_path):
    params = sample_params()
    ps = [P(np.ones((2, 2))), P(np.zeros(3))]
    opt = Adam(ps, lr=0.01, betas=(0.8, 0.9))
    for _ in range(2):
        for p in ps:
            p.grad = np.full_like(p.data, 0.5)
        opt.step()
    state = opt.state_dict()
    state["extra"] = {"nested": [np.arange(3), {"deep": np.eye(2)}], "pair": (1, 2.5)}

    path = tmp_path / "model.npz"
    save_checkpoint(path, params, META, state)
    got_params, got_meta, got_state = load_checkpoint(path)

    assert list(got_params) == list(params)  # order kept
    for name, arr in params.items():
        assert got_params[name].dtype == arr.dtype
        np.testing.assert_array_equal(got_params[name], arr)
    assert got_meta == META
    assert got_state["hyperparameters"]["betas"] == (0.8, 0.9)  # tuples come back as tuples
    assert got_state["step_count"] == 2
    for s0, s1 in zip(state["state"], got_state["state"]):
        assert s0.keys() == s1.keys()
        assert s1["step"] == s0["step"]
        np.testing.assert_array_equal(s1["exp_avg"], s0["exp_avg"])
        np.testing.assert_array_equal(s1["exp_avg_sq"], s0["exp_avg_sq"])
    np.testing.assert_array_equal(got_state["extra"]["nested"][1]["deep"], np.eye(2))
    assert got_state["extra"]["pair"] == (1, 2.5)
    # the loaded optimizer state is accepted by a fresh optimizer
    Adam([P(np.ones((2, 2))), P(np.zeros(3))]).load_state_dict(got_state)


def test_no_optimizer_state_and_no_meta(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.ones(2)})
    params, meta, state = load_checkpoint(path)
    assert meta == {} and state is None
    np.testing.assert_array_equal(params["w"], np.ones(2))


def test_header_carries_format_marker_and_version(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.ones(2)}, {"step": 1})
    with np.load(path, allow_pickle=False) as z:
        text = z["__header__"].tobytes().decode("utf-8")
        assert set(z.files) == {"__header__", "param/w"}
    assert '"format": "micrornn-checkpoint"' in text and '"version": 1' in text


@pytest.mark.parametrize("target", ["savez", "fsync", "replace"])
def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch,
                                                                        target):
    path = tmp_path / "model.npz"
    save_checkpoint(path, {"w": np.ones(3)}, {"step": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    if target == "savez":
        def half_then_boom(f, **arrays):  # write some bytes first, like a real crash mid-write
            f.write(b"PK\x03\x04 partial")
            boom()
        monkeypatch.setattr(checkpoint.np, "savez", half_then_boom)
    else:
        monkeypatch.setattr(checkpoint.os, target, boom)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, {"w": np.zeros(3)}, {"step": 2})
    monkeypatch.undo()

    params, meta, _ = load_checkpoint(path)
    assert meta == {"step": 1}
    np.testing.assert_array_equal(params["w"], np.ones(3))
    assert leftovers(tmp_path) == []


def test_keyboard_interrupt_mid_save_also_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": np.zeros(3)})
    assert not path.exists() and leftovers(tmp_path) == []


def test_bad_arguments_fail_before_touching_anything(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, {"w": np.ones(1)})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(path, {"w": np.zeros(1)}, {"bad": object()})
    with pytest.raises(TypeError, match="dtype object"):
        save_checkpoint(path, {"w": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(TypeError, match="keys must be strings"):
        save_checkpoint(path, {"w": np.zeros(1)}, None, {0: np.zeros(1)})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(tmp_path / "missing_dir" / "c.npz", {"w": np.zeros(1)})
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(FileNotFoundError, match="a_file"):
        save_checkpoint(blocker / "c.npz", {"w": np.zeros(1)})
    assert path.read_bytes() == before and leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write to read-only directories")
def test_unwritable_directory_is_reported(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            save_checkpoint(locked / "c.npz", {"w": np.zeros(1)})
    finally:
        locked.chmod(0o700)


def test_unwritable_directory_check_runs_first(tmp_path, monkeypatch):
    # Works as root too: pretend the directory is not writable.
    monkeypatch.setattr(checkpoint.os, "access", lambda *a, **k: False)
    with pytest.raises(PermissionError, match="not writable"):
        save_checkpoint(tmp_path / "c.npz", {"w": np.zeros(1)})
    assert list(tmp_path.iterdir()) == []


def write_valid(tmp_path):
    path = tmp_path / "good.npz"
    save_checkpoint(path, sample_params(), META, Adam([P(np.ones(3))]).state_dict())
    return path


def test_truncated_file(tmp_path):
    data = write_valid(tmp_path).read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"cut{cut}.npz"):
            load_checkpoint(bad)


def test_corrupted_bytes(tmp_path):
    data = bytearray(write_valid(tmp_path).read_bytes())
    for i in range(200, 260):  # inside the first stored array
        data[i] ^= 0xFF
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt.npz"):
        load_checkpoint(bad)


def test_random_bytes_and_text_and_empty_files(tmp_path):
    cases = {"random.npz": np.random.default_rng(1).bytes(4096),
             "notes.txt": b"this is just a text file\n",
             "empty.npz": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(tmp_path / name)


def test_foreign_npz_and_npy(tmp_path):
    np.savez(tmp_path / "foreign.npz", a=np.ones(3), b=np.zeros(2))
    with pytest.raises(CheckpointError, match="not a micrornn checkpoint"):
        load_checkpoint(tmp_path / "foreign.npz")
    header = np.frombuffer(b'{"format": "something-else", "version": 1}', dtype=np.uint8)
    np.savez(tmp_path / "other.npz", __header__=header)
    with pytest.raises(CheckpointError, match="format marker"):
        load_checkpoint(tmp_path / "other.npz")
    np.save(tmp_path / "single.npy", np.ones(3))
    with pytest.raises(CheckpointError, match="single .npy"):
        load_checkpoint(tmp_path / "single.npy")


def test_newer_version_is_refused(tmp_path):
    header = np.frombuffer(b'{"format": "micrornn-checkpoint", "version": 99, "params": [],'
                           b' "meta": {}}', dtype=np.uint8)
    np.savez(tmp_path / "future.npz", __header__=header)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "future.npz")


class Exploit:
    """Unpickling this would run code (it would create a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_array_is_refused_not_executed(tmp_path):
    path = write_valid(tmp_path)
    marker = tmp_path / "pwned"
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    entries["param/head.bias"] = np.array([Exploit(str(marker))], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **entries)  # np.savez pickles object arrays by default
    evil = tmp_path / "evil.npz"
    evil.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="evil.npz"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_checkpoint(tmp_path / "nope.npz")
