"""Checkpoints: parameters, JSON metadata and optimizer state in one .npz file, saved atomically.

Layout of the .npz (no pickled objects anywhere, loaded with allow_pickle=False):
  "__header__"          uint8 array holding UTF-8 JSON: format marker, version, parameter names,
                        the user's metadata, and the optimizer state with each ndarray replaced
                        by {"__ndarray__": key}
  "param/<name>"        one array per parameter, e.g. "param/rnn.cells.0.U"
  "optim/<path>"        the optimizer's arrays, e.g. "optim/state/0/exp_avg"
"""
import glob
import json
import math
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "FORMAT", "VERSION"]

FORMAT = "micrornn-checkpoint"
VERSION = 1
HEADER_KEY = "__header__"
ARRAY_MARK = "__ndarray__"
TUPLE_MARK = "__tuple__"
MAX_HEADER_BYTES = 256 << 20   # the JSON header (metadata, history, optimizer layout)
MAX_NESTING = 200              # levels of [ and { in the header


class CheckpointError(ValueError):
    """A file could not be read as a micrornn checkpoint (truncated, corrupted or foreign)."""


def _plain_array(value, where):
    """Return `value` as an ndarray that can be stored without pickle."""
    arr = np.asarray(value)
    if arr.dtype.hasobject:
        raise TypeError(f"save_checkpoint: {where} has dtype object, which cannot be stored "
                        f"without pickle; expected a numeric array")
    return arr


def _flatten(obj, key, arrays):
    """Replace ndarrays in a nested dict/list/tuple structure by references stored in `arrays`."""
    if isinstance(obj, np.ndarray):
        arrays[key] = _plain_array(obj, key)
        return {ARRAY_MARK: key}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"save_checkpoint: dict keys must be strings, got "
                                f"{type(k).__name__} key {k!r} in {key}")
            out[k] = _flatten(v, f"{key}/{k}", arrays)
        return out
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)]
        return {TUPLE_MARK: items} if isinstance(obj, tuple) else items
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"save_checkpoint: cannot store {type(obj).__name__} at {key}; expected "
                    f"ndarray, dict, list, tuple, number, str, bool or None")


def _unflatten(obj, arrays, path):
    """Inverse of _flatten: put the stored arrays back into the structure."""
    if isinstance(obj, dict):
        if set(obj) == {ARRAY_MARK}:
            key = obj[ARRAY_MARK]
            if key not in arrays:
                raise CheckpointError(f"{path}: optimizer array {key!r} is missing")
            return arrays[key]
        if set(obj) == {TUPLE_MARK}:
            if not isinstance(obj[TUPLE_MARK], list):
                raise CheckpointError(f"{path}: a stored tuple must hold a list, got {obj[TUPLE_MARK]!r:.80}")
            return tuple(_unflatten(v, arrays, path) for v in obj[TUPLE_MARK])
        return {k: _unflatten(v, arrays, path) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays, path) for v in obj]
    return obj


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _fsync_directory(directory):
    """Make a rename in `directory` durable (best effort where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _target(path: Path) -> Path:
    """The file a save replaces: a symlink's target (the link stays a link); OSError for anything
    that exists but is not a regular file (a device, a FIFO: never replaced by a checkpoint)."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_dir() and not path.is_file():
        raise OSError(f"cannot save checkpoint {path}: it exists and is not a regular file")
    return path


