"""When a run stops: the wall-clock budget and early stopping on the validation loss."""
from __future__ import annotations

import math

__all__ = ["Budget", "EarlyStopping"]


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
