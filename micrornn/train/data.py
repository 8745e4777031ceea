"""Text corpora, a character vocabulary, and batching for truncated BPTT.

The bundled corpus (micrornn/train/corpus/tinyshakespeare.txt.gz, see SOURCE.md beside it) is the
full public-domain Tiny Shakespeare text (1,115,394 characters), so examples and the CLI train on
the standard benchmark without any download; `train_val_split` cuts it as nanoGPT does.
"""
import gzip
import hashlib
import os
import stat
import zlib
from pathlib import Path

import numpy as np

__all__ = ["Vocab", "load_text", "bundled_corpus_path", "load_bundled_corpus",
           "check_text_path", "MAX_TEXT_BYTES", "train_val_split", "split_point", "BatchStream", "BUNDLED_CORPUS_SHA256", "BUNDLED_CORPUS_CHARS"]

BUNDLED_CORPUS_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"  # of the text
BUNDLED_CORPUS_CHARS = 1_115_394


class Vocab:
    """A character vocabulary: id i is the i-th character of the sorted set of characters."""

    def __init__(self, text):
        """Build the vocabulary of the distinct characters of `text` (any iterable of chars)."""
        self._set_chars(_distinct_chars(text) if isinstance(text, str) else sorted(set(text)))

    @classmethod
    def from_list(cls, chars):
        """Rebuild a vocabulary from `to_list()` output, keeping its exact order of ids."""
        chars = list(chars)
        for i, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"Vocab.from_list: entry {i} must be a single character, "
                                 f"got {c!r}")
        if len(set(chars)) != len(chars):
            dup = next(c for i, c in enumerate(chars) if c in chars[:i])
            raise ValueError(f"Vocab.from_list: character {dup!r} appears more than once")
        vocab = cls.__new__(cls)
        vocab._set_chars(chars)
        return vocab

    def _set_chars(self, chars):
        if not chars:
            raise ValueError("Vocab: cannot build a vocabulary from empty text")
        self._chars = list(chars)
        self._index = {c: i for i, c in enumerate(self._chars)}
        codes = np.array([ord(c) for c in self._chars], dtype=np.int64)
        self._table = np.full(int(codes.max()) + 1, -1, dtype=np.int64)  # code point -> id
        self._table[codes] = np.arange(len(codes), dtype=np.int64)

    def to_list(self):
        """The characters in id order, as a JSON-friendly list of strings."""
        return list(self._chars)

    def __len__(self):
        return len(self._chars)

    def __contains__(self, char):
        return char in self._index

    def __eq__(self, other):
        return isinstance(other, Vocab) and self._chars == other._chars

    def __repr__(self):
        return f"Vocab({len(self)} characters)"

    def encode(self, text, dtype=np.int64):
        """Map a string to an array of ids (int64 unless told); unknown characters raise ValueError.

        The text is read in blocks, so the temporaries stay small next to a long text.
        """
        if not isinstance(text, str):
            raise TypeError(f"Vocab.encode expects a str, got {type(text).__name__}")
        ids = np.empty(len(text), dtype=dtype)
        for start in range(0, len(text), ENCODE_BLOCK):
            codes = _code_points(text[start:start + ENCODE_BLOCK])
            block = self._table[np.minimum(codes, len(self._table) - 1)]
            block[codes >= len(self._table)] = -1
            bad = np.flatnonzero(block < 0)
            if bad.size:
                pos = start + int(bad[0])
                raise ValueError(f"Vocab.encode: character {text[pos]!r} (U+{ord(text[pos]):04X}) at "
                                 f"position {pos} is not in the vocabulary of {len(self)} characters")
            ids[start:start + len(codes)] = block
        return ids

    def decode(self, ids):
        """Map a sequence of ids back to a string; out-of-range ids raise ValueError."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"Vocab.decode expects integer ids, got dtype {ids.dtype}")
        bad = np.flatnonzero((ids < 0) | (ids >= len(self)))
        if bad.size:
            raise ValueError(f"Vocab.decode: id {int(ids[bad[0]])} at position {int(bad[0])} is "
                             f"out of range for a vocabulary of {len(self)} characters")
        return "".join(self._chars[i] for i in ids.tolist())


ENCODE_BLOCK = 1 << 18  # characters converted at a time (a few MB of temporaries)


def _code_points(text) -> np.ndarray:
    """The code points of a str as uint32."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _distinct_chars(text) -> list:
    """sorted(set(text)), counted block by block with NumPy (fast on long texts)."""
    seen: set[int] = set()
    for start in range(0, len(text), ENCODE_BLOCK):
        codes = _code_points(text[start:start + ENCODE_BLOCK])
        present = np.flatnonzero(np.bincount(codes)) if codes.max() < 0x10000 else np.unique(codes)
        seen.update(present.tolist())
    return [chr(c) for c in sorted(seen)]


