"""Analytic forward pass and backpropagation through time for a stacked vanilla RNN.

Plain NumPy with no imports from the rest of micrornn: this module is the independent
reference that the autodiff engine is checked against, and the performance yardstick.

Math, batch-major per step (rows are batch items), layer l, step t:

    pre_t = x_t U^T + h_{t-1} W^T + b        h_t = act(pre_t)       act in {tanh, relu}
    o_t   = h_t V^T + c                      L   = sum_t sum_batch CE(softmax(o_t), y_t)

Backward, with g_t = dL/dh_t in total (from above AND from step t+1):

    g_t = dhs_t + delta_{t+1} W              delta_t = act'(h_t) * g_t

With a mask (T, B) (False from a sequence's length on), a masked step keeps the state:
h_t = h_{t-1}, so its delta is 0 and g_t passes to h_{t-1} unchanged.
"""

import numpy as np

from micrornn.bptt.shared import _arrays, _as, _check_shape, _float_dtype, _skipped

NONLINEARITIES = ("tanh", "relu")


# ----------------------------------------------------------------------------- validation

def _check_nonlinearity(nonlinearity):
    """Raise ValueError unless nonlinearity is a supported name."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}")


def _check_layer_args(x, U, W, b, h0, prefix=""):
    """Validate one layer's input sequence (floats (T, B, I) or indices (T, B)), weights and
    initial state; return (T, B, I, H)."""
    _check_shape(prefix + "U", U, ("H", "I"))
    H, I = U.shape
    _check_shape(prefix + "W", W, (f"H={H}", f"H={H}") if W.ndim != 2 else (H, H))
    if b is not None:
        _check_shape(prefix + "b", b, (H,))
    if _is_indices(x):
        _check_shape("x", x, ("T", "B"))
        if x.size and (x.min() < 0 or x.max() >= I):
            raise ValueError(f"x: index inputs must lie in [0, {I}), got values in [{x.min()}, {x.max()}]")
    else:
        _check_shape("x", x, ("T", "B", f"I={I}") if x.ndim != 3 else (x.shape[0], x.shape[1], I))
    T, B = x.shape[:2]
    if h0 is not None:
        _check_shape("h0", h0, (B, H))
    return T, B, I, H


def _is_indices(x):
    """True for integer inputs: x (T, B) holds class indices, standing for one-hot rows."""
    return x.dtype.kind in "iu"


def _one_hot_rows(indices, size, dtype):
    """The (N, size) one-hot rows of flat indices (N,)."""
    rows = np.zeros((indices.size, size), dtype)
    rows[np.arange(indices.size), indices.reshape(-1)] = 1
    return rows


# ----------------------------------------------------------------------------- one layer

def _relu_inplace(pre, out):
    return np.maximum(pre, 0, out=out)


_ACTIVATE_INPLACE = {"tanh": np.tanh, "relu": _relu_inplace}  # act(pre, out=pre)


def _act_derivative(hs, nonlinearity):
    """act'(pre) for all steps at once, written in terms of the output h = act(pre)."""
    if nonlinearity == "tanh":
        deriv = hs * hs
        np.subtract(1, deriv, out=deriv)  # tanh'(pre) = 1 - h^2
        return deriv
    return hs > 0  # relu'(pre) = [h > 0]


def step_equations(pre, nonlinearity, tanh, relu):
    """One step written once for any array type (ndarrays, or engine Tensors for the fused layer's
    replay): h_t = act(pre_t), pre_t = x_t U^T + h_{t-1} W^T + b."""
    return tanh(pre) if nonlinearity == "tanh" else relu(pre)


def rnn_layer_forward(x, U, W, b, h0, nonlinearity="tanh", mask=None):
    """States h_1..h_T (T, B, H) of one RNN layer over x (T, B, I), or over indices x (T, B)
    standing for one-hot rows; h0 None means zeros; mask (T, B) False where a step is padding."""
    _check_nonlinearity(nonlinearity)
    x, U, W, b, h0 = _arrays(x, U, W, b, h0)
    _check_layer_args(x, U, W, b, h0)
    dtype = _float_dtype(U, W, b, h0) if _is_indices(x) else _float_dtype(x, U, W, b, h0)
    return layer_forward(x if _is_indices(x) else _as(x, dtype), *(_as(a, dtype) for a in (U, W, b, h0)),
                         nonlinearity, mask)


def layer_forward(x, U, W, b, h0, nonlinearity, mask=None):
    """rnn_layer_forward without the checks: arrays of one float dtype (x may be indices)."""
    T, B = x.shape[:2]
    H = U.shape[0]
    if _is_indices(x):  # one gather of [U^T + b] rows
        table = U.T + b if b is not None else U.T
        hs = np.take(table, x, axis=0)
    else:  # input projection of every step at once
        hs = (x.reshape(T * B, -1) @ U.T).reshape(T, B, H)
        if b is not None:
            hs += b
    activate, W_T = _ACTIVATE_INPLACE[nonlinearity], np.ascontiguousarray(W.T)  # BLAS runs faster on a copy
    recur = np.empty((B, H), dtype=hs.dtype)
    if T == 0:
        return hs
    if h0 is not None:
        np.matmul(h0, W_T, out=recur)
        np.add(hs[0], recur, out=hs[0])
    activate(hs[0], out=hs[0])
    for t in range(1, T):
        np.matmul(hs[t - 1], W_T, out=recur)
        np.add(hs[t], recur, out=hs[t])
        activate(hs[t], out=hs[t])
        skip = _skipped(mask, t)
        if skip is not None:
            hs[t][skip] = hs[t - 1][skip]  # a padded step keeps the state
    return hs


