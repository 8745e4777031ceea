"""Analytic forward pass and backpropagation through time for a stacked vanilla RNN.

Plain NumPy with no imports from the rest of micrornn: this module is the independent
reference that the autodiff engine is checked against, and the performance yardstick.

Math, batch-major per step (rows are batch items), layer l, step t:

    pre_t = x_t U^T + h_{t-1} W^T + b        h_t = act(pre_t)       act in {tanh, relu}
    o_t   = h_t V^T + c                      L   = sum_t sum_batch CE(softmax(o_t), y_t)

Backward, with g_t = dL/dh_t in total (from above AND from step t+1):

    g_t = dhs_t + delta_{t+1} W              delta_t = act'(h_t) * g_t
"""

import numpy as np

from micrornn.bptt.shared import (_arrays, _as, _check_head, _check_shape, _check_targets, _float_dtype,
                                   head_loss_and_grads)

NONLINEARITIES = ("tanh", "relu")


# ----------------------------------------------------------------------------- validation

def _check_nonlinearity(nonlinearity):
    """Raise ValueError unless nonlinearity is a supported name."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}")


def _check_layer_args(x, U, W, b, h0, prefix=""):
    """Validate one layer's input sequence, weights and initial state; return (T, B, I, H)."""
    _check_shape(prefix + "U", U, ("H", "I"))
    H, I = U.shape
    _check_shape(prefix + "W", W, (f"H={H}", f"H={H}") if W.ndim != 2 else (H, H))
    if b is not None:
        _check_shape(prefix + "b", b, (H,))
    _check_shape("x", x, ("T", "B", f"I={I}") if x.ndim != 3 else (x.shape[0], x.shape[1], I))
    T, B = x.shape[:2]
    if h0 is not None:
        _check_shape("h0", h0, (B, H))
    return T, B, I, H


# ----------------------------------------------------------------------------- one layer

def _activate_inplace(pre, nonlinearity):
    """Apply the nonlinearity to pre in place."""
    if nonlinearity == "tanh":
        np.tanh(pre, out=pre)
    else:
        np.maximum(pre, 0, out=pre)


def _act_derivative(hs, nonlinearity):
    """act'(pre) for all steps at once, written in terms of the output h = act(pre)."""
    if nonlinearity == "tanh":
        deriv = hs * hs
        np.subtract(1, deriv, out=deriv)  # tanh'(pre) = 1 - h^2
        return deriv
    return hs > 0  # relu'(pre) = [h > 0]


def rnn_layer_forward(x, U, W, b, h0, nonlinearity="tanh"):
    """States h_1..h_T (T, B, H) of one RNN layer over x (T, B, I); h0 None means zeros."""
    _check_nonlinearity(nonlinearity)
    x, U, W, b, h0 = _arrays(x, U, W, b, h0)
    T, B, I, H = _check_layer_args(x, U, W, b, h0)
    dtype = _float_dtype(x, U, W, b, h0)
    x, U, W, b, h0 = (_as(a, dtype) for a in (x, U, W, b, h0))

    hs = (x.reshape(-1, I) @ U.T).reshape(T, B, H)  # input projection of every step at once
    if b is not None:
        hs += b
    recur = np.empty((B, H), dtype=dtype)
    h_prev = h0
    for t in range(T):
        step = hs[t]  # contiguous view, filled in place
        if h_prev is not None:
            np.matmul(h_prev, W.T, out=recur)
            step += recur
        _activate_inplace(step, nonlinearity)
        h_prev = step
    return hs


def rnn_layer_backward(dhs, x, hs, h0, U, W, nonlinearity="tanh", return_dh=False):
    """BPTT through one layer: (dx, dU, dW, db, dh0), plus total dL/dh_t (T, B, H) if return_dh."""
    _check_nonlinearity(nonlinearity)
    dhs, x, hs, h0, U, W = _arrays(dhs, x, hs, h0, U, W)
    T, B, I, H = _check_layer_args(x, U, W, None, h0)
    _check_shape("hs", hs, (T, B, H))
    _check_shape("dhs", dhs, (T, B, H))
    dtype = _float_dtype(dhs, x, hs, h0, U, W)
    dhs, x, hs, h0, U, W = (_as(a, dtype) for a in (dhs, x, hs, h0, U, W))

    deltas, dh0, dh_total = _delta_recursion(dhs, hs, W, nonlinearity, return_dh)
    flat = deltas.reshape(-1, H)
    dU = flat.T @ x.reshape(-1, I)  # dL/dU = sum_t delta_t^T x_t
    dW = _recurrent_weight_grad(deltas, hs, h0)  # dL/dW = sum_t delta_t^T h_{t-1}
    db = flat.sum(axis=0)  # dL/db = sum_t sum_batch delta_t
    dx = (flat @ U).reshape(T, B, I)  # dL/dx_t = delta_t U
    if return_dh:
        return dx, dU, dW, db, dh0, dh_total
    return dx, dU, dW, db, dh0


