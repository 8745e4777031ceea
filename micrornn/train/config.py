"""TrainConfig: everything that defines a training run, its validation, and the named presets."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from micrornn.nn.cells import CELLS as CELL_REGISTRY, is_import_name
from micrornn.train.loop import OPTIMIZERS

LR_SCHEDULES = ("cosine", "constant")
CELLS = tuple(CELL_REGISTRY)  # the built-in cell kinds


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints)."""
    cell: str = "rnn"                # "rnn" (tanh or relu), "lstm", "gru", or a user cell "package.module:Class"
    hidden_size: int = 192
    num_layers: int = 2
    nonlinearity: str = "tanh"       # the vanilla cell's activation (gated cells have their own)
    dropout: float = 0.0             # dropout between stacked layers, training only
    seq_len: int = 32
    batch_size: int = 32
    steps: int = 5000
    optimizer: str = "adam"
    lr: float | None = None          # None: the optimizer's default (Adam 3e-3)
    lr_schedule: str = "cosine"      # "cosine": lr * (1 + cos(pi * progress)) / 2; or "constant"
    warmup: int = 100                # the lr rises linearly over this many first steps (0: none)
    clip: float = 5.0                # max global gradient norm; 0 disables clipping
    state_reset: float = 0.01        # each step, each stream's carried state is zeroed with this probability
    time_budget: float = 0.0         # seconds of wall time, validation included, then stop (0: no limit)
    seed: int = 0
    fused: bool = True               # each layer one primitive (hand-written BPTT); False: the unrolled graph
                                     # (a user cell always runs unrolled)
    dtype: str = "float32"
    val_fraction: float = 0.1
    val_every: int = 250             # 0: validate only at the end
    val_chars: int = 20000           # periodic validations score this many characters (0: all); the final one all
    patience: int = 0                # early stopping: stop after this many validations without a new best (0: off)
    sample_every: int = 500          # 0: no samples during training
    sample_length: int = 200
    sample_temperature: float = 0.8
    checkpoint_every: int = 0        # 0: save only at the end (and on Ctrl-C)

    def validated(self) -> "TrainConfig":
        """A copy with lr filled in; ValueError naming the first nonsensical field."""
        for name in ("hidden_size", "num_layers", "seq_len", "batch_size"):
            _check_int(name, getattr(self, name), 1)
        for name in ("steps", "seed", "val_every", "sample_every", "sample_length", "checkpoint_every", "warmup",
                     "val_chars", "patience"):
            _check_int(name, getattr(self, name), 0)
        if self.cell not in CELLS and not is_import_name(self.cell):
            raise ValueError(f"cell must be one of {CELLS} or a user cell 'package.module:Class', got {self.cell!r}")
        if self.cell not in CELLS and self.nonlinearity != "tanh":
            raise ValueError(f"nonlinearity applies to cell 'rnn' only, not to {self.cell}")
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
        _check_float("sample_temperature", self.sample_temperature)  # 0: greedy
        _check_float("time_budget", self.time_budget)
        for name in ("dropout", "state_reset"):
            value = getattr(self, name)
            _check_float(name, value)
            if value >= 1:
                raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
        if self.dropout and self.num_layers < 2:
            raise ValueError(f"dropout acts between stacked layers: it needs num_layers >= 2, got {self.num_layers}")
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        return replace(self, lr=float(lr), clip=float(self.clip), fused=bool(self.fused) and self.cell in CELLS,
                       time_budget=float(self.time_budget), dropout=float(self.dropout),
                       state_reset=float(self.state_reset))


# Named configurations for `micrornn train --preset NAME`, all on the bundled corpus with 32-character (the
# GRU: 64) chunks of 32 streams, Adam with warm-up, float32 and the fused layers, chosen by measurement (see
# the README's quality section). `time_budget` stops a run at its limit on any machine (the final
# validation included) and the cosine decay follows the time used, so a slower machine gets fewer
# steps but still ends with a decayed learning rate; `steps` is only an upper bound.
_PRESET_COMMON = dict(seq_len=32, batch_size=32, fused=True, steps=1_000_000, val_every=500, val_chars=20000,
                      sample_every=0)
PRESETS = {
    "rnn": dict(_PRESET_COMMON, cell="rnn", hidden_size=256, num_layers=2, lr=3e-3, time_budget=900.0),
    "lstm": dict(_PRESET_COMMON, cell="lstm", hidden_size=256, num_layers=2, lr=5e-3, time_budget=900.0),
    "gru": dict(_PRESET_COMMON, cell="gru", hidden_size=256, num_layers=2, seq_len=64, lr=3e-3, dropout=0.2,
                time_budget=900.0),
    "best": dict(_PRESET_COMMON, cell="gru", hidden_size=384, num_layers=2, lr=4e-3, dropout=0.2,
                 val_every=1000, time_budget=3600.0),
}


def preset_config(name, **overrides) -> TrainConfig:
    """The TrainConfig of preset `name` with `overrides` on top; ValueError for an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return TrainConfig(**{**PRESETS[name], **overrides})


CLI_OPTIONS = {"num_layers": "--layers", "sample_temperature": "--temperature"}  # where the names differ


def option_name(field) -> str:
    """The `micrornn train` option that sets a TrainConfig field (num_layers -> --layers)."""
    return CLI_OPTIONS.get(field, "--" + field.replace("_", "-"))


def _check_int(name, value, low):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        kind = "a positive integer" if low == 1 else "a non-negative integer"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_float(name, value, positive=False):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")

