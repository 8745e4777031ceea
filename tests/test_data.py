"""Tests for micrornn.train.data: vocabulary, text loading, splitting, and the truncated-BPTT stream."""
import gzip
import hashlib
import json

import numpy as np
import pytest

from micrornn.train.data import (BUNDLED_CORPUS_CHARS, BUNDLED_CORPUS_SHA256, BatchStream, Vocab, bundled_corpus_path,
                           load_bundled_corpus, load_text, split_point, train_val_split)


def test_vocab_round_trip_and_sorted_ids():
    text = "hello, world!\nnaïve café"
    vocab = Vocab(text)
    assert vocab.to_list() == sorted(set(text))
    assert len(vocab) == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert vocab.decode(ids) == text
    assert vocab.decode(list(ids)) == text
    assert vocab.encode("").shape == (0,) and vocab.decode([]) == ""
    assert ids[text.index("\n")] == 0  # "\n" sorts first


def test_vocab_json_round_trip():
    vocab = Vocab("the quick brown fox")
    restored = Vocab.from_list(json.loads(json.dumps(vocab.to_list())))
    assert restored == vocab
    np.testing.assert_array_equal(restored.encode("fox"), vocab.encode("fox"))


def test_vocab_errors_name_the_character_or_id():
    vocab = Vocab("abc")
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\) at position 2"):
        vocab.encode("abz")
    with pytest.raises(ValueError, match="'€'"):
        vocab.encode("a€")
    with pytest.raises(ValueError, match="id 3 at position 1"):
        vocab.decode([0, 3])
    with pytest.raises(ValueError, match="id -1"):
        vocab.decode([-1])
    with pytest.raises(ValueError, match="empty"):
        Vocab("")
    with pytest.raises(ValueError, match="'a' appears more than once"):
        Vocab.from_list(["a", "b", "a"])
    with pytest.raises(ValueError, match="entry 1 must be a single character"):
        Vocab.from_list(["a", "bc"])


def test_load_text_reads_utf8(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("naïve\ntext\n", encoding="utf-8")
    assert load_text(path) == "naïve\ntext\n"
    path.write_bytes(b"\xef\xbb\xbfwith bom")
    assert load_text(path) == "with bom"


def test_load_text_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_text(missing)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        load_text(empty)
    nul = tmp_path / "nul.bin"
    nul.write_bytes(b"abc\x00def")
    with pytest.raises(ValueError,
                       match=r"nul.bin looks like a binary file \(NUL byte at offset 3"):
        load_text(nul)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8 text.*0xe9 at offset 3"):
        load_text(latin)
    with pytest.raises(ValueError, match="is a directory"):
        load_text(tmp_path)


def test_bundled_corpus_is_the_full_tinyshakespeare():
    path = bundled_corpus_path()
    assert path.name == "tinyshakespeare.txt.gz" and path.is_file()
    assert path.stat().st_size < 500_000  # compressed: the wheel stays small
    text = load_bundled_corpus()
    assert len(text) == BUNDLED_CORPUS_CHARS == 1_115_394
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == BUNDLED_CORPUS_SHA256
    assert BUNDLED_CORPUS_SHA256 in (path.parent / "SOURCE.md").read_text()
    assert text.startswith("First Citizen:") and text.endswith("\n")
    vocab = Vocab(text)
    assert len(vocab) == 65
    assert vocab.decode(vocab.encode(text[:5000])) == text[:5000]


def test_standard_split_of_the_bundled_corpus_is_nanogpts():
    ids = np.arange(BUNDLED_CORPUS_CHARS)
    train, val = train_val_split(ids, 0.1)
    assert (len(train), len(val)) == (1_003_854, 111_540)  # nanoGPT shakespeare_char/prepare.py
    assert split_point(BUNDLED_CORPUS_CHARS, 0.1) == 1_003_854


def test_load_text_reads_gzip_and_refuses_a_broken_one(tmp_path):
    good = tmp_path / "t.txt.gz"
    good.write_bytes(gzip.compress("héllo\n".encode()))
    assert load_text(good) == "héllo\n"
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(b"hello")[:-6])
    with pytest.raises(ValueError, match="bad.txt.gz is not a readable gzip file"):
        load_text(bad)
    plain = tmp_path / "plain.gz"
    plain.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="plain.gz is not a readable gzip file"):
        load_text(plain)


def test_train_val_split():
    ids = np.arange(100)
    train, val = train_val_split(ids, 0.1)
    assert len(train) == 90 and len(val) == 10
    np.testing.assert_array_equal(np.concatenate([train, val]), ids)
    train, val = train_val_split(ids, 0.0)
    assert len(train) == 100 and len(val) == 0
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(ids, 1.0)
    with pytest.raises(ValueError, match="too few"):
        train_val_split(np.arange(5), 0.1)


def test_batch_stream_shapes_and_shifted_targets():
    ids = np.arange(1000)
    stream = BatchStream(ids, batch_size=4, seq_len=10)
    # 4 streams of 250 ids; chunks need seq_len + 1 ids: (250 - 1) // 10 = 24 per epoch
    assert stream.steps_per_epoch == 24
    x, y = next(stream)
    assert x.shape == y.shape == (10, 4) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1], np.arange(250, 260))  # stream 1 starts at 250
    np.testing.assert_array_equal(y[:-1], x[1:])
    np.testing.assert_array_equal(y[-1], x[-1] + 1)


def test_batch_stream_chunks_continue_each_stream():
    ids = np.random.default_rng(0).integers(0, 50, size=503)
    stream = BatchStream(ids, batch_size=5, seq_len=7)
    chunks = [next(stream) for _ in range(stream.steps_per_epoch)]
    for b in range(5):
        col = np.concatenate([x[:, b] for x, _ in chunks])
        np.testing.assert_array_equal(col, ids[b * 100: b * 100 + len(col)])
        tgt = np.concatenate([y[:, b] for _, y in chunks])
        np.testing.assert_array_equal(tgt, ids[b * 100 + 1: b * 100 + 1 + len(tgt)])


def test_batch_stream_cycles_and_seeks():
    stream = BatchStream(np.arange(200), batch_size=2, seq_len=9)
    n = stream.steps_per_epoch
    first = [next(stream) for _ in range(n)]
    assert stream.epoch == 1 and stream.chunk_index == 0 and stream.position == n
    again = next(stream)  # restarts at chunk 0
    np.testing.assert_array_equal(again[0], first[0][0])

    resumed = BatchStream(np.arange(200), batch_size=2, seq_len=9)
    resumed.seek(n + 3)
    assert resumed.epoch == 1 and resumed.chunk_index == 3
    np.testing.assert_array_equal(next(resumed)[0], first[3][0])
    np.testing.assert_array_equal(resumed.chunk(2)[1], first[2][1])
    with pytest.raises(ValueError, match="non-negative"):
        resumed.seek(-1)


def test_batch_stream_too_short_says_what_is_needed():
    with pytest.raises(ValueError, match="need at least 44 characters .11 per stream., got 40"):
        BatchStream(np.arange(40), batch_size=4, seq_len=10)
    BatchStream(np.arange(44), batch_size=4, seq_len=10)  # exactly enough: one chunk
    with pytest.raises(ValueError, match="got 0"):
        BatchStream(np.array([], dtype=np.int64), batch_size=1, seq_len=1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        BatchStream(np.arange(100), batch_size=0, seq_len=5)
    with pytest.raises(ValueError, match="1-D integer"):
        BatchStream(np.zeros(100), batch_size=2, seq_len=5)
