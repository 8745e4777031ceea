"""Writing pictures: DOT text always; svg, png and pdf through the Graphviz `dot` program."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
import tempfile
from pathlib import Path

import graphviz

FORMATS = ("svg", "png", "pdf", "dot")


class GraphvizNotFoundError(RuntimeError):
    """The Graphviz `dot` program is not installed (the DOT text was still written)."""


def output_format(path) -> str:
    """The format named by path's extension, or a ValueError listing the supported ones."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"cannot write {str(path)!r}: unknown extension; use one of "
                         + ", ".join("." + f for f in FORMATS))
    return fmt


def write_atomically(path, data: bytes) -> Path:
    """Write `data` to path through a temporary file beside it, fsynced, then renamed over path: a
    failure (a full disk, a kill) leaves any previous file at path whole and no temporary behind."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "it is a directory", str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; a picture gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def render(graph: graphviz.Digraph, path, keep_dot: bool = False) -> Path:
    """Write graph to path (.svg, .png, .pdf or .dot) atomically; returns the Path.

    The DOT text is written next to the picture (same name, .dot) when `dot` is missing
    (GraphvizNotFoundError) or fails, or when keep_dot is true.
    """
    path = Path(path)
    fmt = output_format(path)
    dot_path = path.with_suffix(".dot")
    source = graph.source.encode("utf-8")
    if fmt == "dot":
        return write_atomically(path, source)
    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        write_atomically(dot_path, source)
        raise GraphvizNotFoundError(
            f"cannot make {path}: the Graphviz program 'dot' is not installed; install the system package "
            f"(apt-get install graphviz, brew install graphviz or conda install graphviz). "
            f"The DOT text was written to {dot_path}") from None
    except subprocess.CalledProcessError as err:
        write_atomically(dot_path, source)
        stderr = (err.stderr or b"").decode(errors="replace").strip()
        raise RuntimeError(f"dot failed to make {path}: {stderr} (DOT text kept in {dot_path})") from None
    write_atomically(path, data)
    if keep_dot:
        write_atomically(dot_path, source)
    return path


def graph_size(graph) -> tuple[int, int]:
    """(nodes, edges) of a Digraph (or its DOT source), counting statement lines."""
    source = graph if isinstance(graph, str) else graph.source
    nodes = edges = 0
    for line in source.splitlines():
        line = line.strip()
        if "->" in line:
            edges += 1
        elif re.match(r'^("[^"]*"|[\w.]+) \[', line) and not re.match(r"^(graph|node|edge) \[", line):
            nodes += 1
    return nodes, edges
