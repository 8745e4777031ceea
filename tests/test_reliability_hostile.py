"""Hostile and careless input, round three (issue 24): files that blow memory or hang, pages that
run injected script, loaders that let inf in halfway, and sizes with no bound."""
import io
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest

from micrornn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- item 1: overlapping zip members -----------------------------------------------------------

def _npy_uint8(payload: bytes) -> bytes:
    """payload as the .npy file of a 1-D uint8 array."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (len(payload),)})
    return f.getvalue() + payload


def _local_header(name: bytes, data: bytes) -> bytes:
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                       len(name), 0) + name


def _nested_npz(names, header_json: bytes, inner: bytes) -> bytes:
    """A zip of stored members where member k's bytes hold member k+1 whole, each a valid uint8 .npy:
    every member is about the file's size, so reading them all reads the file len(names) times."""
    header_name = b"__header__.npy"
    header_data = _npy_uint8(header_json)
    members, data = [], _npy_uint8(inner)  # (name, data), innermost first
    for name in reversed(names):
        members.append((name.encode(), data))
        data = _npy_uint8(_local_header(name.encode(), data) + data)
    members.reverse()
    out = _local_header(header_name, header_data) + header_data
    table, position = [(header_name, header_data, 0)], len(out)
    for name, data in members:
        table.append((name, data, position))
        position += 30 + len(name) + (len(data) - len(data.split(b"\n", 1)[1]))  # past its local and .npy headers
    out += _local_header(*members[0]) + members[0][1]  # the outermost member holds all the others
    central = b""
    for name, data, at in table:
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, zlib.crc32(data), len(data),
                               len(data), len(name), 0, 0, 0, 0, 0, at) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(table), len(table), len(central), len(out), 0)
    return out + central + end


def test_overlapping_zip_members_are_refused_before_any_is_read(tmp_path):
    import json
    names = [f"param/p{i}" for i in range(40)]
    header = json.dumps({"format": "micrornn-checkpoint", "version": 1, "params": [n[6:] for n in names],
                         "meta": {}, "optimizer": None}).encode()
    path = tmp_path / "nested.npz"
    path.write_bytes(_nested_npz([n + ".npy" for n in names], header, inner=b"x" * 200_000))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="overlap"):
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size, f"{peak:,} bytes allocated for a {size:,}-byte file"


def test_a_normal_checkpoint_still_loads(tmp_path):
    save_checkpoint(tmp_path / "ok.npz", {"a": np.arange(6.0).reshape(2, 3)}, {"k": 1}, {"m": np.ones(2)})
    params, meta, state = load_checkpoint(tmp_path / "ok.npz")
    assert params["a"].shape == (2, 3) and meta == {"k": 1} and state["m"].tolist() == [1.0, 1.0]


# ---- item 2: reading text has a bound and never blocks ----------------------------------------

TEXT = "the quick brown fox jumps over the lazy dog. " * 40
CLI_SMALL = ["--hidden-size", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "--warmup", "0",
             "--val-every", "0", "--sample-every", "0", "--no-plot", "--quiet", "--steps", "2"]


