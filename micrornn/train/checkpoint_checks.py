"""Checks a `micrornn train` checkpoint must pass before anything is built from it: sane model
sizes (before any allocation), finite numbers, and a training state that fits the run."""
from __future__ import annotations

import numpy as np

from micrornn.nn.cells import CELLS
from micrornn.train.checkpoint import CheckpointError

__all__ = ["check_model_sizes", "check_finite", "check_training_meta", "check_carried_state"]


def check_model_sizes(meta, params, path) -> None:
    """Refuse model sizes the stored parameters cannot hold, before the model is built: a real
    model's every size is at most its number of weights, and its layers at most its arrays."""
    config = meta.get("model")
    if not isinstance(config, dict):
        return  # model_from_meta says what is missing
    stored = sum(int(np.size(p)) for p in params.values())
    for name, value in config.items():
        if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
            if name.endswith("_size") or name == "num_layers":
                if not isinstance(value, int) or value < 1:
                    raise CheckpointError(f"{path}: model {name} must be a positive integer, got {value!r}")
                limit = len(params) if name == "num_layers" else stored
                if value > limit:
                    raise CheckpointError(f"{path}: model {name} {value:,} is larger than the stored parameters "
                                          f"allow ({limit:,} {'arrays' if name == 'num_layers' else 'numbers'})")


def check_finite(arrays, what, path) -> None:
    """Refuse NaN or Inf in any float array of a name -> array dict (parameters, buffers)."""
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise CheckpointError(f"{path}: {what} {name!r} contains NaN or Inf; refusing to load it")


def _optimizer_arrays(state) -> dict:
    """The optimizer's buffers as a flat name -> array dict."""
    found = {}
    for i, entry in enumerate((state or {}).get("state") or []):
        if isinstance(entry, dict):
            found.update({f"{i}/{k}": v for k, v in entry.items() if isinstance(v, np.ndarray)})
    return found


def check_training_meta(meta, params, state, path) -> None:
    """Types and ranges of everything `Trainer.resume` reads, and finite numbers throughout."""
    step = meta.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: step must be a non-negative integer, got {step!r}")
    if not isinstance(meta.get("data"), dict) or not isinstance(meta["data"].get("sha256"), str):
        raise CheckpointError(f"{path}: 'data' must be a dict with the text's sha256, got {meta.get('data')!r:.80}")
    optimizer = state.get("optimizer")
    count = optimizer.get("step_count", 0) if isinstance(optimizer, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise CheckpointError(f"{path}: optimizer step_count must be a non-negative integer, got {count!r}")
    check_finite(params, "parameter", path)
    check_finite(_optimizer_arrays(optimizer), "optimizer buffer", path)


def check_carried_state(hidden, config, path) -> None:
    """The carried hidden state must be None or (LSTM: two) arrays of (layers, batch, hidden), finite."""
    if hidden is None:
        return
    expected = (config.num_layers, config.batch_size, config.hidden_size)
    parts = hidden if isinstance(hidden, tuple) else (hidden,)
    layout = CELLS.get(getattr(config, "cell", "rnn"))
    count = len(parts) if layout is None else len(layout.state_names)  # a user cell's state has its own entries
    shapes = [np.shape(p) if isinstance(p, np.ndarray) else type(p).__name__ for p in parts]
    if len(parts) != count or any(s != expected for s in shapes):
        raise CheckpointError(f"{path}: the carried state has shape(s) {shapes}, expected {count} of {expected}")
    check_finite({f"hidden {i}": p for i, p in enumerate(parts)}, "carried state", path)
