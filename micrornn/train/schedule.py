"""What changes over a training run: the learning rate (warm-up, then cosine decay by steps or by
wall time), occasional resets of the carried state, the wall-clock budget, and early stopping.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["learning_rate", "reset_some_streams", "detach_state_arrays", "Budget", "EarlyStopping"]


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


def _map_state(state, fn):
    """fn applied to the state's array, or to each array of an LSTM's (h, c) tuple."""
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def detach_state_arrays(h_n):
    """The final state of a chunk as plain arrays (an ndarray, or a tuple of them for the LSTM)."""
    return _map_state(h_n, lambda t: t.detach().data)


def reset_some_streams(state, probability, seed, step):
    """The carried state with each stream (batch column) zeroed with `probability`.

    The draw depends only on (seed, step), so a resumed run resets the same streams. Training on
    some chunks from a fresh state keeps the model good at starting from zero, as evaluation and
    sampling do; without it a model only ever sees a zero state at the start of an epoch.
    """
    if state is None or not probability:
        return state
    first = state[0] if isinstance(state, tuple) else state
    batch = first.shape[1]
    reset = np.random.default_rng([seed, 2, step]).random(batch) < probability
    if not reset.any():
        return state

    def zeroed(s):
        s = s.copy()
        s[:, reset] = 0
        return s
    return _map_state(state, zeroed)


class Budget:
    """A wall-clock limit in seconds (0: none) for a run, evaluation included."""

    def __init__(self, seconds, already_used=0.0):
        self.seconds, self.used_before = float(seconds), float(already_used)

    def fraction(self, elapsed, reserve=0.0) -> float:
        """How much of the time available for training is used (0 when there is no limit)."""
        if not self.seconds:
            return 0.0
        available = max(self.seconds - reserve, 1e-9)
        return (self.used_before + elapsed) / available

    def exhausted(self, elapsed, reserve=0.0) -> bool:
        """True once training must stop so that `reserve` seconds (the final evaluation) still fit."""
        return bool(self.seconds) and self.fraction(elapsed, reserve) >= 1.0


class EarlyStopping:
    """Counts validations without a new best; `stop` is True after `patience` of them (0: never)."""

    def __init__(self, patience=0, best=math.inf, best_step=None, bad=0):
        self.patience, self.best, self.best_step, self.bad = patience, best, best_step, bad

    def update(self, loss, step) -> bool:
        """Record a validation loss; True when it is a new best."""
        if loss < self.best:
            self.best, self.best_step, self.bad = float(loss), step, 0
            return True
        self.bad += 1
        return False

    @property
    def stop(self) -> bool:
        """Whether the run should stop now."""
        return self.patience > 0 and self.bad >= self.patience
