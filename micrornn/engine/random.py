"""One seedable random generator for parameter initialisation (``micrornn.manual_seed``)."""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the generator every module uses when it is given no ``rng``; returns it."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_rng(rng: int | np.integer | np.random.Generator | None = None) -> np.random.Generator:
    """``rng`` when given (a Generator or an int seed), else the global generator."""
    if rng is None:
        return _generator
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")