def _run(args):
    """`micrornn args` in this process, its output captured (for commands that cannot hang)."""
    import contextlib
    import types
    from micrornn.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def _cli(args, timeout=60):
    """`python -m micrornn args` in a child (a hang fails the test instead of hanging it)."""
    return subprocess.run([sys.executable, "-m", "micrornn", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": ROOT}, stdin=subprocess.DEVNULL)


def _one_line_refusal(done, *words):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_load_text_refuses_a_device_and_a_fifo_at_once(tmp_path):
    from micrornn.train.data import load_text
    with pytest.raises(ValueError, match="not a regular file"):
        load_text("/dev/zero")
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        load_text(fifo)


def test_a_gzip_bomb_is_refused_at_the_decompressed_cap_in_small_memory(tmp_path):
    import gzip
    from micrornn.train.data import MAX_TEXT_BYTES, load_text
    bomb = tmp_path / "bomb.txt.gz"
    bomb.write_bytes(gzip.compress(b"a" * 20_000_000, 9))  # 20 MB of text in about 20 kB
    assert bomb.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="decompresses to more than 100,000 bytes"):
            load_text(bomb, max_bytes=100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # refused by counting, never holding the 20 MB
    small = tmp_path / "small.txt.gz"
    small.write_bytes(gzip.compress(b"ab" * 50_000))
    assert load_text(small, max_bytes=100_000) == "ab" * 50_000
    assert 100 << 20 <= MAX_TEXT_BYTES <= 1 << 30


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_train_refuses_a_device_or_fifo_as_data_in_one_line(tmp_path, kind):
    data = "/dev/zero" if kind == "device" else str(tmp_path / "pipe")
    if kind == "fifo":
        os.mkfifo(data)
    done = _cli(["train", "--data", data, "--checkpoint", str(tmp_path / "ck.npz"), *CLI_SMALL])
    _one_line_refusal(done, "--data", "not a regular file")
    assert not (tmp_path / "ck.npz").exists()


def _checkpoint_with_source(tmp_path, source):
    """A real checkpoint whose recorded data source is `source` (edited in, as a hostile file would)."""
    from micrornn.train import TrainConfig, Trainer
    from micrornn.train.checkpoint import load_checkpoint
    trainer = Trainer(TEXT, TrainConfig(hidden_size=8, num_layers=1, seq_len=8, batch_size=2, steps=1,
                                        val_every=0, sample_every=0, warmup=0))
    trainer.run(progress=False, log=lambda s: None)
    path = tmp_path / "ck.npz"
    trainer.save(path)
    params, meta, state = load_checkpoint(path)
    meta["data"]["source"] = source
    save_checkpoint(path, params, meta, state)
    return path


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_eval_and_resume_refuse_a_recorded_source_that_is_a_device_or_fifo(tmp_path, kind):
    source = "/dev/zero" if kind == "device" else str(tmp_path / "pipe")
    if kind == "fifo":
        os.mkfifo(source)
    path = _checkpoint_with_source(tmp_path, source)
    _one_line_refusal(_cli(["eval", "--checkpoint", str(path)]), "not a regular file")
    _one_line_refusal(_cli(["train", "--resume", "--checkpoint", str(path), *CLI_SMALL[:-2], "--steps", "3"]),
                      "the checkpoint's training text", "not a regular file", "pass --data")


# ---- item 3: nothing a caller names or titles runs as script in the stepper page ----------------

HOSTILE_NAME = "{{TRACE}}<img src=x onerror=document.documentElement.setAttribute('pwned','yes')>"
HOSTILE_TITLE = "{{JS}}</title><script>document.documentElement.setAttribute('pwned','title')</script>"


def _hostile_page():
    import micrornn as mr
    from micrornn.viz.html import demo_problem, to_html
    model, x, targets = demo_problem(3)
    return to_html(model, mr.Tensor(x, name=HOSTILE_NAME), targets, title=HOSTILE_TITLE)


def test_stepper_page_keeps_hostile_names_and_titles_as_text():
    import json
    from html.parser import HTMLParser
    pytest.importorskip("graphviz")

    class Elements(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.handlers, self.scripts, self.inside, self.h1 = [], [], [], None, ""

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.handlers += [name for name, _ in attrs if name.startswith("on")]
            self.inside = tag

        def handle_endtag(self, tag):
            self.inside = None

        def handle_data(self, data):
            if self.inside == "script":
                self.scripts.append(data)
            elif self.inside == "h1":
                self.h1 += data
    try:
        page = _hostile_page()
    except Exception as e:  # no `dot` program
        pytest.skip(f"cannot lay out the graph here: {e}")
    parsed = Elements()
    parsed.feed(page)
    assert parsed.tags.count("script") == 2 and "img" not in parsed.tags and parsed.handlers == []
    assert parsed.h1 == HOSTILE_TITLE  # the title is shown as text, the script is not pasted there
    trace = json.loads(parsed.scripts[0].removeprefix("const TRACE = ").removesuffix(";"))
    assert HOSTILE_NAME in [n["label"] for n in trace["nodes"].values()]


def test_stepper_page_runs_no_injected_script_in_a_browser(tmp_path):
    import shutil
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium to load the page in")
    try:
        page = _hostile_page()
    except Exception as e:
        pytest.skip(f"cannot lay out the graph here: {e}")
    path = tmp_path / "stepper.html"
    path.write_text(page, encoding="utf-8")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           "--virtual-time-budget=3000", path.as_uri()], capture_output=True, text=True, timeout=120)
    dom = done.stdout
    assert "ready: " in dom, "the page's own script did not run: the check below would prove nothing"
    assert "pwned=" not in dom


# ---- item 7: sampling switches dropout off; item 15: it streams and has a cap ----------------------

def _dropout_checkpoint(tmp_path):
    from micrornn.train import TrainConfig, Trainer
    trainer = Trainer(TEXT, TrainConfig(hidden_size=16, num_layers=2, seq_len=8, batch_size=2, steps=3, cell="gru",
                                        dropout=0.5, val_every=0, sample_every=0, warmup=0))
    trainer.run(progress=False, log=lambda s: None)
    path = tmp_path / "gru.npz"
    trainer.save(path)
    return path


def test_greedy_sampling_does_not_depend_on_the_seed_with_dropout(tmp_path, capsys):
    from micrornn.cli import main
    from micrornn.train.sample import load_model, sample
    path = _dropout_checkpoint(tmp_path)
    model, vocab, _ = load_model(path)
    texts = {sample(model, vocab, 200, temperature=0, prime="the ", rng=seed) for seed in range(4)}
    assert len(texts) == 1
    assert model.training  # put back as it was found
    outputs = set()
    for seed in ("1", "2", "3"):
        assert main(["sample", "--checkpoint", str(path), "--temperature", "0", "--length", "200",
                     "--prime", "the ", "--seed", seed]) == 0
        outputs.add(capsys.readouterr().out)
    assert outputs == {texts.pop() + "\n"}


def test_sampling_streams_its_text_and_refuses_a_length_above_the_cap(tmp_path):
    from micrornn.train.sample import MAX_SAMPLE_LENGTH, generate, load_model
    model, vocab, _ = load_model(_dropout_checkpoint(tmp_path))
    pieces = generate(model, vocab, MAX_SAMPLE_LENGTH, temperature=1.0, rng=0, chunk=100)
    first = next(pieces)  # the first hundred characters come at once, not after a million
    assert len(first) == 100
    pieces.close()
    done = _run(["sample", "--checkpoint", str(tmp_path / "gru.npz"), "--length", str(MAX_SAMPLE_LENGTH + 1)])
    _one_line_refusal(done, "--length", "1,000,001 is more than")


# ---- item 9: load_torch_state_dict checks every value in the parameter's dtype first ------------

def _float32_model():
    from micrornn.nn import SequenceModel
    return SequenceModel(3, 4, 3, num_layers=2, dtype=np.float32, rng=np.random.default_rng(0))


def _snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("edit", ["beyond_float32", "bias_sum_overflows", "nan", "inf"])
def test_load_torch_state_dict_refuses_values_not_finite_in_the_target_dtype(edit):
    from micrornn.interop import load_torch_state_dict, torch_state_dict
    model = _float32_model()
    sd = {k: v.astype(np.float64) for k, v in torch_state_dict(model).items()}
    if edit == "beyond_float32":
        sd["head.bias"][1] = 1e39
    elif edit == "bias_sum_overflows":
        sd["rnn.bias_ih_l1"][0] = sd["rnn.bias_hh_l1"][0] = 3e38  # each fits float32, their sum does not
    else:
        sd["rnn.weight_hh_l0"][0, 0] = np.nan if edit == "nan" else -np.inf
    before = _snapshot(model)
    with pytest.raises(ValueError, match="NaN or Inf.*nothing was loaded"):
        load_torch_state_dict(model, sd)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_load_torch_state_dict_under_warnings_as_errors_loads_nothing_or_everything():
    script = """
import numpy as np, warnings
from micrornn.nn import SequenceModel
from micrornn.interop import load_torch_state_dict, torch_state_dict
warnings.simplefilter("error")
model = SequenceModel(3, 4, 3, num_layers=2, dtype=np.float32, rng=np.random.default_rng(0))
before = {k: v.copy() for k, v in model.state_dict().items()}
sd = {k: v.astype(np.float64) * 2 for k, v in torch_state_dict(model).items()}
sd["head.bias"][0] = 1e39
try:
    load_torch_state_dict(model, sd)
except ValueError as e:
    print("refused" if "nothing was loaded" in str(e) else e)
print("unchanged" if all(np.array_equal(before[k], v) for k, v in model.state_dict().items()) else "changed")
sd["head.bias"][0] = 0.5
load_torch_state_dict(model, sd)
print("loaded" if np.allclose(model.state_dict()["rnn.cells.0.U"], 2 * before["rnn.cells.0.U"]) else "not loaded")
"""
    done = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert done.stdout.split() == ["refused", "unchanged", "loaded"], done.stdout + done.stderr


# ---- item 10: the NaN/Inf check runs in the model's dtype; item 14: hand-made metadata -----------

def _edited_checkpoint(tmp_path, edit, dtype="float32"):
    """A real float32 checkpoint, then edited by `edit(params, meta, state)` as a hand-made file would be."""
    from micrornn.train import TrainConfig, Trainer
    from micrornn.train.checkpoint import load_checkpoint
    trainer = Trainer(TEXT, TrainConfig(hidden_size=8, num_layers=1, seq_len=8, batch_size=2, steps=2, dtype=dtype,
                                        val_every=0, sample_every=0, warmup=0))
    trainer.run(progress=False, log=lambda s: None)
    path = tmp_path / "hand.npz"
    trainer.save(path)
    params, meta, state = load_checkpoint(path)
    edit(params, meta, state)
    save_checkpoint(path, params, meta, state)
    (tmp_path / "text.txt").write_text(TEXT)
    return path


def _beyond_float32(params, meta, state):
    params["head.bias"] = params["head.bias"].astype(np.float64)
    params["head.bias"][0] = 1e39


def test_a_float64_value_beyond_float32_in_a_float32_checkpoint_is_refused(tmp_path):
    from micrornn.train.sample import load_model
    path = _edited_checkpoint(tmp_path, _beyond_float32)
    with pytest.raises(CheckpointError, match="'head.bias' contains NaN or Inf as float32"):
        load_model(path)
    data = ["--data", str(tmp_path / "text.txt")]
    _one_line_refusal(_run(["eval", "--checkpoint", str(path), *data]), "NaN or Inf")
    _one_line_refusal(_run(["sample", "--checkpoint", str(path)]), "NaN or Inf")
    _one_line_refusal(_run(["train", "--resume", "--checkpoint", str(path), *data, *CLI_SMALL[:-2], "--steps", "3"]),
                      "NaN or Inf")


def _string_history(params, meta, state):
    meta["history"]["loss"][0] = "1.5"


def _integer_source(params, meta, state):
    meta["data"]["source"] = 12345


@pytest.mark.parametrize("edit, words", [(_string_history, "history 'loss' holds '1.5'"),
                                         (_integer_source, "data source must be a path")])
def test_hand_made_metadata_is_refused_by_resume_in_one_line(tmp_path, edit, words):
    path = _edited_checkpoint(tmp_path, edit, "float64")
    _one_line_refusal(_run(["train", "--resume", "--checkpoint", str(path), *CLI_SMALL[:-2], "--steps", "3",
                            "--data", str(tmp_path / "text.txt")]), words)


def test_eval_refuses_an_integer_data_source_in_one_line(tmp_path):
    path = _edited_checkpoint(tmp_path, _integer_source, "float64")
    _one_line_refusal(_run(["eval", "--checkpoint", str(path)]), "12345", "--data")


# ---- item 11: a checkpoint saved mid-run carries the time used so far ----------------------------

def test_a_periodic_checkpoint_keeps_the_time_budget_used_so_far(tmp_path):
    import shutil
    import time
    from micrornn.train import TrainConfig, Trainer
    checkpoint, killed = tmp_path / "run.npz", tmp_path / "left_by_kill9.npz"

    def on_step(trainer):
        if trainer.step == 2:
            time.sleep(0.6)  # time the budget counts
        if trainer.step == 3:  # the file a kill -9 right now would leave behind
            shutil.copy(checkpoint, killed)
    trainer = Trainer(TEXT, TrainConfig(hidden_size=8, num_layers=1, seq_len=8, batch_size=2, steps=5, val_every=0,
                                        sample_every=0, warmup=0, time_budget=600, checkpoint_every=1))
    trainer.run(checkpoint=checkpoint, progress=False, log=lambda s: None, on_step=on_step)
    resumed = Trainer.resume(killed, TEXT)
    assert resumed.step == 3 and resumed.wall_seconds >= 0.6
    assert resumed.wall_seconds <= trainer.wall_seconds


# ---- item 13: no message claims a save that did not happen; a refused run leaves nothing ---------

def _train_cli(corpus, checkpoint, *extra):
    return _run(["train", "--data", str(corpus), "--checkpoint", str(checkpoint), *CLI_SMALL[:-2], *extra])


def test_a_time_budget_that_allows_no_step_claims_no_checkpoint(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT)
    done = _train_cli(corpus, tmp_path / "ck.npz", "--time-budget", "0.000001", "--steps", "5")
    assert done.returncode == 1 and "no checkpoint written" in done.stderr, done.stderr
    assert "checkpoint:" not in done.stdout and "nan" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.txt"]


def test_divergence_at_the_first_step_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    from micrornn.cli import main
    from micrornn.train import Trainer

    def diverging(self):
        raise FloatingPointError("Adam.step: gradient of parameter 0 contains NaN or Inf")
    monkeypatch.setattr(Trainer, "train_step", diverging)
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT)
    ck = tmp_path / "ck.npz"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(ck), *CLI_SMALL]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no checkpoint was written" in err and "saved" not in err
    assert not ck.exists()