def compact_dtype(vocab_size):
    """The smallest integer dtype that holds ids below vocab_size (uint8, uint16 or int32)."""
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int32


def text_sha256(text) -> str:
    """sha256 of the text's UTF-8 bytes, encoded block by block (no copy of the whole text)."""
    digest = hashlib.sha256()
    for start in range(0, len(text), ENCODE_BLOCK):
        digest.update(text[start:start + ENCODE_BLOCK].encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


MAX_TEXT_BYTES = 256 << 20  # the largest text read (after gunzip): 256 MiB, over 200 times tinyshakespeare


def check_text_path(path) -> Path:
    """The path of a text file to read, refused in one line if it is missing, a directory, or not a
    regular file (a device such as /dev/zero, a FIFO, a socket: each would never end or block)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"a text path must be a string, got {type(path).__name__} {path!r:.80}")
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"text file not found: {path}") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path} is a directory, expected a UTF-8 text file")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file (a device, FIFO or socket); expected a UTF-8 text file")
    return path


def _read_capped(path, max_bytes) -> bytes:
    """At most max_bytes bytes of a regular file (gunzipped if its name ends in .gz), else ValueError.

    An oversized file is refused before it is read: a plain file by its size, a .gz by a first pass
    that counts its decompressed bytes one megabyte at a time (a gzip bomb costs time, not memory).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO swapped in never blocks the open
    gz = path.suffix == ".gz"
    what = "decompresses to" if gz else "holds"
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file (a device, FIFO or socket); expected a UTF-8 text file")
        try:
            if gz:
                with gzip.GzipFile(fileobj=f) as stream:
                    total = 0
                    while total <= max_bytes and (chunk := stream.read(min(1 << 20, max_bytes + 1))):
                        total += len(chunk)
                f.seek(0)
            else:
                total = info.st_size
            raw = b"" if total > max_bytes else (gzip.GzipFile(fileobj=f) if gz else f).read(max_bytes + 1)
        except (OSError, EOFError, zlib.error) as e:
            if not gz:
                raise
            raise ValueError(f"{path} is not a readable gzip file ({e})") from None
    if total > max_bytes or len(raw) > max_bytes:
        raise ValueError(f"{path} {what} more than {max_bytes:,} bytes, the most micrornn reads as text")
    return raw


def load_text(path, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Read a UTF-8 text file (gzip-compressed if its name ends in .gz) of at most `max_bytes` bytes
    (after decompression); a missing, empty, binary, oversized or non-regular file raises an error naming it."""
    path = check_text_path(path)
    raw = _read_capped(path, max_bytes)
    if not raw:
        raise ValueError(f"{path} is empty, expected UTF-8 text")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"{path} looks like a binary file (NUL byte at offset {nul}), "
                         f"expected UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (invalid byte 0x{raw[e.start]:02x} at offset "
                         f"{e.start})") from None
    return text.removeprefix("\ufeff")  # drop a byte-order mark, if any


def bundled_corpus_path():
    """Path of the corpus shipped with micrornn (micrornn/train/corpus/tinyshakespeare.txt.gz)."""
    return Path(__file__).resolve().parent / "corpus" / "tinyshakespeare.txt.gz"


def load_bundled_corpus():
    """The text of the bundled corpus."""
    return load_text(bundled_corpus_path())


def split_point(n, val_fraction=0.1):
    """Where the validation part of n items starts: int(n * (1 - val_fraction)), nanoGPT's rule."""
    return int(n * (1.0 - val_fraction))


def train_val_split(ids, val_fraction=0.1):
    """Split ids into a leading training part and a trailing validation part (no shuffling).

    The cut is nanoGPT's (shakespeare_char): train = ids[:int(n * 0.9)], validation = the rest;
    for the bundled corpus 1,003,854 and 111,540 characters.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"train_val_split: ids must be 1-D, got shape {ids.shape}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"train_val_split: val_fraction must be in [0, 1), got {val_fraction!r}")
    cut = split_point(len(ids), val_fraction)
    if (val_fraction > 0 and len(ids) - cut < 2) or cut < 2:
        raise ValueError(f"train_val_split: {len(ids)} ids are too few to split with "
                         f"val_fraction={val_fraction} (each part needs at least 2)")
    return ids[:cut], ids[cut:]


class BatchStream:
    """Endless (inputs, targets) chunks of shape (seq_len, batch_size) for truncated BPTT.

    The ids are cut into `batch_size` contiguous streams (stream b is the b-th equal slice of the
    corpus). Chunk k holds positions [k*seq_len, (k+1)*seq_len) of every stream, so column b of
    chunk k+1 continues column b of chunk k and a hidden state can be carried across chunks.
    Targets are the inputs shifted by one character. After `steps_per_epoch` chunks the stream
    starts again from chunk 0 (`epoch` increases); `seek(k)` jumps to global chunk k.
    """

    def __init__(self, ids, batch_size, seq_len):
        ids = np.asarray(ids)
        if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"BatchStream: ids must be a 1-D integer array, got shape {ids.shape} "
                             f"dtype {ids.dtype}")
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"BatchStream: {name} must be a positive integer, got {value!r}")
        needed = batch_size * (seq_len + 1)
        if len(ids) < needed:
            raise ValueError(f"BatchStream: corpus too short for batch_size={batch_size}, "
                             f"seq_len={seq_len}: need at least {needed} characters "
                             f"({seq_len + 1} per stream), got {len(ids)}")
        self.batch_size, self.seq_len = int(batch_size), int(seq_len)
        stream_len = len(ids) // batch_size
        self.streams = ids[:batch_size * stream_len].reshape(batch_size, stream_len)  # a view, any int dtype
        self.steps_per_epoch = (stream_len - 1) // seq_len
        self.position = 0  # global index of the next chunk (counts across epochs)

    @property
    def epoch(self):
        """How many full passes over the streams have been completed."""
        return self.position // self.steps_per_epoch

    @property
    def chunk_index(self):
        """Index within the current epoch of the next chunk (0 means a fresh start)."""
        return self.position % self.steps_per_epoch

    def seek(self, k):
        """Position the stream so the next chunk returned is global chunk k."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
            raise ValueError(f"BatchStream.seek: k must be a non-negative integer, got {k!r}")
        self.position = int(k)

    def chunk(self, k):
        """Global chunk k as (inputs, targets), each int64 of shape (seq_len, batch_size)."""
        start = (k % self.steps_per_epoch) * self.seq_len
        window = self.streams[:, start:start + self.seq_len + 1]
        return window[:, :-1].T.astype(np.int64), window[:, 1:].T.astype(np.int64)  # C-ordered copies

    def __iter__(self):
        return self

    def __next__(self):
        batch = self.chunk(self.position)
        self.position += 1
        return batch

    def __repr__(self):
        return (f"BatchStream(batch_size={self.batch_size}, seq_len={self.seq_len}, "
                f"steps_per_epoch={self.steps_per_epoch}, position={self.position})")
