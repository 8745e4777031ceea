"""Sizes that cannot fit: an estimate of the memory a model and its run need, checked against the
machine's memory before anything is allocated, and a one-line refusal naming the option."""
from __future__ import annotations

import os

from micrornn.nn.cells import CELLS

__all__ = ["physical_memory", "rnn_run_bytes", "check_fits", "TooBig"]


class TooBig(ValueError):
    """The sizes asked for need more memory than this machine has."""


def physical_memory() -> int:
    """Bytes of RAM on this machine (1 TiB when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def rnn_run_bytes(input_size, hidden_size, output_size, num_layers, steps, batch, itemsize=8, cell="rnn",
                  extra=0) -> int:
    """A lower bound on the bytes a stacked RNN training step holds: parameters with their gradient
    and two optimizer buffers, per-step states of every layer (gates included), and the logits.
    A cell kind outside the registry (a user's cell) is counted like the vanilla cell."""
    layout = CELLS.get(cell, CELLS["rnn"])
    g, H = len(layout.blocks), hidden_size
    params = _count(layout.parameter_shapes(input_size, H)) + (num_layers - 1) * _count(layout.parameter_shapes(H, H))
    params += output_size * (H + 1)  # (no loop over layers: num_layers may be absurd, that is what is checked)
    activations = steps * batch * (num_layers * g * H * 2 + output_size * 3)
    return (4 * params + activations) * itemsize + extra


def _count(shapes: dict) -> int:
    """The number of entries of every shape in {name: shape}."""
    total = 0
    for shape in shapes.values():
        entries = 1
        for n in shape:
            entries *= n
        total += entries
    return total


def _human(n) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000


def check_fits(estimate, sizes: dict, defaults: dict, what="this run") -> None:
    """Raise TooBig naming the option to blame when estimate(**sizes) exceeds the machine's memory.

    The option blamed is the one whose default value shrinks the estimate the most.
    """
    need, have = estimate(**sizes), physical_memory()
    if need <= have:
        return
    blame = max(defaults, key=lambda name: need - estimate(**{**sizes, name: defaults[name]}))
    raise TooBig(f"{blame} {sizes[blame]}: {what} would need about {need:.2g} bytes ({_human(need)}), more than "
                 f"this machine's {_human(have)} of memory")
