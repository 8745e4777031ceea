"""What every cell kind shares: argument checks, and the linear head with its softmax cross-entropy.

Plain NumPy with no imports from the rest of micrornn (the analytic routes stay independent of the
engine they check).

Head, rows n = (t, batch item):  o_n = h_n V^T + c,   L = sum_n CE(softmax(o_n), y_n)
Backward:  dL/do_n = softmax(o_n) - onehot(y_n),  dV = sum_n do_n^T h_n,  dc = sum_n do_n,  dL/dh_n = do_n V
"""

import numpy as np


# ----------------------------------------------------------------------------- validation

def _check_shape(name, arr, expected):
    """Raise ValueError unless arr matches expected; str entries in expected are free sizes."""
    if arr.shape == expected:  # all sizes given and right: the common case, one comparison
        return
    ok = arr.ndim == len(expected) and all(
        isinstance(e, str) or s == e for s, e in zip(arr.shape, expected))
    if not ok:
        trailing = "," if len(expected) == 1 else ""
        shown = "(" + ", ".join(str(e) for e in expected) + trailing + ")"
        raise ValueError(f"{name}: expected shape {shown}, got {tuple(arr.shape)}")


def _float_dtype(*arrays):
    """Common floating dtype of the given arrays (None entries skipped; ints promote to float64)."""
    dtype = np.result_type(*[a for a in arrays if a is not None])
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _arrays(*arrays):
    """Each argument as an ndarray (None passes through)."""
    return tuple(None if a is None else np.asarray(a) for a in arrays)


def _as(arr, dtype):
    """arr as an ndarray of dtype, copying only when needed (None passes through)."""
    return None if arr is None else np.asarray(arr).astype(dtype, copy=False)


def _check_head(V, c, H):
    """Validate head weight (O, H) and bias (O,)."""
    _check_shape("head.weight", V, ("O", H) if V.ndim == 2 else ("O", f"H={H}"))
    if c is not None:
        _check_shape("head.bias", c, (V.shape[0],))


def _skipped(mask, t):
    """The rows of step t that are padding (a boolean index), or None when every row is a real step."""
    if mask is None or mask[t].all():
        return None
    return ~mask[t]


def check_lengths(lengths, T: int, B: int) -> np.ndarray:
    """lengths as ints (B,) with 1 <= length <= T; ValueError naming the problem otherwise."""
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise ValueError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), got {arr.shape}")
    arr = arr.astype(np.int64)
    if B and (arr.min() < 1 or arr.max() > T):
        raise ValueError(f"lengths: expected values in 1..{T} (the time axis), got values in {arr.min()}..{arr.max()}")
    return arr


def length_mask(lengths, T: int) -> np.ndarray:
    """(T, B) booleans: True where step t < length (a real step), False on padding."""
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def reverse_index(lengths, T: int):
    """(rows (T, B), cols (1, B)) so that x[rows, cols] reverses each sequence within its length
    (step t reads step length-1-t) and leaves the padding where it is; applied twice it is the identity."""
    lengths = np.asarray(lengths)
    t = np.arange(T)[:, None]
    rows = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return rows, np.arange(len(lengths))[None, :]


def _sigmoid(a, out):
    """Logistic sigmoid of a into out, stable for large |a|: 1/(1+e^-a) = (1 + tanh(a/2)) / 2."""
    np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


# ----------------------------------------------------------------------------- head and loss

def log_softmax(logits):
    """Row-wise log-softmax, stable for large |logits| (max is subtracted first)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted


def softmax_cross_entropy(logits, targets):
    """Summed cross-entropy of logits (N, O) against int targets (N,), and dL/dlogits."""
    logits = np.array(logits, dtype=_float_dtype(logits))  # a copy: the work below is in place
    return softmax_cross_entropy_inplace(logits, np.asarray(targets))


def softmax_cross_entropy_inplace(logits, targets):
    """softmax_cross_entropy that turns the float buffer ``logits`` into dL/dlogits (one exp, no copies)."""
    rows = np.arange(len(targets))
    peak = logits.max(axis=-1, keepdims=True)
    logits -= peak  # shifted: exp cannot overflow
    picked = logits[rows, targets]
    probs = np.exp(logits, out=logits)
    total = probs.sum(axis=-1, keepdims=True)
    loss = np.log(total).sum() - picked.sum()  # sum_n logsumexp(o_n) - o_n[y_n]
    probs /= total
    probs[rows, targets] -= 1  # dL/do = softmax(o) - onehot(y)
    return float(loss), probs


def _check_targets(targets, T, B, num_classes, mask=None):
    """Validate integer targets (T, B) with values in [0, num_classes) (where mask is True)."""
    _check_shape("targets", targets, (T, B))
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets: expected an integer array, got dtype {targets.dtype}")
    targets = targets if mask is None else targets[mask]
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets: expected class indices in [0, {num_classes}), "
                         f"got values in [{targets.min()}, {targets.max()}]")


def head_loss_and_grads(top, V, c, targets, mask=None):
    """Loss of the head over the top layer's output top (T, B, F): (loss, {head grads}, dL/dtop).
    With a mask (T, B) only the rows where it is True enter the loss (the others get dL/dtop = 0)."""
    flat, targets = top.reshape(-1, top.shape[2]), targets.reshape(-1)
    if mask is not None:
        rows = mask.reshape(-1)
        flat, targets = flat[rows], targets[rows]
    logits = flat @ V.T.astype(flat.dtype, copy=False)
    if c is not None:
        logits += c
    loss, d_logits = softmax_cross_entropy_inplace(logits, targets)
    grads = {"head.weight": d_logits.T @ flat}  # dL/dV = sum_t dO_t^T h_t
    if c is not None:
        grads["head.bias"] = d_logits.sum(axis=0)  # dL/dc = sum_t sum_batch dO_t
    d_flat = d_logits @ V  # dL/dh_t from the head = dO_t V
    if mask is None:
        return loss, grads, d_flat.reshape(top.shape)
    d_top = np.zeros(top.shape, dtype=d_flat.dtype)
    d_top.reshape(-1, top.shape[2])[rows] = d_flat
    return loss, grads, d_top
