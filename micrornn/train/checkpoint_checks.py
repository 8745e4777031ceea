"""Checks a `micrornn train` checkpoint must pass before anything is built from it: sane model
sizes (before any allocation), finite numbers, and a training state that fits the run."""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from micrornn.nn.cells import CELLS
from micrornn.train.checkpoint import CheckpointError

__all__ = ["check_model_sizes", "check_finite", "check_training_meta", "check_carried_state", "stored_dtype",
           "check_history"]

HISTORY_KEYS = {"step": int, "loss": float, "val_step": int, "val_loss": float, "val_chars": int}


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


def stored_dtype(meta):
    """The model's float dtype as its checkpoint records it (float64 when absent), or None if unreadable."""
    config = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    try:
        dtype = np.dtype(config.get("dtype", "float64"))
    except (TypeError, ValueError):
        return None  # model_from_meta names the bad dtype
    return dtype if dtype.kind == "f" else None


def check_finite(arrays, what, path, dtype=None) -> None:
    """Refuse NaN or Inf in any float array of a name -> array dict (parameters, buffers), checked
    after the cast to `dtype` when given: a float64 1e39 is inf once it is the model's float32."""
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.kind != "f":
            continue
        if dtype is not None and array.dtype != dtype:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = array.astype(dtype)
        if not np.isfinite(array).all():
            beyond = "" if dtype is None else f" as {np.dtype(dtype).name}"
            raise CheckpointError(f"{path}: {what} {name!r} contains NaN or Inf{beyond}; refusing to load it")


def check_history(history, path) -> None:
    """The loss history must be a dict of lists of numbers (steps and character counts integers),
    steps paired with losses: anything else is refused in one line before a run reads it."""
    if not isinstance(history, dict):
        raise CheckpointError(f"{path}: history must be a dict of lists, got {type(history).__name__}")
    for key, kind in HISTORY_KEYS.items():
        values = history.get(key, [])
        if not isinstance(values, list):
            raise CheckpointError(f"{path}: history {key!r} must be a list, got {type(values).__name__}")
        wanted = numbers.Integral if kind is int else numbers.Real
        bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, wanted)), None)
        if bad is not None:
            raise CheckpointError(f"{path}: history {key!r} holds {bad!r:.40}, expected "
                                  f"{'integers' if kind is int else 'numbers'}")
    for steps, losses in (("step", "loss"), ("val_step", "val_loss")):
        if len(history.get(steps, [])) != len(history.get(losses, [])):
            raise CheckpointError(f"{path}: history {steps!r} and {losses!r} differ in length")


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
    if not isinstance(meta["data"].get("source"), (str, type(None))):
        raise CheckpointError(f"{path}: the data source must be a path or null, got {meta['data']['source']!r:.80}")
    check_history(meta.get("history"), path)
    optimizer = state.get("optimizer")
    count = optimizer.get("step_count", 0) if isinstance(optimizer, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise CheckpointError(f"{path}: optimizer step_count must be a non-negative integer, got {count!r}")
    check_finite(params, "parameter", path, stored_dtype(meta))
    check_finite(_optimizer_arrays(optimizer), "optimizer buffer", path, stored_dtype(meta))


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
    check_finite({f"hidden {i}": p for i, p in enumerate(parts)}, "carried state", path,
                 np.dtype(getattr(config, "dtype", "float64")))
