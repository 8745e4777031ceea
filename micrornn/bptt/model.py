"""Analytic loss and gradients of a whole SequenceModel, for every cell kind and direction count.

The stack, layer l = 0..L-1, direction d = 0 (left to right) and, when bidirectional, d = 1
(right to left: the same layer routine run on the time-reversed input, its output flipped back):

    out_l = [states of direction 0 | states of direction 1]     (T, B, D*H), the input of layer l+1
    logits_t = out_{L-1, t} V^T + c,  L = sum_t sum_batch CE(softmax(logits_t), y_t)

Backward: the head gives dL/dout_{L-1}; each direction takes its half (flipped in time for d = 1),
runs its cell kind's BPTT (``vanilla``, ``lstm``, ``gru``), and the two dL/dx it sends down the
layer add up (again flipping d = 1) into dL/dout_{l-1}. Initial states are indexed like PyTorch's
h_n: entry l*D + d.

A unidirectional vanilla RNN goes straight to ``vanilla.loss_and_grads`` (the tuned reference).
"""

import numpy as np

from micrornn.bptt import gru, lstm, vanilla
from micrornn.bptt.shared import _check_head, _check_shape, _check_targets, _float_dtype, head_loss_and_grads

CELL_KINDS = ("rnn", "lstm", "gru")
GATES = {"rnn": ("a",), "lstm": lstm.GATES, "gru": gru.GATES}


def _cell_kind(rnn):
    """The model's cell kind ('rnn' for models that predate cell kinds)."""
    kind = getattr(rnn, "cell_kind", "rnn")
    if kind not in CELL_KINDS:
        raise ValueError(f"model.rnn.cell_kind: expected one of {CELL_KINDS}, got {kind!r}")
    return kind


def _directions(rnn):
    """[(direction, prefix, cells)]: forward cells, and reverse cells when there are any."""
    out = [(0, "rnn.cells", list(rnn.cells))]
    reverse = list(getattr(rnn, "reverse_cells", None) or [])
    if reverse:
        if len(reverse) != len(out[0][2]):
            raise ValueError(f"model.rnn.reverse_cells: expected {len(out[0][2])} cells, got {len(reverse)}")
        out.append((1, "rnn.reverse_cells", reverse))
    return out


def _data(p):
    """A parameter's array (None stays None)."""
    return None if p is None else np.asarray(p.data)


def read_stack(model):
    """(kind, layers): layers[l][d] = (name prefix, {U, W, b, b_hn, nonlinearity}) as ndarrays."""
    rnn = model.rnn
    kind = _cell_kind(rnn)
    directions = _directions(rnn)
    if not directions[0][2]:
        raise ValueError("model.rnn.cells: expected at least one cell, got none")
    layers = []
    for l in range(len(directions[0][2])):
        per_direction = []
        for _, prefix, cells in directions:
            cell = cells[l]
            params = {"U": _data(cell.U), "W": _data(cell.W), "b": _data(cell.b),
                      "b_hn": _data(getattr(cell, "b_hn", None)),
                      "nonlinearity": getattr(cell, "nonlinearity", "tanh")}
            per_direction.append((f"{prefix}.{l}", params))
        layers.append(per_direction)
    return kind, layers


def _initial_states(kind, h0, n_states, B, H):
    """Split h0 into per-(layer, direction) states: a list of (h, c) (c None except for the LSTM)."""
    if h0 is None:
        return [(None, None)] * n_states
    if kind == "lstm":
        if not isinstance(h0, (tuple, list)) or len(h0) != 2:
            raise ValueError("h0: an LSTM takes a tuple (h0, c0) of arrays (D*num_layers, B, H), or None")
        h, c = (None if s is None else np.asarray(s) for s in h0)
    else:
        h, c = np.asarray(h0), None
    for name, s in (("h0", h), ("c0", c)):
        if s is not None:
            _check_shape(name, s, (n_states, B, H))
    return [(None if h is None else h[k], None if c is None else c[k]) for k in range(n_states)]


def _run_direction(kind, p, x, h0, c0):
    """One direction of one layer forward: (states (T, B, H), cache for the backward)."""
    if kind == "rnn":
        hs = vanilla.rnn_layer_forward(x, p["U"], p["W"], p["b"], h0, p["nonlinearity"])
        return hs, (x, hs, h0)
    if kind == "lstm":
        hs, cs, gates = lstm.lstm_layer_forward(x, p["U"], p["W"], p["b"], h0, c0)
        return hs, (x, hs, cs, gates, h0, c0)
    hs, gates, hns = gru.gru_layer_forward(x, p["U"], p["W"], p["b"], p["b_hn"], h0)
    return hs, (x, hs, gates, hns, h0)


def _back_direction(kind, p, cache, dhs):
    """One direction's BPTT: (dx, {param: grad}, {'h': gh, 'c': gc, 'gates': da}) in its own time order."""
    if kind == "rnn":
        x, hs, h0 = cache
        dx, dU, dW, db, _, gh = vanilla.rnn_layer_backward(dhs, x, hs, h0, p["U"], p["W"], p["nonlinearity"],
                                                           return_dh=True)
        delta = gh * vanilla._act_derivative(hs, p["nonlinearity"])  # dL/d(pre-activation)
        return dx, {"U": dU, "W": dW, "b": db}, {"h": gh, "c": None, "gates": delta}
    if kind == "lstm":
        x, hs, cs, gates, h0, c0 = cache
        dx, dU, dW, db, _, _, (gh, gc, da) = lstm.lstm_layer_backward(
            dhs, None, x, hs, cs, gates, h0, c0, p["U"], p["W"], return_hidden=True)
        H = hs.shape[2]
        line = np.zeros_like(gc)  # the part of dL/dc_t that arrives along the cell line: gc_{t+1} f_{t+1}
        line[:-1] = gc[1:] * gates[1:, :, H:2 * H]
        return dx, {"U": dU, "W": dW, "b": db}, {"h": gh, "c": gc, "c_line": line, "gates": da}
    x, hs, gates, hns, h0 = cache
    dx, dU, dW, db, db_hn, _, (gh, da) = gru.gru_layer_backward(dhs, x, hs, gates, hns, h0, p["U"], p["W"],
                                                                return_hidden=True)
    return dx, {"U": dU, "W": dW, "b": db, "b_hn": db_hn}, {"h": gh, "c": None, "gates": da}


