"""Composites built only from primitives (no hand-written backward): activations, softmax, losses,
dropout (plain, locked across time, or of whole vectors), layer_norm, embedding, one_hot; and
linear_cross_entropy, which applies the fused head-and-loss primitive of fused_ops."""
from __future__ import annotations

import numpy as np

from micrornn.bptt import fused as fused_ops
from micrornn.engine.habits import numpy_keywords  # dim= refused with the NumPy spelling
from micrornn.engine.random import default_rng
from micrornn.engine.compile import random_array
from micrornn.engine.tensor import Tensor, apply, as_tensor, stack

_REDUCTIONS = ("mean", "sum", "none")


def sigmoid(x) -> Tensor:
    """1 / (1 + e^-x), computed without overflow."""
    return as_tensor(x).sigmoid()


def tanh(x) -> Tensor:
    """Hyperbolic tangent."""
    return as_tensor(x).tanh()


def relu(x) -> Tensor:
    """max(x, 0)."""
    return as_tensor(x).relu()


def softplus(x) -> Tensor:
    """log(1 + e^x) = logsumexp(0, x): finite for any x, gradient sigmoid(x) everywhere."""
    x = as_tensor(x)
    return stack([x * 0.0, x], axis=-1).logsumexp(axis=-1)


def check_probability(name: str, p) -> float:
    """p as a float; ValueError naming ``name`` unless p is a number in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


def dropout(x, p=0.5, training=True, rng=None, *, shared_axes=()) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); x itself when not training.

    shared_axes: axes along which one draw is shared (the mask has size 1 there): (0,) on a time-major
    (T, B, F) sequence locks the mask across time, (-1,) drops whole feature vectors."""
    check_probability("dropout: p", p)
    x = as_tensor(x)
    if not training or p == 0:
        return x
    if x.dtype.kind != "f":
        raise TypeError(f"dropout: x must be floating point, got {x.dtype} (the kept values are scaled by 1/(1-p))")
    if any(not -x.ndim <= a < x.ndim for a in shared_axes):
        raise ValueError(f"dropout: shared_axes {tuple(shared_axes)} out of range for x of shape {x.shape}")
    shared = {a % x.ndim for a in shared_axes}
    shape = tuple(1 if a in shared else n for a, n in enumerate(x.shape))
    dtype = x.dtype  # the mask is a program input under micrornn.compile: drawn on every call
    return x * random_array(lambda: ((default_rng(rng).random(shape) >= p) / (1.0 - p)).astype(dtype), p)


def locked_dropout(x, p=0.5, training=True, time_axis=0, rng=None) -> Tensor:
    """Variational dropout: one mask per sequence, shared by every step along ``time_axis``."""
    return dropout(x, p, training, rng, shared_axes=(time_axis,))


def layer_norm(x, weight=None, bias=None, eps=1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) over the last axis, then * weight + bias (each optional)."""
    x = as_tensor(x)
    centred = x - x.mean(axis=-1, keepdims=True)
    out = centred / (centred.square().mean(axis=-1, keepdims=True) + eps).sqrt()
    if weight is not None:
        out = out * weight
    return out if bias is None else out + bias


def embedding(indices, weight) -> Tensor:
    """Rows of weight (num_embeddings, dim) at integer indices: a gather whose gradient scatter-adds."""
    weight = as_tensor(weight)
    indices = np.asarray(getattr(indices, "data", indices))
    if indices.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {indices.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-d (num_embeddings, dim), got shape {weight.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= weight.shape[0]):
        raise ValueError(f"embedding: indices must lie in 0..{weight.shape[0] - 1}, got min {indices.min()} "
                         f"and max {indices.max()}")
    return weight[indices]


@numpy_keywords
def log_softmax(x, axis=-1) -> Tensor:
    """log softmax(x) = x - logsumexp(x): finite for logits of any size (Tensor.log_softmax)."""
    return as_tensor(x).log_softmax(axis)


@numpy_keywords
def softmax(x, axis=-1) -> Tensor:
    """softmax(x) = exp(x - logsumexp(x)): never overflows (Tensor.softmax)."""
    return as_tensor(x).softmax(axis)


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    """Apply a 'mean' | 'sum' | 'none' reduction."""
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def _check_reduction(reduction) -> None:
    """Reject an unknown reduction by name."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _checked_targets(targets, logits_shape, op="cross_entropy"):
    """Integer targets whose shape is logits_shape[:-1] and whose values are class indices."""
    targets = np.asarray(getattr(targets, "data", targets))
    if targets.dtype.kind not in "iu":
        raise TypeError(f"{op}: targets must be integer class indices, got dtype {targets.dtype}")
    if len(logits_shape) < 1 or targets.shape != tuple(logits_shape[:-1]):
        raise ValueError(f"{op}: targets of shape {targets.shape} do not match logits of shape "
                         f"{tuple(logits_shape)} (expected targets of shape {tuple(logits_shape[:-1])})")
    classes = logits_shape[-1]
    if targets.size and (targets.min() < 0 or targets.max() >= classes):
        bad = targets[(targets < 0) | (targets >= classes)].flat[0]
        raise ValueError(f"{op}: target {bad} is out of range for {classes} classes (0..{classes - 1})")
    return targets