def _delta_recursion(dhs, hs, W, nonlinearity, return_dh):
    """Run delta_t = act'(h_t) * (dhs_t + delta_{t+1} W) back in time; return (deltas, dh0, dh)."""
    T, B, H = hs.shape
    deriv = _act_derivative(hs, nonlinearity)
    deltas = np.empty_like(hs)
    dh_total = np.empty_like(hs) if return_dh else None
    carry = np.zeros((B, H), dtype=hs.dtype)  # delta_{t+1} W: what reaches h_t from step t+1
    for t in range(T - 1, -1, -1):
        grad_h = dh_total[t] if return_dh else deltas[t]
        np.add(dhs[t], carry, out=grad_h)  # g_t = dL/dh_t (from above) + delta_{t+1} W
        np.multiply(grad_h, deriv[t], out=deltas[t])  # delta_t = act'(h_t) * g_t
        np.matmul(deltas[t], W, out=carry)  # dL/dh_{t-1} through W = delta_t W
    return deltas, carry, dh_total  # after the loop carry = delta_1 W = dL/dh0


def _recurrent_weight_grad(deltas, hs, h0):
    """dW = sum_t delta_t^T h_{t-1}: one product over steps 2..T plus the h0 term (no concat)."""
    H = hs.shape[2]
    dW = deltas[1:].reshape(-1, H).T @ hs[:-1].reshape(-1, H)
    if h0 is not None and len(deltas):
        dW += deltas[0].T @ h0  # step 1 sees h_0
    return dW


# ----------------------------------------------------------------------------- model level

def _read_model(model):
    """Pull (U, W, b, nonlinearity) per layer and (V, c) out of a SequenceModel as ndarrays."""
    layers = []
    for cell in model.rnn.cells:
        b = None if cell.b is None else np.asarray(cell.b.data)
        layers.append((np.asarray(cell.U.data), np.asarray(cell.W.data), b, cell.nonlinearity))
    c = None if model.head.bias is None else np.asarray(model.head.bias.data)
    return layers, np.asarray(model.head.weight.data), c


def _forward_layers(layers, x, h0):
    """Run every layer; return the list of input sequences and the list of state sequences."""
    inputs, states = [], []
    for l, (U, W, b, nonlinearity) in enumerate(layers):
        _check_nonlinearity(nonlinearity)
        if l > 0:  # layer 0's input size is checked against x below
            _check_shape(f"rnn.cells.{l}.U", U, ("H", x.shape[2]) if U.ndim == 2 else ("H", "I"))
        _check_layer_args(x, U, W, b, None, prefix=f"rnn.cells.{l}.")
        hs = rnn_layer_forward(x, U, W, b, None if h0 is None else h0[l], nonlinearity)
        inputs.append(x)
        states.append(hs)
        x = hs
    return inputs, states


def loss_and_grads(model, x, targets, h0=None, return_hidden_grads=False):
    """Summed cross-entropy and analytic gradients keyed like model.named_parameters().

    x is ALWAYS time-major (T, B, I), whatever model.rnn.batch_first says; targets are int (T, B);
    h0 is None (zeros) or (num_layers, B, H). With return_hidden_grads=True a third item is
    returned: per layer, the total dL/dh_t (T, B, H) reaching each state from above and from t+1.
    Gradients have the dtype of their parameter.
    """
    layers, V, c = _read_model(model)
    if not layers:
        raise ValueError("model.rnn.cells: expected at least one cell, got none")
    x, targets = np.asarray(x), np.asarray(targets)
    _check_shape("x", x, ("T", "B", "I"))
    T, B = x.shape[:2]
    if h0 is not None:
        h0 = np.asarray(h0)
        _check_shape("h0", h0, (len(layers), B, layers[0][0].shape[0]))

    _check_head(V, c, layers[-1][0].shape[0])
    _check_targets(targets, T, B, V.shape[0])

    inputs, states = _forward_layers(layers, x, h0)
    loss, grads, dhs = head_loss_and_grads(states[-1], V, c, targets)
    hidden_grads = _backward_layers(layers, inputs, states, h0, dhs, grads, return_hidden_grads)

    grads = _match_param_dtypes(grads, layers, V, c)
    if return_hidden_grads:
        return loss, grads, hidden_grads
    return loss, grads


def _backward_layers(layers, inputs, states, h0, dhs, grads, return_dh):
    """BPTT down the stack from the top, filling grads; return per-layer total dL/dh_t or None."""
    hidden_grads = [None] * len(layers)
    for l in range(len(layers) - 1, -1, -1):
        U, W, b, nonlinearity = layers[l]
        out = rnn_layer_backward(dhs, inputs[l], states[l], None if h0 is None else h0[l],
                                 U, W, nonlinearity, return_dh=return_dh)
        dhs, dU, dW, db = out[:4]  # this layer's dx is dL/dhs of layer l-1
        grads[f"rnn.cells.{l}.U"], grads[f"rnn.cells.{l}.W"] = dU, dW
        if b is not None:
            grads[f"rnn.cells.{l}.b"] = db
        if return_dh:
            hidden_grads[l] = out[5]
    return hidden_grads if return_dh else None


def _match_param_dtypes(grads, layers, V, c):
    """Cast each gradient to its parameter's float dtype, ordered like named_parameters()."""
    params = {}
    for l, (U, W, b, _) in enumerate(layers):
        params.update({f"rnn.cells.{l}.U": U, f"rnn.cells.{l}.W": W, f"rnn.cells.{l}.b": b})
    params.update({"head.weight": V, "head.bias": c})
    return {name: grads[name].astype(_float_dtype(p), copy=False)
            for name, p in params.items() if p is not None}
