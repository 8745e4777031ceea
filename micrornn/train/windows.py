"""nanoGPT's validation estimate: the mean loss over random fixed-length windows, each from a zero state.

Where `evaluate` reads the validation split as one stream with the state carried, `windowed_loss` draws
`count` random windows of `window` characters (seeded), runs each from a zero state and averages the
cross-entropy over every position of every window: position j of a window predicts its character j + 1
from the j + 1 before it, never from anything earlier. This is how nanoGPT's `estimate_loss` scores a
block of 256 characters, so the figure compares with published transformer numbers.
"""
from __future__ import annotations

import numpy as np

from micrornn.train.loop import evaluation_mode

__all__ = ["window_starts", "windowed_loss"]


def window_starts(n_ids: int, window: int, count: int, seed: int) -> np.ndarray:
    """The `count` start positions in 0..n_ids-window-1 drawn by a generator seeded with `seed` (with repeats)."""
    for name, value, low in (("window", window, 1), ("count", count, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if window + 1 > n_ids:
        raise ValueError(f"window {window} is longer than the text scored allows: {n_ids} characters hold "
                         f"windows of at most {n_ids - 1} predictions")
    return np.random.default_rng(seed).integers(0, n_ids - window, size=count)


def windowed_loss(model, ids, window: int = 256, count: int = 2000, seed: int = 0, batch: int = 64) -> float:
    """Mean cross-entropy in nats per character over `count` random windows of `window` predictions of `ids`.

    Each window x = ids[s:s+window] predicts y = ids[s+1:s+window+1] from a zero state; the same seed gives
    the same windows. Windows run `batch` at a time as the columns of one (window, batch) input.
    ValueError when the window does not fit in ids or count < 1.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"windowed_loss needs a 1-D sequence of ids, got shape {ids.shape}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    starts = window_starts(len(ids), window, count, seed)
    offsets = np.arange(window + 1)
    total = 0.0
    with evaluation_mode(model):
        for b in range(0, count, batch):
            rows = ids[starts[b:b + batch, None] + offsets].T.astype(np.int64)  # (window + 1, B): one column each
            loss, _ = model.loss(rows[:-1], rows[1:], None, reduction="sum")
            total += float(loss.item())
    return total / (count * window)