def _flip(arr):
    """Reverse the time axis (None stays None)."""
    return None if arr is None else arr[::-1]


def _forward_stack(kind, layers, x, initial):
    """Every layer and direction forward: (per-layer caches, top output (T, B, D*H))."""
    caches, D = [], len(layers[0])
    for l, per_direction in enumerate(layers):
        outs, layer_caches = [], []
        for d, (prefix, p) in enumerate(per_direction):
            if l > 0 or d > 0:
                _check_shape(f"{prefix}.U", p["U"], ("G*H", x.shape[2]))
            h0, c0 = initial[l * D + d]
            hs, cache = _run_direction(kind, p, x if d == 0 else x[::-1], h0, c0)
            outs.append(hs if d == 0 else hs[::-1])
            layer_caches.append(cache)
        caches.append(layer_caches)
        x = outs[0] if D == 1 else np.concatenate(outs, axis=2)
    return caches, x


def _backward_stack(kind, layers, caches, d_out, grads):
    """BPTT down the stack from the top, filling grads; return {(layer, direction): step grads}."""
    step_grads = {}
    for l in range(len(layers) - 1, -1, -1):
        d_below = 0
        H = d_out.shape[2] // len(layers[l])
        for d, (prefix, p) in enumerate(layers[l]):
            dhs = d_out[..., d * H:(d + 1) * H]
            dx, param_grads, steps = _back_direction(kind, p, caches[l][d], dhs if d == 0 else dhs[::-1])
            d_below = d_below + (dx if d == 0 else dx[::-1])  # both directions read the same input
            for name, g in param_grads.items():
                if p[name] is not None:
                    grads[f"{prefix}.{name}"] = g
            step_grads[(l, d)] = steps if d == 0 else {k: _flip(v) for k, v in steps.items()}
        d_out = d_below
    return step_grads


def loss_and_grads(model, x, targets, h0=None, return_hidden_grads=False):
    """Summed cross-entropy and analytic gradients keyed like model.named_parameters(), any cell kind.

    x is ALWAYS time-major (T, B, I), whatever model.rnn.batch_first says; targets are int (T, B);
    h0 is None (zeros), an array (D*num_layers, B, H), or for the LSTM a tuple (h0, c0).
    return_hidden_grads=True adds a third item: for a unidirectional vanilla RNN the per-layer list
    of total dL/dh_t (T, B, H) as before, otherwise ``step_grads``' dictionary.
    """
    kind = _cell_kind(model.rnn)
    _check_no_dropout(model.rnn)
    if kind == "rnn" and len(_directions(model.rnn)) == 1:
        return vanilla.loss_and_grads(model, x, targets, h0, return_hidden_grads)
    loss, grads, steps = _general(model, x, targets, h0)
    return (loss, grads, steps) if return_hidden_grads else (loss, grads)


def _check_no_dropout(rnn):
    """Refuse a model whose layers would drop units at random (the analytic route has no dropout)."""
    if getattr(rnn, "dropout", 0) and getattr(rnn, "training", True):
        raise ValueError(f"model.rnn.dropout={rnn.dropout} in training mode is random: the analytic route "
                         "computes the model without dropout; call model.eval() first")


def step_grads(model, x, targets, h0=None):
    """{(layer, direction): {'h', 'c', 'gates'}} per-step totals dL/dh_t, dL/dc_t (LSTM, else None)
    and dL/d(gate pre-activation) (T, B, G*H), in the input's time order, for any SequenceModel.
    For the LSTM also 'c_line': the part of dL/dc_t that comes along the cell line from c_{t+1}."""
    _check_no_dropout(model.rnn)
    return _general(model, x, targets, h0)[2]


def _general(model, x, targets, h0):
    """The stack route for any cell kind and direction count: (loss, grads, step grads)."""
    kind, layers = read_stack(model)
    x, targets = np.asarray(x), np.asarray(targets)
    first = layers[0][0][1]
    _check_shape("x", x, ("T", "B", first["U"].shape[1]))
    T, B = x.shape[:2]
    H = first["W"].shape[1]
    V, c = _data(model.head.weight), _data(model.head.bias)
    _check_head(V, c, len(layers[0]) * H)
    _check_targets(targets, T, B, V.shape[0])
    initial = _initial_states(kind, h0, len(layers) * len(layers[0]), B, H)

    caches, top = _forward_stack(kind, layers, x, initial)
    loss, grads, d_top = head_loss_and_grads(top, V, c, targets)
    steps = _backward_stack(kind, layers, caches, d_top, grads)
    named = [(f"{prefix}.{name}", p[name]) for d in range(len(layers[0])) for prefix, p in (lay[d] for lay in layers)
             for name in ("U", "W", "b", "b_hn")] + [("head.weight", V), ("head.bias", c)]  # named_parameters() order
    grads = {name: grads[name].astype(_float_dtype(p), copy=False) for name, p in named if p is not None}
    return loss, grads, steps
