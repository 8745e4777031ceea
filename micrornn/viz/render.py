"""Writing pictures: DOT text always; svg, png and pdf through the Graphviz `dot` program."""
from __future__ import annotations

import re
import subprocess
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


def render(graph: graphviz.Digraph, path, keep_dot: bool = False) -> Path:
    """Write graph to path (.svg, .png, .pdf or .dot); returns the Path.

    The DOT text is written first, next to the picture (same name, .dot). It is kept when `dot`
    is missing (GraphvizNotFoundError) or fails, or when keep_dot is true.
    """
    path = Path(path)
    fmt = output_format(path)
    dot_path = path.with_suffix(".dot")
    dot_path.write_text(graph.source, encoding="utf-8")
    if fmt == "dot":
        return path
    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFoundError(
            f"cannot make {path}: the Graphviz program 'dot' is not installed; install the system package "
            f"(apt-get install graphviz, brew install graphviz or conda install graphviz). "
            f"The DOT text was written to {dot_path}") from None
    except subprocess.CalledProcessError as err:
        stderr = (err.stderr or b"").decode(errors="replace").strip()
        raise RuntimeError(f"dot failed to make {path}: {stderr} (DOT text kept in {dot_path})") from None
    path.write_bytes(data)
    if not keep_dot:
        dot_path.unlink()
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
