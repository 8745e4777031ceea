"""TrainConfig: everything that defines a training run, and its validation."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from micrornn.train.loop import OPTIMIZERS

LR_SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints)."""
    hidden_size: int = 192
    num_layers: int = 2
    nonlinearity: str = "tanh"
    cell: str = "rnn"                # "rnn", "lstm" or "gru" (micrornn.nn.SequenceModel's cell)
    seq_len: int = 64
    batch_size: int = 32
    steps: int = 1500
    optimizer: str = "adam"
    lr: float | None = None          # None: the optimizer's default (Adam 3e-3)
    lr_schedule: str = "cosine"      # "cosine": lr * (1 + cos(pi * step / steps)) / 2; or "constant"
    clip: float = 5.0                # max global gradient norm; 0 disables clipping
    seed: int = 0
    fused: bool = False
    dtype: str = "float32"
    val_fraction: float = 0.1
    val_every: int = 250             # 0: validate only at the end
    sample_every: int = 500          # 0: no samples during training
    sample_length: int = 200
    sample_temperature: float = 0.8
    checkpoint_every: int = 0        # 0: save only at the end (and on Ctrl-C)

    def validated(self) -> "TrainConfig":
        """A copy with lr filled in; ValueError naming the first nonsensical field."""
        for name in ("hidden_size", "num_layers", "seq_len", "batch_size"):
            _check_int(name, getattr(self, name), 1)
        for name in ("steps", "seed", "val_every", "sample_every", "sample_length", "checkpoint_every"):
            _check_int(name, getattr(self, name), 0)
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        lr = OPTIMIZERS[self.optimizer][1] if self.lr is None else self.lr
        _check_float("lr", lr, positive=True)
        _check_float("clip", self.clip)
        _check_float("sample_temperature", self.sample_temperature, positive=True)
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        return replace(self, lr=float(lr), clip=float(self.clip), fused=bool(self.fused))


def _check_int(name, value, low):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        kind = "a positive integer" if low == 1 else "a non-negative integer"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_float(name, value, positive=False):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")

