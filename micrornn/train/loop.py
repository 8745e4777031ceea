"""The optimization step and loop for any task: optimizers by name, update(), the generic truncated-BPTT
loop (TruncatedBPTT, fit) and evaluate() (one stream, the state carried) in nats and bits per character."""
from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
from micrornn.train.progress import progress_bar

from micrornn.nn.optim import SGD, Adagrad, Adam, AdamW, clip_grad_norm_, grad_norm
from micrornn.engine.tensor import Tensor, no_grad
from micrornn.nn.functional import cross_entropy, mse_loss
from micrornn.nn.module import Module
from micrornn.nn.recurrent import detach_state_tensors

# name -> (class, default learning rate, extra arguments); adamw decays weight matrices only (never biases)
OPTIMIZERS = {"adam": (Adam, 5e-3, {}), "adamw": (AdamW, 5e-3, {"matrices_only": True}), "adagrad": (Adagrad, 0.1, {}),
              "sgd": (SGD, 0.5, {"momentum": 0.9})}
EVAL_CHUNK = 1024  # evaluation reads its one stream this many characters at a time


def make_optimizer(name, params, lr=None, weight_decay=0.0):
    """An optimizer by name ('adam', 'adamw' (decoupled decay of weight matrices only), 'adagrad', 'sgd'
    (momentum 0.9)); lr None: its default. weight_decay > 0 needs 'adamw' (ValueError otherwise)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    cls, default_lr, extra = OPTIMIZERS[name]
    if name == "adamw":
        extra = {**extra, "weight_decay": weight_decay}
    elif weight_decay:
        raise ValueError(f"weight decay {weight_decay} needs optimizer adamw (decoupled decay), not {name}")
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


# ---- the generic truncated-BPTT loop ---------------------------------------------------------------

def default_loss(outputs, targets) -> Tensor:
    """Mean cross-entropy of logits (..., C) for integer targets (...), else the mean squared error."""
    targets = np.asarray(getattr(targets, "data", targets))
    if targets.dtype.kind in "iu":
        return cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))
    return mse_loss(outputs, targets)


@dataclass
class StepInfo:
    """What one optimizer update did; callbacks receive it."""
    step: int                # updates so far (this one included)
    loss: float              # mean loss of the chunks this update learned from
    grad_norm: float         # global gradient norm before clipping
    lr: float
    seconds: float           # wall time since the loop started
    items_per_sec: float     # target elements (characters, time steps x batch) per second of updates
    state: object = field(default=None, repr=False)  # the carried state after the update (detached)


class TruncatedBPTT:
    """A model, its optimizer and the carried state: ``step(x, y)`` learns from one chunk.

    The state runs on from chunk to chunk; every ``detach_every`` chunks the mean loss of those chunks
    is back-propagated, the gradient clipped to ``clip`` (None or 0: not clipped), the optimizer steps
    and the state is cut from the graph (``detach``, default: detached Tensors). ``forward(model, x, y,
    state) -> (loss, new_state)`` defaults to ``model.loss(x, y, state, reduction="mean")`` for a model
    that has one (SequenceModel), else ``loss_fn(*model(x, state)[:1], y)`` with ``default_loss``.
    """

    def __init__(self, model, optimizer, loss_fn=None, clip=5.0, detach_every=1, state=None, forward=None,
                 detach=detach_state_tensors):
        if isinstance(detach_every, bool) or not isinstance(detach_every, int) or detach_every < 1:
            raise ValueError(f"detach_every must be a positive integer, got {detach_every!r}")
        self.model, self.optimizer, self.clip, self.detach_every = model, optimizer, clip, detach_every
        self.state, self.detach, self.pending, self.updates = state, detach, [], 0
        self.forward = forward or _forward_for(model, loss_fn or default_loss, loss_fn is None)

    def step(self, x, y, guard=None, record=None):
        """Run one chunk; after every ``detach_every`` chunks update and return (mean loss, grad norm),
        else (None, None). ``guard`` (a context manager) wraps the update and ``record(loss, norm)``, so
        an interruption cannot separate them."""
        loss, self.state = self.forward(self.model, x, y, self.state)
        self.pending.append(loss)
        if len(self.pending) < self.detach_every:
            return None, None
        total = self.pending[0] if len(self.pending) == 1 else sum(self.pending[1:], self.pending[0]) * (
            1.0 / len(self.pending))
        self.pending = []
        with guard if guard is not None else nullcontext():
            norm = update(total, self.optimizer, self.clip)
            self.state = self.detach(self.state)  # truncated BPTT: keep the state, cut the graph
            self.updates += 1
            value = float(total.item())
            if record is not None:
                record(value, norm)
        return value, norm


def _forward_for(model, loss_fn, default):
    """The forward of a chunk: model.loss when the model has one and no loss_fn was given."""
    if default and callable(getattr(model, "loss", None)):
        return lambda m, x, y, state: m.loss(x, y, state, reduction="mean")

    def forward(m, x, y, state):
        outputs, new_state = m(x, state)
        return loss_fn(outputs, y), new_state
    return forward


@dataclass
class FitResult:
    """What fit() did: updates made, their losses, the final carried state and why it stopped."""
    steps: int
    losses: list
    state: object
    stopped_by: str          # "steps", "data" (the batches ran out) or "callback"


def fit(model, batches, optimizer=None, steps=None, *, loss_fn=None, clip=5.0, detach_every=1, state=None,
        callbacks=(), progress=True, metrics=None, log_every=1, lr_schedule=None, desc=None, on_step=None):
    """Train any recurrent model by truncated BPTT on ``batches``, an iterable of (x, y) chunks in order.

    The state ``model(x, state) -> (outputs, new_state)`` returns is carried from chunk to chunk and cut
    from the graph at each update, every ``detach_every`` chunks (see TruncatedBPTT). Stops after
    ``steps`` updates (None: when the batches run out) or when a callback returns True; each callback
    gets a StepInfo. ``lr_schedule(step) -> lr`` sets the rate before each update; ``metrics`` (a
    MetricsLog) gets a "train" record every ``log_every`` updates.

    The older form ``fit(loss_fn, optimizer, steps)`` (loss_fn(step) -> scalar Tensor, no state)
    still works and returns the list of losses.
    """
    if not isinstance(model, Module) and callable(model) and hasattr(batches, "step"):
        return _fit_plain(model, batches, steps if optimizer is None else optimizer, clip, progress, desc, on_step)
    if optimizer is None:
        raise TypeError("fit(model, batches, optimizer): the optimizer is missing")
    loop = TruncatedBPTT(model, optimizer, loss_fn, clip, detach_every, state)
    losses, stopped_by, items, busy = [], "data" if steps != 0 else "steps", 0, 0.0
    start = time.perf_counter()
    with progress_bar(total=steps, disable=not progress, desc=desc, dynamic_ncols=True, leave=False) as bar:
        for x, y in ([] if steps == 0 else batches):
            if lr_schedule is not None:
                optimizer.lr = lr_schedule(loop.updates)
            t0 = time.perf_counter()
            loss, norm = loop.step(x, y)
            busy += time.perf_counter() - t0
            items += int(np.size(getattr(y, "data", y)))
            if loss is None:
                continue
            losses.append(loss)
            info = StepInfo(loop.updates, loss, norm, float(optimizer.lr), time.perf_counter() - start,
                            items / max(busy, 1e-9), loop.state)
            if metrics is not None and info.step % log_every == 0:
                metrics.write("train", info.step, loss=loss, lr=info.lr, grad_norm=norm,
                              chars_per_sec=info.items_per_sec)
            bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            bar.update(1)
            if any([bool(cb(info)) for cb in callbacks]):  # every callback runs, then any True stops
                stopped_by = "callback"
                break
            if steps is not None and loop.updates >= steps:
                stopped_by = "steps"
                break
    return FitResult(loop.updates, losses, loop.state, stopped_by)


def _fit_plain(loss_fn, optimizer, steps, clip, progress, desc, on_step):
    """fit(loss_fn, optimizer, steps): each step calls loss_fn(step) -> scalar Tensor, then update();
    ``on_step(step, loss)`` returning True stops. Returns the list of losses."""
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
