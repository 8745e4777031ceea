"""Layer normalization of gate blocks, forward and backward in plain NumPy: what the layer-norm
LSTM and GRU layers (``lstm_ln``, ``gru_ln``) share.

A vector v (..., G*H) is G blocks of H units; each block is normalized over its own units:

    mu = mean_j v_j,   var = mean_j (v_j - mu)^2,   inv = 1 / sqrt(var + eps),   v^ = (v - mu) * inv
    LN(v; gain, shift) = gain * v^ + shift                        (eps = 1e-5, inside the square root)

Backward, per block, from dv^ = dL/dv^ (= gain * dL/dLN):

    dL/dv = inv * (dv^ - mean_j dv^_j - v^ * mean_j (dv^_j v^_j))

The input part of every step, p_t = LN(x_t U^T; gain_x, b), does not depend on the state, so it
is normalized for all steps at once before the time loop, and its backward runs once after it.
"""

import numpy as np

EPS = 1e-5


def normalize(v, G: int, eps: float = EPS):
    """(v^, inv): each of the G blocks of v (..., G*H) centred and scaled over its units; inv (..., G, 1)."""
    H = v.shape[-1] // G
    blocks = v.reshape(v.shape[:-1] + (G, H))
    centred = blocks - np.add.reduce(blocks, axis=-1, keepdims=True) * (1.0 / H)  # v - mu (sums: no np.mean overhead)
    inv = np.add.reduce(centred * centred, axis=-1, keepdims=True)
    inv *= 1.0 / H
    inv += eps
    np.sqrt(inv, out=inv)
    np.reciprocal(inv, out=inv)  # 1 / sqrt(var + eps)
    centred *= inv
    return centred.reshape(v.shape), inv


def normalize_backward(d_hat, v_hat, inv, G: int):
    """dL/dv from dL/dv^ (..., G*H): inv * (dv^ - mean(dv^) - v^ mean(dv^ v^)) per block."""
    shape = d_hat.shape
    H = shape[-1] // G
    d = d_hat.reshape(shape[:-1] + (G, H))
    vh = v_hat.reshape(d.shape)
    mean_d = np.add.reduce(d, axis=-1, keepdims=True)
    mean_d *= 1.0 / H
    mean_dv = np.add.reduce(d * vh, axis=-1, keepdims=True)
    mean_dv *= 1.0 / H
    dv = vh * mean_dv
    np.subtract(d, dv, out=dv)
    dv -= mean_d
    dv *= inv
    return dv.reshape(shape)


def block_norm(v, G: int, eps: float = EPS):
    """(v - mean) / sqrt(var + eps) per block, for any array type with reshape/mean/** (ndarrays, or
    engine Tensors when a fused layer replays its steps as a graph)."""
    shape = v.shape
    blocks = v.reshape(tuple(shape[:-1]) + (G, shape[-1] // G))
    centred = blocks - blocks.mean(axis=-1, keepdims=True)
    return (centred / ((centred * centred).mean(axis=-1, keepdims=True) + eps) ** 0.5).reshape(shape)


def input_part_forward(x, U, gain_x, b, G: int):
    """p = LN(x U^T; gain_x, b) for every step at once: (p (T, B, G*H), x^, inv) — x (T, B, I)."""
    T, B, I = x.shape
    x_hat, inv = normalize((x.reshape(-1, I) @ U.T).reshape(T, B, U.shape[0]), G)
    p = x_hat * gain_x
    if b is not None:
        p += b
    return p, x_hat, inv


def input_part_backward(d_p, x, x_hat, inv, U, gain_x, G: int, need_dx: bool = True):
    """(dx, dU, dgain_x, db) from dL/dp (T, B, G*H) of p = LN(x U^T; gain_x, b)."""
    flat = d_p.reshape(-1, d_p.shape[-1])
    dgain_x = (flat * x_hat.reshape(flat.shape)).sum(axis=0)  # dL/dgain = sum d_p * x^
    db = flat.sum(axis=0)  # dL/dshift = sum d_p
    d_ax = normalize_backward(flat * gain_x, x_hat.reshape(flat.shape), inv.reshape(-1, G, 1), G)
    dU = d_ax.T @ x.reshape(-1, x.shape[-1])  # dU = sum_t d(x U^T)^T x_t
    dx = (d_ax @ U).reshape(x.shape) if need_dx else None  # dL/dx_t = d(x U^T)_t U
    return dx, dU, dgain_x, db
