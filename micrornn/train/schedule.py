"""The learning-rate schedule: a linear warm-up, then cosine decay by steps or by wall time."""
from __future__ import annotations

import math

__all__ = ["learning_rate"]


def learning_rate(base_lr, step, progress, warmup=0, schedule="cosine") -> float:
    """The lr of step `step` (0-based): a linear warm-up over the first `warmup` steps, times the
    cosine decay (1 + cos(pi * progress)) / 2 where progress in [0, 1] is how far the run has come.

    The warm-up keeps Adam's first updates small while its second-moment estimates are still
    noisy (without it the default run showed a loss spike near step 70).
    """
    rise = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if schedule == "constant":
        return base_lr * rise
    progress = min(max(progress, 0.0), 1.0)
    return base_lr * rise * 0.5 * (1.0 + math.cos(math.pi * progress))
