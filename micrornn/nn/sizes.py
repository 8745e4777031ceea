"""Sizes that cannot fit in memory, refused in one line before NumPy is asked for the array."""
from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["physical_memory", "check_model_memory", "check_array_memory"]



def physical_memory() -> int:
    """Bytes of RAM on this machine (1 TiB when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _gigabytes(n) -> str:
    return f"{n / 1e9:,.1f} GB"


def check_array_memory(shape, dtype, what="a parameter") -> None:
    """ValueError when an array of `shape` and `dtype` is larger than this machine's memory."""
    need = math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize
    if need > physical_memory():
        raise ValueError(f"{what} of shape {tuple(shape)} ({np.dtype(dtype).name}) would need {_gigabytes(need)}, "
                         f"more than this machine's {_gigabytes(physical_memory())} of memory")


def check_model_memory(owner: str, sizes: dict, dtype=np.float64, blocks=1, directions=1) -> None:
    """ValueError naming the largest size when a recurrent model of these sizes (input_size,
    hidden_size, output_size, num_layers; checked as positive integers elsewhere) cannot fit in memory.

    Counts the weights only (a lower bound): U (G*H, I), W (G*H, H) per layer and direction, head (O, D*H),
    with G = ``blocks``, the cell's row blocks (its registry entry's ``blocks``; a user's cell counts as 1).
    """
    values = {k: v for k, v in sizes.items() if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0}
    if len(values) != len(sizes):
        return  # a bad size: the constructor's own check names it
    I, H = int(values.get("input_size", 1)), int(values.get("hidden_size", 1))
    O, L = int(values.get("output_size", 0)), int(values.get("num_layers", 1))
    G = int(blocks)
    count = directions * G * H * (I + H + (L - 1) * (directions * H + H)) + O * directions * H
    need = count * np.dtype(dtype).itemsize
    if need > physical_memory():
        blame = max(values, key=lambda k: values[k])
        raise ValueError(f"{owner}: {blame}={values[blame]:,} makes {count:,} weights ({_gigabytes(need)}), more "
                         f"than this machine's {_gigabytes(physical_memory())} of memory")
