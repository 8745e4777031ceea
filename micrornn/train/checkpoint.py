"""Checkpoints: parameters, JSON metadata and optimizer state in one .npz file, saved atomically.

Layout of the .npz (no pickled objects anywhere, loaded with allow_pickle=False):
  "__header__"          uint8 array holding UTF-8 JSON: format marker, version, parameter names,
                        the user's metadata, and the optimizer state with each ndarray replaced
                        by {"__ndarray__": key}
  "param/<name>"        one array per parameter, e.g. "param/rnn.cells.0.U"
  "optim/<path>"        the optimizer's arrays, e.g. "optim/state/0/exp_avg"
"""
import json
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


def save_checkpoint(path, params, meta=None, optimizer_state=None):
    """Atomically write params (name -> ndarray), JSON metadata and optimizer state to `path`.

    The file is written to a temporary file in the same directory, fsynced, then renamed over
    `path`, so a crash or exception mid-save leaves any previous checkpoint at `path` intact.
    """
    path = Path(path)
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

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
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


def _read_header(npz, path):
    if HEADER_KEY not in npz.files:
        raise CheckpointError(f"{path} is an .npz file but not a micrornn checkpoint "
                              f"(no {HEADER_KEY!r} entry)")
    raw = npz[HEADER_KEY]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: header entry has dtype {raw.dtype} shape {raw.shape}, "
                              f"expected 1-D uint8")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: header format marker is not {FORMAT!r}; "
                              f"not a micrornn checkpoint")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version!r} is not supported "
                              f"(this micrornn reads versions up to {VERSION})")
    if not isinstance(header.get("params"), list) or not isinstance(header.get("meta"), dict):
        raise CheckpointError(f"{path}: header lacks its 'params' list or 'meta' dict")
    return header


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint -> (params, meta, optimizer_state or None).

    Never unpickles anything; a truncated, corrupted or foreign file raises CheckpointError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic:
        raise CheckpointError(f"{path} is empty, not a micrornn checkpoint")
    if not magic.startswith(b"PK") and magic != b"\x93NUMPY":
        raise CheckpointError(f"{path} is not a micrornn checkpoint: expected an .npz (zip) file, "
                              f"but it starts with {magic!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path} holds a single .npy array, not a checkpoint")
        with loaded as npz:
            header = _read_header(npz, path)
            arrays = {key: npz[key] for key in npz.files if key != HEADER_KEY}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        raise CheckpointError(f"{path} is not a readable micrornn checkpoint "
                              f"(truncated, corrupted or another format): "
                              f"{type(e).__name__}: {e}") from None

    params = {}
    for name in header["params"]:
        key = f"param/{name}"
        if key not in arrays:
            raise CheckpointError(f"{path}: parameter {name!r} is listed but its array is missing")
        params[name] = arrays[key]
    optimizer_state = header.get("optimizer")
    if optimizer_state is not None:
        optimizer_state = _unflatten(optimizer_state, arrays, path)
    return params, header["meta"], optimizer_state