def test_neither_a_refused_nor_a_finished_run_leaves_a_lock_file(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT)
    ck = tmp_path / "ck.npz"
    assert _train_cli(corpus, ck, "--steps", "1").returncode == 0
    refused = _train_cli(corpus, ck, "--resume", "--layers", "2", "--steps", "2")
    _one_line_refusal(refused, "--layers")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz", "ck.toml", "text.txt"]  # the run's TOML stays


def test_the_lock_still_excludes_a_second_run_and_survives_its_file_being_removed(tmp_path):
    from micrornn.train.lock import CheckpointLocked, checkpoint_lock, lock_path
    ck = tmp_path / "ck.npz"
    with checkpoint_lock(ck):
        with pytest.raises(CheckpointLocked):
            with checkpoint_lock(ck):
                pass
        assert lock_path(ck).exists()
    assert not lock_path(ck).exists()
    with checkpoint_lock(ck):
        lock_path(ck).unlink()  # removed under a holder: the next run locks a new file
        with checkpoint_lock(ck):
            with pytest.raises(CheckpointLocked):
                with checkpoint_lock(ck):
                    pass


def test_a_missing_data_file_is_named_before_an_existing_checkpoint(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT)
    ck = tmp_path / "ck.npz"
    assert _train_cli(corpus, ck, "--steps", "1").returncode == 0
    _one_line_refusal(_train_cli(tmp_path / "missing.txt", ck, "--steps", "2"), "--data", "not found")


