"""Initialisations that act on a trained model's cells: the memory-gate bias (init_gate_bias)."""
from __future__ import annotations

import math

import numpy as np

from micrornn.nn.cells import CELLS
from micrornn.nn.module import Module

__all__ = ["MEMORY_GATES", "init_gate_bias"]

# The gate whose bias decides how much of the old state a step keeps, per built-in kind (PyTorch's equations):
# LSTM c' = f * c + i * g (f near 1 keeps c); GRU h' = (1 - z) * n + z * h (z near 1 keeps h).
MEMORY_GATES = {"lstm": "f", "gru": "z"}


def _cells(module) -> list:
    """The recurrent cells the layers in `module` list (in PyTorch's order), else the module itself if it is a cell."""
    found: list = []
    for m in module.modules():
        for cell in list(getattr(m, "cells", None) or []) + list(getattr(m, "reverse_cells", None) or []):
            if all(cell is not f for f in found):
                found.append(cell)
    return found or ([module] if hasattr(module, "hidden_size") else [])


def init_gate_bias(module: Module, value: float) -> int:
    """Set the LSTM forget-gate (f) / GRU update-gate (z) bias block of every cell in `module` to `value`.

    A positive value makes the cells keep their state at the start of training. The block is found from
    the cell registry (``CELLS[kind].blocks``). Returns the number of cells changed; ValueError for a
    vanilla RNN or user cell (which have no such gate) when value != 0, or a cell without bias.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"gate bias must be a finite number, got {value!r}")
    cells = _cells(module)
    if not cells:
        raise ValueError(f"init_gate_bias: {type(module).__name__} holds no recurrent cells")
    if value == 0.0:
        targets = [c for c in cells if CELLS.get(getattr(c, "kind", None)) is type(c) and c.kind in MEMORY_GATES]
    else:
        targets = cells
    for cell in targets:
        kind = getattr(cell, "kind", None)
        if CELLS.get(kind) is not type(cell) or kind not in MEMORY_GATES:
            what = "the vanilla rnn cell" if kind == "rnn" else f"the user cell {type(cell).__name__}"
            raise ValueError(f"gate bias {value} needs an lstm or gru cell: {what} has no forget/update gate")
        if cell.b is None:
            raise ValueError(f"gate bias: the {kind} cell has no bias (bias=False)")
        H, block = cell.hidden_size, type(cell).blocks.index(MEMORY_GATES[kind])
        cell.b.data[block * H:(block + 1) * H] = np.asarray(value, dtype=cell.b.dtype)
    return len(targets)