def rnn_layer_backward(dhs, x, hs, h0, U, W, nonlinearity="tanh", return_dh=False, mask=None):
    """BPTT through one layer: (dx, dU, dW, db, dh0), plus total dL/dh_t (T, B, H) if return_dh.

    For index inputs x (T, B), dx is None (indices have no gradient)."""
    _check_nonlinearity(nonlinearity)
    dhs, x, hs, h0, U, W = _arrays(dhs, x, hs, h0, U, W)
    T, B, I, H = _check_layer_args(x, U, W, None, h0)
    _check_shape("hs", hs, (T, B, H))
    _check_shape("dhs", dhs, (T, B, H))
    dtype = _float_dtype(dhs, hs, h0, U, W) if _is_indices(x) else _float_dtype(dhs, x, hs, h0, U, W)
    if not _is_indices(x):
        x = _as(x, dtype)
    dhs, hs, h0, U, W = (_as(a, dtype) for a in (dhs, hs, h0, U, W))
    return layer_backward(dhs, x, hs, h0, U, W, nonlinearity, return_dh, mask=mask)


def layer_backward(dhs, x, hs, h0, U, W, nonlinearity, return_dh=False, need_dx=True, need_dh0=True, mask=None):
    """rnn_layer_backward without the checks; dx (and dh0) are None when not needed."""
    T, B, H = hs.shape
    deltas, dh0, dh_total = _delta_recursion(dhs, hs, W, nonlinearity, return_dh, need_dh0, mask)
    flat = deltas.reshape(-1, H)
    if _is_indices(x):
        dU = flat.T @ _one_hot_rows(x, U.shape[1], flat.dtype)  # dL/dU = sum_t delta_t^T onehot(x_t)
        dx = None
    else:
        dU = flat.T @ x.reshape(T * B, -1)  # dL/dU = sum_t delta_t^T x_t
        dx = (flat @ U).reshape(x.shape) if need_dx else None  # dL/dx_t = delta_t U
    dW = _recurrent_weight_grad(deltas, hs, h0)  # dL/dW = sum_t delta_t^T h_{t-1}
    db = flat.sum(axis=0)  # dL/db = sum_t sum_batch delta_t
    if return_dh:
        return dx, dU, dW, db, dh0, dh_total
    return dx, dU, dW, db, dh0


def _delta_recursion(dhs, hs, W, nonlinearity, return_dh, need_dh0=True, mask=None):
    """Run delta_t = act'(h_t) * (dhs_t + delta_{t+1} W) back in time; return (deltas, dh0, dh).

    The deltas are written over act'(h_t), which each step reads once."""
    T, B, H = hs.shape
    deltas = _act_derivative(hs, nonlinearity)
    if deltas.dtype != hs.dtype:  # relu's mask: a float buffer to hold the deltas
        deltas = deltas.astype(hs.dtype)
    dh_total = np.empty_like(hs) if return_dh else None
    carry = np.empty((B, H), dtype=hs.dtype)  # delta_{t+1} W: what reaches h_t from step t+1
    for t in range(T - 1, -1, -1):
        if t == T - 1:
            grad_h = dhs[t]  # nothing comes from a step T+1
            if return_dh:
                dh_total[t] = grad_h
        else:
            grad_h = dh_total[t] if return_dh else carry
            np.add(dhs[t], carry, out=grad_h)  # g_t = dL/dh_t (from above) + delta_{t+1} W
        np.multiply(grad_h, deltas[t], out=deltas[t])  # delta_t = act'(h_t) * g_t
        skip = _skipped(mask, t)
        if skip is not None:  # h_t = h_{t-1} on a padded step: delta 0, g_t goes to h_{t-1} as it is
            passed = grad_h[skip]
            deltas[t][skip] = 0
        if t or need_dh0:
            np.matmul(deltas[t], W, out=carry)  # dL/dh_{t-1} through W = delta_t W
            if skip is not None:
                carry[skip] = passed
    return deltas, (carry if need_dh0 else None), dh_total  # carry = delta_1 W = dL/dh0


def _recurrent_weight_grad(deltas, hs, h0):
    """dW = sum_t delta_t^T h_{t-1}: one product over steps 2..T plus the h0 term (no concat)."""
    H = hs.shape[2]
    dW = deltas[1:].reshape(-1, H).T @ hs[:-1].reshape(-1, H)
    if h0 is not None and len(deltas):
        dW += deltas[0].T @ h0  # step 1 sees h_0
    return dW