# ---- item 12: viz writes its outputs atomically -------------------------------------------------

def _cli_with_file_limit(args, limit):
    """The CLI in a child that may write no file beyond `limit` bytes (EFBIG, as a full disk gives ENOSPC)."""
    import resource
    import signal

    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-m", "micrornn", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT, "PYTHONDONTWRITEBYTECODE": "1"},
                          preexec_fn=limit_files)


@pytest.mark.parametrize("kind", ["svg", "html"])
def test_a_failed_viz_write_keeps_the_previous_output_and_leaves_nothing_behind(tmp_path, kind):
    import shutil
    if shutil.which("dot") is None:
        pytest.skip("needs the Graphviz dot program")
    out = tmp_path / f"picture.{kind}"
    option = ["-o", str(out)] if kind == "svg" else ["--html", str(out)]
    first = _run(["viz", *option, "--steps", "2"])
    assert first.returncode == 0, first.stderr
    good = out.read_bytes()
    done = _cli_with_file_limit(["viz", *option, "--steps", "4"], limit=2000)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and str(out) in done.stderr
    assert out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no .dot, no temporary


@pytest.mark.parametrize("option", ["-o", "--html", "--plot"])
def test_viz_refuses_an_output_path_that_is_a_directory(tmp_path, option):
    folder = tmp_path / ("pic.html" if option == "--html" else "pic.png")
    folder.mkdir()
    args = [option, str(folder)] if option != "--plot" else ["-o", str(tmp_path / "g.dot"), "--plot", str(folder)]
    _one_line_refusal(_run(["viz", *args]), "is a directory")


