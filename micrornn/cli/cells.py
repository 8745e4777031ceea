"""The --cell option shared by train, eval, sample and gradcheck: a built-in kind or 'package.module:Class'."""
from __future__ import annotations

import argparse

from micrornn.cli import UsageError
from micrornn.nn.cells import CELLS, import_cell, is_import_name

CELL_HELP = f"one of {', '.join(CELLS)}, or your own cell class as package.module:Class (importable from here)"


def cell_argument(text: str) -> str:
    """argparse type: a built-in kind or an import name (checked for form here, imported later)."""
    if text in CELLS or is_import_name(text):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(CELLS)}, or a cell class "
                                     "as package.module:Class)")


def resolve_cell(name):
    """The class/factory for a user cell's import name (UsageError when it cannot be imported);
    None for a built-in kind or no --cell."""
    if name is None or name in CELLS:
        return None
    try:
        return import_cell(name)
    except ValueError as e:
        raise UsageError(f"--cell: {e}") from None
