"""An exponential moving average of a model's weights (EMA), for validation, samples and checkpoints.

After optimizer step t (1, 2, ...) each averaged array moves toward its parameter:
avg = d_t * avg + (1 - d_t) * p with d_t = min(d, (1 + t) / (10 + t)), so the first steps mostly
replace the starting copy of the weights (the initial weights would otherwise keep a share d^t of
it for thousands of steps). The average is kept in the parameters' dtype; t is the trainer's step,
which checkpoints already hold, so a resumed run continues the same average. ``swapped_in(model)``
puts the averages into the model for a block and restores the trained weights exactly afterwards.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from micrornn.engine.guard import writable_data

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of every named parameter of `model`, with decay `decay` in [0, 1)."""

    def __init__(self, model, decay: float):
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.params = dict(model.named_parameters())
        self.average = {name: p.data.copy() for name, p in self.params.items()}

    def update(self, step: int) -> None:
        """The average after optimizer step `step` (from 1): avg = d_t avg + (1 - d_t) p, every parameter."""
        d = min(self.decay, (1.0 + step) / (10.0 + step))  # the warm-up: early steps weigh the new weights more
        for name, p in self.params.items():
            avg = self.average[name]
            avg *= d
            avg += (1.0 - d) * p.data

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of the averaged weights, by parameter name."""
        return {name: a.copy() for name, a in self.average.items()}

    def load_state_dict(self, arrays: dict) -> None:
        """Restore averages saved by state_dict(); ValueError naming a missing or mis-shaped one."""
        loaded = {}
        for name, p in self.params.items():
            a = arrays.get(name) if isinstance(arrays, dict) else None
            if a is None or np.shape(a) != p.data.shape:
                got = "missing" if a is None else f"shape {np.shape(a)}"
                raise ValueError(f"ema average of {name} is {got}, expected shape {p.data.shape}")
            loaded[name] = np.array(a, dtype=p.data.dtype)
        self.average = loaded

    @contextmanager
    def swapped_in(self):
        """Within the block the parameters hold the averaged weights; the trained ones come back after."""
        trained = {name: p.data.copy() for name, p in self.params.items()}
        try:
            for name, p in self.params.items():
                writable_data(p)[...] = self.average[name]
            yield
        finally:
            for name, p in self.params.items():
                writable_data(p)[...] = trained[name]