def cross_entropy(logits, targets, reduction="mean", mask=None) -> Tensor:
    """Softmax cross-entropy of logits (..., C) against integer class indices (...).

    mask (booleans shaped like targets) skips the targets where it is False: they may hold any
    value, add nothing and give their logits zero gradient; "mean" averages over the kept ones,
    "none" gives 0 where skipped."""
    _check_reduction(reduction)
    logits = as_tensor(logits)
    if mask is not None:
        return _masked_cross_entropy(logits, targets, reduction, mask)
    targets = _checked_targets(targets, logits.shape)
    classes = logits.shape[-1]
    flat = logits if logits.ndim == 2 else logits.reshape(-1, classes)
    picked = flat[np.arange(targets.size), targets.reshape(-1)]  # gather: gradient is a scatter-add
    losses = flat.logsumexp(axis=-1) - picked  # -log softmax(logits)[target]
    if reduction == "none" and targets.ndim != 1:
        losses = losses.reshape(targets.shape)
    return _reduce(losses, reduction)


def _masked_cross_entropy(logits, targets, reduction, mask) -> Tensor:
    """cross_entropy over the positions where mask is True only. The target is picked by a one-hot
    comparison (recorded ops, so micrornn.compile replays it with each call's targets); a skipped
    position may hold any target, adds 0 and gives its logits exactly zero gradient."""
    raw = np.asarray(getattr(targets, "data", targets))
    keep = np.asarray(getattr(mask, "data", mask))
    if keep.dtype != bool or keep.shape != raw.shape:
        raise ValueError(f"cross_entropy: mask must be booleans of the targets' shape {raw.shape}, "
                         f"got {keep.dtype} of shape {keep.shape}")
    _checked_targets(np.where(keep, raw, 0) if raw.dtype.kind in "iu" else raw, logits.shape)  # the kept ones
    hit = as_tensor(targets)[..., None] == Tensor(np.arange(logits.shape[-1]))  # one-hot rows of the targets
    picked = (logits * hit.astype(logits.dtype)).sum(axis=-1)  # logits[target]
    losses = (logits.logsumexp(axis=-1) - picked) * Tensor(keep.astype(logits.dtype))  # -log softmax[target], kept
    if reduction == "none":
        return losses
    total = losses.sum()
    return total if reduction == "sum" else total / max(int(keep.sum()), 1)


def linear_cross_entropy(x, weight, bias, targets, reduction="mean") -> Tensor:
    """cross_entropy(x @ weight.T + bias, targets) as one node (reduction "mean" or "sum").

    The same value as the composed ops, with a hand-written VJP (micrornn.bptt.fused): what the
    fused sequence model uses for its head and loss. bias may be None."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"linear_cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r}")
    x, weight = as_tensor(x), as_tensor(weight)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: x of shape {x.shape} does not fit weight of shape {weight.shape} "
                         "(expected weight (classes, x.shape[-1]))")
    if bias is not None and as_tensor(bias).shape != weight.shape[:1]:
        raise ValueError(f"linear_cross_entropy: bias of shape {as_tensor(bias).shape} does not match weight "
                         f"of shape {weight.shape}")
    targets = _checked_targets(targets, x.shape[:-1] + weight.shape[:1], "linear_cross_entropy").reshape(-1)
    inputs = (x, weight) if bias is None else (x, weight, as_tensor(bias))
    return apply(fused_ops.LINEAR_CROSS_ENTROPY, *inputs, targets=targets, reduction=reduction)


def mse_loss(pred, target, reduction="mean") -> Tensor:
    """Mean squared error (pred - target)^2."""
    _check_reduction(reduction)
    pred = as_tensor(pred)
    target_shape = np.shape(getattr(target, "data", target))
    if target_shape != pred.shape:
        raise ValueError(f"mse_loss: pred has shape {pred.shape} but target has shape {target_shape}")
    diff = pred - target
    return _reduce(diff * diff, reduction)


def one_hot(indices, num_classes: int, dtype=np.float64) -> Tensor:
    """A constant tensor (..., num_classes) with a 1 at each index."""
    indices = np.asarray(getattr(indices, "data", indices))
    if indices.dtype.kind not in "iu":
        raise TypeError(f"one_hot: indices must be integers, got dtype {indices.dtype}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes <= 0:
        raise ValueError(f"one_hot: num_classes must be a positive integer, got {num_classes!r}")
    if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(f"one_hot: indices must lie in 0..{num_classes - 1}, got min {indices.min()} "
                         f"and max {indices.max()}")
    out = np.zeros(indices.shape + (int(num_classes),), dtype=dtype)
    np.put_along_axis(out, indices[..., None], 1, axis=-1)
    return Tensor(out, dtype=dtype)