def _temporary_prefix(path: Path) -> str:
    """Temporary files of a save to `path` are named <prefix><pid>.<random>.tmp."""
    return f".{path.name}."


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries left by earlier saves to `path` whose process is gone (killed mid-save)."""
    prefix = _temporary_prefix(path)
    for leftover in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = leftover.name[len(prefix):].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            try:
                leftover.unlink()
            except OSError:
                pass


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a reused id counts as alive: the file is kept)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def save_checkpoint(path, params, meta=None, optimizer_state=None):
    """Atomically write params (name -> ndarray), JSON metadata and optimizer state to `path`.

    The file is written to a temporary file in the same directory, fsynced, then renamed over
    `path`, so a crash or exception mid-save leaves any previous checkpoint at `path` intact.
    """
    path = _target(Path(path))
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot save checkpoint {path}: directory {directory} "
                                f"does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot save checkpoint {path}: directory {directory} "
                              f"is not writable")
    if path.is_dir():
        raise IsADirectoryError(f"cannot save checkpoint {path}: it is a directory")

    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"save_checkpoint: meta must be a dict or None, got {type(meta).__name__}")
    if not isinstance(params, dict):
        raise TypeError(f"save_checkpoint: params must be a dict of name -> ndarray, "
                        f"got {type(params).__name__}")
    arrays = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"save_checkpoint: parameter names must be non-empty strings, "
                            f"got {name!r}")
        arrays[f"param/{name}"] = _plain_array(value, f"parameter {name!r}")
    optim = None if optimizer_state is None else _flatten(optimizer_state, "optim", arrays)
    header = {"format": FORMAT, "version": VERSION, "params": list(params),
              "meta": {} if meta is None else meta, "optimizer": optim}
    try:
        text = json.dumps(header, default=_json_default)
    except (TypeError, ValueError) as e:
        raise TypeError(f"save_checkpoint: meta must be JSON-serialisable: {e}") from None
    arrays[HEADER_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temporary_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _read_member(archive, key, path, max_bytes=None) -> np.ndarray:
    """The array stored as `key`, its declared dtype, shape and size checked before any is read.

    save_checkpoint stores members uncompressed, so a member's size is bounded by the file's; a
    compressed or encrypted member, a shape that does not match the member's size, or a dtype
    that is not plain numbers is refused without allocating it.
    """
    try:
        info = archive.getinfo(key + ".npy")
    except KeyError:
        raise CheckpointError(f"{path}: the header lists {key!r} but the file has no such array") from None
    if info.flag_bits & 0x1 or info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f"{path}: array {key!r} is compressed or encrypted; micrornn checkpoints "
                              f"store arrays uncompressed")
    if max_bytes is not None and info.file_size > max_bytes:
        raise CheckpointError(f"{path}: array {key!r} holds {info.file_size:,} bytes, more than the "
                              f"{max_bytes:,} allowed for it")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise CheckpointError(f"{path}: array {key!r} has unsupported .npy version {version}")
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
            raise CheckpointError(f"{path}: array {key!r} has dtype {dtype}; expected plain numbers")
        count = math.prod(shape)
        if count * dtype.itemsize + f.tell() != info.file_size:
            raise CheckpointError(f"{path}: array {key!r} declares shape {shape} ({count * dtype.itemsize:,} "
                                  f"bytes) but holds {info.file_size - f.tell():,} bytes")
        array = np.empty(count, dtype=dtype)
        buffer, filled = memoryview(array.view(np.uint8)), 0  # type: ignore[arg-type]
        while filled < len(buffer):
            n = f.readinto(buffer[filled:])
            if not n:
                raise CheckpointError(f"{path}: array {key!r} is truncated")
            filled += n
    return array.reshape(shape, order="F" if fortran else "C")


def _array_keys(obj, path, found, depth=0) -> list:
    """The array keys an optimizer structure refers to ({"__ndarray__": key}), each checked a string."""
    if depth > MAX_NESTING:
        raise CheckpointError(f"{path}: optimizer state is nested more than {MAX_NESTING} levels deep")
    if isinstance(obj, dict):
        if ARRAY_MARK in obj:
            key = obj[ARRAY_MARK]
            if set(obj) != {ARRAY_MARK} or not isinstance(key, str) or not key.startswith("optim/"):
                raise CheckpointError(f"{path}: bad optimizer array reference {obj!r:.80}")
            found.append(key)
            return found
        for value in obj.values():
            _array_keys(value, path, found, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            _array_keys(value, path, found, depth + 1)
    return found


def _read_header(archive, path):
    """The JSON header, checked for size, nesting, format marker and version before use."""
    raw = _read_member(archive, HEADER_KEY, path, max_bytes=MAX_HEADER_BYTES)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: header entry has dtype {raw.dtype} shape {raw.shape}, "
                              f"expected 1-D uint8")
    try:
        text = raw.tobytes().decode("utf-8")
        if _nesting(text) > MAX_NESTING:
            raise CheckpointError(f"{path}: header JSON is nested more than {MAX_NESTING} levels deep")
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: header is not valid UTF-8 JSON ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: header format marker is not {FORMAT!r}; "
                              f"not a micrornn checkpoint")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version!r} is not supported "
                              f"(this micrornn reads versions up to {VERSION})")
    params = header.get("params")
    if not isinstance(params, list) or not all(isinstance(n, str) and n for n in params) \
            or not isinstance(header.get("meta"), dict):
        raise CheckpointError(f"{path}: header lacks its 'params' list of names or its 'meta' dict")
    return header


def _nesting(text) -> int:
    """The deepest nesting of [ and { in JSON text (brackets inside strings counted too: an upper bound)."""
    opens = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    step = np.isin(opens, (ord("["), ord("{"))).astype(np.int64) - np.isin(opens, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


LOCAL_HEADER_BYTES = 30  # a zip member's fixed local header, before its name and extra field


def _check_member_ranges(archive, path, size) -> None:
    """Refuse a zip whose members overlap one another or the central directory, or whose members
    together declare more bytes than the file holds: each byte of the file is then read at most
    once, so reading a checkpoint costs at most its size in time and memory."""
    spans = sorted((info.header_offset, info.header_offset + LOCAL_HEADER_BYTES + len(info.filename.encode("utf-8"))
                    + info.compress_size, info.filename) for info in archive.infolist())
    for (_, end, name), (start, _, after) in zip(spans, spans[1:]):
        if start < end:
            raise CheckpointError(f"{path}: zip members {name!r} and {after!r} overlap; refusing a file "
                                  f"whose members share bytes")
    if spans and spans[-1][1] > archive.start_dir:
        raise CheckpointError(f"{path}: zip member {spans[-1][2]!r} overlaps the central directory")
    declared = sum(info.file_size for info in archive.infolist())
    if declared > size:
        raise CheckpointError(f"{path}: its members declare {declared:,} bytes, more than the file's {size:,}")


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint -> (params, meta, optimizer_state or None).

    Never unpickles anything and reads only the arrays the header lists, each checked against its
    declared shape and the member's size first, and only from a zip whose members neither overlap
    nor declare more bytes than the file holds, so any truncated, corrupted, foreign or hostile
    file raises CheckpointError in time and memory bounded by the file's size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic:
        raise CheckpointError(f"{path} is empty, not a micrornn checkpoint")
    if magic == b"\x93NUMPY":
        raise CheckpointError(f"{path} holds a single .npy array, not a checkpoint")
    if not magic.startswith(b"PK"):
        raise CheckpointError(f"{path} is not a micrornn checkpoint: expected an .npz (zip) file, "
                              f"but it starts with {magic!r}")
    try:
        with zipfile.ZipFile(path) as archive:
            if HEADER_KEY + ".npy" not in archive.NameToInfo:
                raise CheckpointError(f"{path} is an .npz file but not a micrornn checkpoint "
                                      f"(no {HEADER_KEY!r} entry)")
            _check_member_ranges(archive, path, path.stat().st_size)
            header = _read_header(archive, path)
            optimizer_state = header.get("optimizer")
            keys = [f"param/{name}" for name in header["params"]] + _array_keys(optimizer_state, path, [])
            arrays = {key: _read_member(archive, key, path) for key in dict.fromkeys(keys)}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, NotImplementedError,
            RuntimeError, SyntaxError, MemoryError, OverflowError) as e:  # RuntimeError: "encrypted"
        raise CheckpointError(f"{path} is not a readable micrornn checkpoint "
                              f"(truncated, corrupted or another format): "
                              f"{type(e).__name__}: {e}") from None
    params = {name: arrays[f"param/{name}"] for name in header["params"]}
    if optimizer_state is not None:
        optimizer_state = _unflatten(optimizer_state, arrays, path)
    return params, header["meta"], optimizer_state