# ---- items 14 and 15: one clear line instead of a traceback, and bounded sizes -------------------

def test_a_thread_count_beyond_any_machine_is_refused_in_one_line(tmp_path):
    from micrornn.train.threads import blas_threads
    _one_line_refusal(_run(["train", "--threads", "99999999999999999999", "--steps", "1",
                            "--checkpoint", str(tmp_path / "ck.npz")]), "--threads", "at most")
    with pytest.raises(ValueError, match="from 0 to"):
        with blas_threads(10 ** 20):
            pass
    assert not any(tmp_path.iterdir())


def _closed_pipe_run(args):
    """Run args with stdout and stderr on a pipe nobody reads any more."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, *args], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    finally:
        os.close(write)


@pytest.mark.parametrize("args", [
    pytest.param(["-m", "micrornn", "gradcheck"], marks=pytest.mark.slow),  # these three held already: guards
    pytest.param(["-m", "micrornn", "viz", "-o", "{tmp}/g.dot"], marks=pytest.mark.slow),
    pytest.param(["-m", "micrornn", "bench", "--quick", "--no-torch", "--no-jax", "--sizes", "small", "--repeats",
                  "1"], marks=pytest.mark.slow),
    ["-m", "micrornn.bench", "--quick", "--no-torch", "--no-jax", "--sizes", "small", "--repeats", "1"],
])
def test_a_closed_pipe_ends_a_command_quietly(tmp_path, args):
    done = _closed_pipe_run([a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 141 and done.stderr == "", done.stderr


def test_a_usage_error_with_stderr_closed_still_exits_2():
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "micrornn", "gradcheck", "--hidden-size", "0"], stdout=write,
                              stderr=write, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    finally:
        os.close(write)
    assert done.returncode == 2


def test_to_html_refuses_a_callable_nonlinearity_nan_input_and_big_sizes_in_one_line():
    pytest.importorskip("graphviz")
    from micrornn.nn import SequenceModel
    from micrornn.viz.html import STEPPER_LIMITS, demo_problem, to_html
    rng = np.random.default_rng(0)
    x, targets = rng.standard_normal((3, 1, 2)), np.zeros((3, 1), dtype=int)
    with pytest.raises(TypeError, match="needs \"tanh\" or \"relu\", got '<lambda>'"):
        to_html(SequenceModel(2, 3, 3, nonlinearity=lambda z: z.tanh()), x, targets)
    model, x, targets = demo_problem(3)
    x[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        to_html(model, x, targets)
    steps = STEPPER_LIMITS["steps"] + 1
    with pytest.raises(ValueError, match=f"steps {steps} is more than"):
        to_html(*demo_problem(steps))
    wide = SequenceModel(2, 1000, 3, rng=rng)
    with pytest.raises(ValueError, match="hidden_size 1000 is more than"):
        to_html(wide, rng.standard_normal((3, 1, 2)), np.zeros((3, 1), dtype=int))


def test_viz_html_refuses_a_hidden_size_the_page_cannot_hold(tmp_path):
    done = _run(["viz", "--html", str(tmp_path / "page.html"), "--hidden-size", "1000"])
    _one_line_refusal(done, "--hidden-size", "at most")
    assert not any(tmp_path.iterdir())


def test_models_too_big_for_memory_are_refused_before_numpy_is_asked():
    from micrornn.nn import LSTM, RNN, Linear, SequenceModel
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="SequenceModel: input_size=99,999,999,999 .* more than this machine"):
            SequenceModel(99999999999, 8, 4)
        with pytest.raises(ValueError, match="num_layers=1,000,000,000"):
            SequenceModel(4, 8, 4, num_layers=10 ** 9, cell="lstm")
        with pytest.raises(ValueError, match="RNN: input_size=99,999,999,999"):
            RNN(99999999999, 8)
        with pytest.raises(ValueError, match="LSTM: hidden_size=1,000,000 "):
            LSTM(4, 10 ** 6)
        with pytest.raises(ValueError, match="a parameter of shape .* more than this machine"):
            Linear(10 ** 6, 10 ** 6)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20
    assert SequenceModel(4, 8, 4, num_layers=2, cell="gru").num_parameters() > 0
