"""The optimization step and loop for any task: optimizers by name, update(), fit(), and evaluate()
(one stream, the state carried) in nats and bits per character."""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from micrornn.train.progress import progress_bar

from micrornn.nn.optim import SGD, Adagrad, Adam, clip_grad_norm_, grad_norm
from micrornn.engine.tensor import no_grad

# name -> (class, default learning rate, extra arguments)
OPTIMIZERS = {"adam": (Adam, 3e-3, {}), "adagrad": (Adagrad, 0.1, {}), "sgd": (SGD, 0.5, {"momentum": 0.9})}
EVAL_CHUNK = 1024  # evaluation reads its one stream this many characters at a time


def make_optimizer(name, params, lr=None):
    """An optimizer by name ('adam', 'adagrad', 'sgd' (momentum 0.9)); lr None: its default."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    cls, default_lr, extra = OPTIMIZERS[name]
    return cls(params, lr=default_lr if lr is None else lr, **extra)


def update(loss, optimizer, clip=None) -> float:
    """One optimization step from a scalar loss: zero grads, backward, clip, step -> gradient norm.

    clip: the max global gradient norm (None or 0: no clipping). The returned norm is the one
    before clipping.
    """
    optimizer.zero_grad()
    loss.backward()
    norm = clip_grad_norm_(optimizer.params, clip) if clip else grad_norm(optimizer.params)
    optimizer.step()
    return norm


def bits_per_char(nats) -> float:
    """A loss in nats per character expressed in bits per character (divided by ln 2)."""
    return float(nats) / math.log(2.0)


def set_training(model, mode) -> bool:
    """Switch dropout on (training) or off; returns the mode the model was in."""
    was = getattr(model, "training", getattr(getattr(model, "rnn", None), "training", True))
    if hasattr(model, "eval") and hasattr(model, "train"):  # Module.train()/eval(), recursive
        model.train(mode)
    else:  # older Module: the recurrent layer reads its own `training` flag
        for module in (model, getattr(model, "rnn", None)):
            if module is not None:
                module.training = mode
    return bool(was)


@contextmanager
def evaluation_mode(model):
    """No graph, dropout off and the fused layer path, restored afterwards.

    The fused path computes the same function as the unrolled graph (to round-off) with a
    handful of NumPy calls per step instead of graph nodes, so scoring is several times faster.
    """
    rnn = getattr(model, "rnn", None)
    was_fused = getattr(rnn, "fused", None)
    was_training = set_training(model, False)
    if was_fused is False:
        rnn.fused = True
    try:
        with no_grad():
            yield model
    finally:
        if was_fused is False:
            rnn.fused = False
        set_training(model, was_training)


def evaluate(model, ids, chunk=EVAL_CHUNK, max_chars=None) -> float:
    """Mean cross-entropy, in nats per character, of predicting ids[1:] each from all before it.

    The ids are read as ONE stream from a zero state, `chunk` steps at a time with the hidden
    state carried across chunks (as char-rnn and nanoGPT-style reports score a validation text).
    `max_chars` (None: all) scores only the first max_chars predictions.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(f"evaluation needs a 1-D sequence of at least 2 ids, got shape {ids.shape}")
    n = len(ids) - 1 if max_chars is None else min(len(ids) - 1, int(max_chars))
    if n < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars!r}")
    x, y = ids[:n].reshape(n, 1), ids[1:n + 1].reshape(n, 1)
    total, h = 0.0, None
    with evaluation_mode(model):
        for s in range(0, n, chunk):
            loss, h = model.loss(x[s:s + chunk], y[s:s + chunk], h, reduction="sum")
            total += float(loss.item())
    return total / n


def fit(loss_fn, optimizer, steps, clip=5.0, progress=True, desc=None, on_step=None):
    """A plain loop for other tasks: each step calls loss_fn(step) -> scalar Tensor, then update().

    Returns the list of losses. `on_step(step, loss)` runs after each step; returning True stops.
    """
    losses = []
    with progress_bar(total=steps, disable=not progress, desc=desc, dynamic_ncols=True, leave=False) as bar:
        for step in range(steps):
            loss = loss_fn(step)
            update(loss, optimizer, clip)
            losses.append(float(loss.item()))
            bar.set_postfix_str(f"loss {losses[-1]:.4f}", refresh=False)
            bar.update(1)
            if on_step is not None and on_step(step + 1, losses[-1]):
                break
    return losses
