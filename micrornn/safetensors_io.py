"""safetensors files of plain arrays: the ecosystem's standard weight file, written atomically and read
back with its metadata. Needs the optional extra (``pip install "micrornn[safetensors]"``); NumPy only,
never torch. ``micrornn.interop.save_safetensors`` / ``load_safetensors`` put a module's weights in
PyTorch's key layout through these."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["write_safetensors", "read_safetensors"]


def _library():
    """The safetensors package, or ImportError naming the extra."""
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError('safetensors files need the safetensors package, an optional extra: '
                          'pip install "micrornn[safetensors]"') from None
    return safetensors


def write_safetensors(path, arrays: dict, metadata: dict | None = None) -> Path:
    """Write {name: ndarray} to ``path`` (a temporary file renamed into place: never half a file);
    ``metadata`` is a dict of strings stored in the header."""
    library = _library()
    path = Path(path)
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"safetensors metadata must map strings to strings, got {key!r}: {type(value).__name__}")
    plain = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        library.numpy.save_file(plain, str(tmp), metadata=metadata)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_safetensors(path) -> tuple[dict, dict]:
    """({name: ndarray}, metadata) from a safetensors file; ValueError when it is not one."""
    library = _library()
    try:
        with library.safe_open(str(path), framework="np") as f:
            names = f.keys()  # a safe_open handle, not a dict
            return {k: f.get_tensor(k) for k in names}, dict(f.metadata() or {})
    except FileNotFoundError:
        raise
    except Exception as e:  # the library raises its own SafetensorError for a damaged or foreign file
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from None
