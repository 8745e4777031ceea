"""The optimization step and loop for any task: optimizers by name, update(), fit(), evaluate()."""
from __future__ import annotations

import numpy as np
from micrornn.progress import progress_bar

from micrornn.optim import SGD, Adagrad, Adam, clip_grad_norm_, grad_norm
from micrornn.tensor import no_grad

# name -> (class, default learning rate, extra arguments)
OPTIMIZERS = {"adam": (Adam, 3e-3, {}), "adagrad": (Adagrad, 0.1, {}), "sgd": (SGD, 0.5, {"momentum": 0.9})}
EVAL_STREAMS = 16  # validation text is read as this many contiguous streams, in parallel


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


def eval_batches(ids, streams=EVAL_STREAMS):
    """(inputs, targets), each (L, S): ids read as S contiguous streams predicting the next id."""
    ids = np.asarray(ids)
    n = len(ids) - 1
    if n < 1:
        raise ValueError(f"evaluation needs at least 2 ids, got {len(ids)}")
    streams = max(1, min(streams, n))
    length = n // streams
    x = ids[:streams * length].reshape(streams, length).T
    y = ids[1:streams * length + 1].reshape(streams, length).T
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def evaluate(model, ids, chunk=128, streams=EVAL_STREAMS) -> float:
    """Mean cross-entropy, in nats per character, of predicting each id from those before it.

    The ids are read as `streams` contiguous pieces in parallel, each from a zero hidden state,
    `chunk` steps at a time with the state carried over (no graph is recorded).
    """
    x, y = eval_batches(ids, streams)
    total, h = 0.0, None
    with no_grad():
        for s in range(0, len(x), chunk):
            loss, h = model.loss(x[s:s + chunk], y[s:s + chunk], h, reduction="sum")
            total += float(loss.item())
    return total / y.size


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
