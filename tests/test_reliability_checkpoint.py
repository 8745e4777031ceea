"""Checkpoint files (issue 16, items 6-9): every bad file refused with one CheckpointError, in time
and memory bounded by the file; saves that respect symlinks and special files and clean up after
killed saves."""
import io
import json
import os
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from micrornn.train import TrainConfig, Trainer
from micrornn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from micrornn.train.sample import load_model

TEXT = "the quick brown fox jumps over the lazy dog. " * 40
SMALL = dict(hidden_size=8, num_layers=1, seq_len=8, batch_size=2, steps=3, val_every=0, sample_every=0,
             warmup=0)


@pytest.fixture
def trained(tmp_path):
    """A checkpoint of a 3-step run, and its trainer."""
    trainer = Trainer(TEXT, TrainConfig(**SMALL))
    trainer.run(progress=False, log=lambda s: None)
    path = tmp_path / "run.npz"
    trainer.save(path)
    return path, trainer


def _npy(array, shape=None, descr=None) -> bytes:
    """An .npy member whose header may lie about its shape or dtype."""
    buf = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    header.update({k: v for k, v in (("shape", shape), ("descr", descr)) if v is not None})
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(array.tobytes())
    return buf.getvalue()


def _rewrite(src, dst, replace=None, extra=(), compress=None):
    """Copy a checkpoint, replacing members (name -> bytes) and adding extra (name, bytes)."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename, zin.read(info.filename))
            method = compress if compress and info.filename.startswith("param/") else zipfile.ZIP_STORED
            zout.writestr(info.filename, data, compress_type=method)
        for name, data in extra:
            zout.writestr(name, data)
    return dst


def _header(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return json.loads(np.lib.format.read_array(io.BytesIO(z.read("__header__.npy"))).tobytes())


def _with_header(src, dst, header):
    raw = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return _rewrite(src, dst, {"__header__.npy": _npy(raw)})


# ---- item 6: escapes from CheckpointError --------------------------------------------------

def _central_directory_flip(path, offset, value):
    """Set a field of every central-directory entry (offset from its signature) to `value`."""
    data = bytearray(path.read_bytes())
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        data[start + offset:start + offset + 2] = struct.pack("<H", value)
        start += 4
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("offset, value, what", [(8, 0x1, "encrypted"), (10, 99, "compression method 99")])
def test_central_directory_claiming_encryption_or_unknown_compression_is_refused(trained, offset, value, what):
    path, _ = trained
    _central_directory_flip(path, offset, value)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_a_member_declaring_a_huge_shape_is_refused_without_allocating(trained, tmp_path):
    path, trainer = trained
    name = "param/" + next(iter(trainer.model.state_dict()))
    bad = _rewrite(path, tmp_path / "bad.npz", {name + ".npy": _npy(np.zeros(3), shape=(2 ** 40,))})
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"declares shape \(1099511627776,\)"):
            load_checkpoint(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_a_deeply_nested_header_is_refused(trained, tmp_path):
    path, _ = trained
    header = _header(path)
    deep = "[" * 100_000 + "]" * 100_000
    text = json.dumps(header).replace('"meta": {', '"meta": {"deep": ' + deep + ", ", 1)
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    bad = _rewrite(path, tmp_path / "bad.npz", {"__header__.npy": _npy(raw)})
    with pytest.raises(CheckpointError, match="nested"):
        load_checkpoint(bad)


@pytest.mark.parametrize("edit, match", [
    (lambda h: h["meta"].update(step=float("inf")), "step"),
    (lambda h: h["optimizer"]["optimizer"].update(step_count=float("inf")), "step_count"),
    (lambda h: h["meta"].update(step=-3), "step"),
    (lambda h: h["meta"].update(data=[1, 2]), "data"),
    (lambda h: h["optimizer"]["optimizer"]["state"][0].update(exp_avg={"__ndarray__": [1]}), "reference"),
    (lambda h: h["meta"]["config"].update(hidden_size=float("nan")), "hidden_size"),
])
def test_bad_header_values_are_refused_at_resume(trained, tmp_path, edit, match):
    path, _ = trained
    header = _header(path)
    edit(header)
    bad = _with_header(path, tmp_path / "bad.npz", header)
    with pytest.raises(CheckpointError, match=match):
        Trainer.resume(bad, TEXT)


def test_a_structured_dtype_parameter_is_refused(trained, tmp_path):
    path, trainer = trained
    name = "param/" + next(iter(trainer.model.state_dict()))
    record = np.zeros(3, dtype=[("a", "<f8"), ("b", "<i4")])
    bad = _rewrite(path, tmp_path / "bad.npz", {name + ".npy": _npy(record)})
    with pytest.raises(CheckpointError, match="plain numbers"):
        load_checkpoint(bad)


def test_a_wrongly_shaped_carried_state_is_refused_at_resume_not_mid_run(trained, tmp_path):
    path, trainer = trained
    bad = tmp_path / "bad.npz"
    trainer.hidden = np.zeros((1, 5, 8), dtype=np.float32)  # batch 5, the run has 2
    trainer.save(bad)
    with pytest.raises(CheckpointError, match="carried state"):
        Trainer.resume(bad, TEXT)


@pytest.mark.parametrize("where", ["param", "optimizer", "hidden"])
def test_non_finite_values_are_refused_at_load(trained, tmp_path, where):
    path, trainer = trained
    bad = tmp_path / "bad.npz"
    if where == "param":
        trainer.model.parameters()[0].data[0] = np.nan
    elif where == "optimizer":
        trainer.optimizer.state[0]["exp_avg"][...] = np.inf
    else:
        trainer.hidden = np.full((1, 2, 8), np.nan, dtype=np.float32)
    trainer.save(bad)
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        Trainer.resume(bad, TEXT)
    if where == "param":
        with pytest.raises(CheckpointError, match="NaN or Inf"):
            load_model(bad)


# ---- item 7: small files that would exhaust memory or time ---------------------------------

def test_a_compressed_member_is_refused_before_it_is_inflated(trained, tmp_path):
    path, trainer = trained
    name = "param/" + next(iter(trainer.model.state_dict()))
    big = np.zeros(20_000_000 // 8)  # 20 MB of zeros deflate to a few kB
    bad = _rewrite(path, tmp_path / "bad.npz", {name + ".npy": _npy(big)}, compress=zipfile.ZIP_DEFLATED)
    assert bad.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="compressed"):
            load_checkpoint(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


@pytest.mark.parametrize("field, value", [("hidden_size", 20000), ("num_layers", 10 ** 8),
                                          ("input_size", 10 ** 9)])
def test_model_sizes_in_the_header_are_checked_before_building_the_model(trained, tmp_path, field, value):
    path, _ = trained
    header = _header(path)
    header["meta"]["model"][field] = value
    bad = _with_header(path, tmp_path / "bad.npz", header)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=field):
            load_model(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def test_only_the_members_the_header_lists_are_read(trained, tmp_path, monkeypatch):
    path, trainer = trained
    bad = _rewrite(path, tmp_path / "bad.npz", extra=[(f"junk/{i}.npy", b"") for i in range(3000)])
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(name) or
                        real_open(self, name, *a, **k))
    params, _, _ = load_checkpoint(bad)
    assert set(params) == set(trainer.model.state_dict())
    assert len(opened) < 50 and not any("junk" in getattr(n, "filename", n) for n in opened)


# ---- items 8 and 9: where saves go, and what they leave behind ------------------------------

def test_saving_through_a_symlink_updates_its_target_and_keeps_the_link(tmp_path):
    target, link = tmp_path / "real.npz", tmp_path / "link.npz"
    save_checkpoint(target, {"w": np.zeros(2)})
    link.symlink_to(target)
    save_checkpoint(link, {"w": np.ones(2)})
    assert link.is_symlink()
    np.testing.assert_array_equal(load_checkpoint(target)[0]["w"], np.ones(2))


def test_a_special_file_is_never_replaced(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        save_checkpoint(fifo, {"w": np.zeros(2)})
    assert fifo.exists() and not fifo.is_file()


def test_a_save_removes_temporaries_left_by_killed_saves_but_not_live_ones(tmp_path):
    path = tmp_path / "model.npz"
    dead = tmp_path / f".model.npz.{2 ** 22 + 12345}.abc123.tmp"  # above the usual pid range: no such process
    live = tmp_path / f".model.npz.{os.getppid()}.def456.tmp"
    other = tmp_path / ".other.npz.999999.x.tmp"
    for leftover in (dead, live, other):
        leftover.write_bytes(b"x" * 1000)
    save_checkpoint(path, {"w": np.zeros(2)})
    assert not dead.exists() and live.exists() and other.exists()
