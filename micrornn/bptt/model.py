"""Analytic loss and gradients of a whole SequenceModel: the one model-level route of ``bptt``.

The stack, layer l = 0..L-1, direction d = 0 (left to right) and, when bidirectional, d = 1
(right to left: the same layer routine run on the time-reversed input, its output flipped back):

    out_l = [states of direction 0 | states of direction 1]     (T, B, D*H), the input of layer l+1
    logits_t = out_{L-1, t} V^T + c,  L = sum_t sum_batch CE(softmax(logits_t), y_t)

Backward: the head gives dL/dout_{L-1}; each direction takes its half (flipped in time for d = 1),
runs its cell kind's BPTT (``vanilla``, ``lstm``, ``gru``), and the two dL/dx it sends down the
layer add up (again flipping d = 1) into dL/dout_{l-1}. Initial states are indexed like PyTorch's
h_n: entry l*D + d.

With ``lengths`` (B,): steps t >= length are padding. Each layer keeps the state there (its
routine's mask), its output there is 0, only real steps enter the loss, and the reverse
direction reverses each sequence within its own length, so every number is the one the sequence
gives alone.
"""

import numpy as np

from micrornn.bptt import gru, gru_ln, lstm, lstm_ln, vanilla
from micrornn.bptt.shared import (_check_head, _check_shape, _check_targets, _float_dtype, check_lengths,
                                  head_loss_and_grads, length_mask, reverse_index)

GATES = {"rnn": ("a",), "lstm": lstm.GATES, "gru": gru.GATES}  # the row blocks of each kind's pre-activations
STATES = {"rnn": 1, "lstm": 2, "gru": 1}  # state entries: h, or (h, c)
_PARAMS = ("U", "W", "b", "b_hn", "gain_x", "gain_h", "gain_c", "bias_c")  # named_parameters() order
_LAYER_NORM = ("gain_x", "gain_h", "gain_c", "bias_c")  # a layer-norm cell's extra parameters


def _cell_kind(rnn):
    """The layer's cell kind, as its cells declare it ('rnn' for stand-ins that declare none)."""
    cells = list(getattr(rnn, "cells", None) or [])
    kind = getattr(cells[0], "kind", None) if cells else None
    kind = kind or getattr(rnn, "cell_kind", None) or "rnn"
    if kind not in GATES:
        raise ValueError(f"bptt: the analytic route knows the cell kinds {tuple(GATES)}, got {kind!r} "
                         f"({type(cells[0]).__name__ if cells else type(rnn).__name__})")
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
            params = {name: _data(getattr(cell, name, None)) for name in _PARAMS}
            params["nonlinearity"] = getattr(cell, "nonlinearity", "tanh")
            per_direction.append((f"{prefix}.{l}", params))
        layers.append(per_direction)
    return kind, layers


def _initial_states(kind, h0, n_states, B, H):
    """Split h0 into per-(layer, direction) states: a list of (h, c) (c None except for the LSTM)."""
    if h0 is None:
        return [(None, None)] * n_states
    if STATES[kind] == 2:
        if not isinstance(h0, (tuple, list)) or len(h0) != 2:
            raise ValueError("h0: an LSTM takes a tuple (h0, c0) of arrays (D*num_layers, B, H), or None")
        h, c = (None if s is None else np.asarray(s) for s in h0)
    else:
        h, c = np.asarray(h0), None
    for name, s in (("h0", h), ("c0", c)):
        if s is not None:
            _check_shape(name, s, (n_states, B, H))
    return [(None if h is None else h[k], None if c is None else c[k]) for k in range(n_states)]


def _run_direction(kind, p, x, h0, c0, mask):
    """One direction of one layer forward: (states (T, B, H), cache for the backward)."""
    if kind == "rnn":
        hs = vanilla.rnn_layer_forward(x, p["U"], p["W"], p["b"], h0, p["nonlinearity"], mask=mask)
        return hs, (x, hs, h0)
    if x.dtype.kind in "iu":  # index inputs stand for one-hot rows
        x = np.eye(p["U"].shape[1], dtype=_float_dtype(p["U"]))[x]
    if p["gain_x"] is not None:  # a layer-norm cell (lstm_ln, gru_ln)
        if kind == "lstm":
            hs, _, cache = lstm_ln.ln_lstm_layer_forward(x, p["U"], p["W"], p["b"], p["gain_x"], p["gain_h"],
                                                         p["gain_c"], p["bias_c"], h0, c0, mask=mask)
        else:
            hs, cache = gru_ln.ln_gru_layer_forward(x, p["U"], p["W"], p["b"], p["b_hn"], p["gain_x"], p["gain_h"],
                                                    h0, mask=mask)
        return hs, cache
    if kind == "lstm":
        hs, cs, gates = lstm.lstm_layer_forward(x, p["U"], p["W"], p["b"], h0, c0, mask=mask)
        return hs, (x, hs, cs, gates, h0, c0)
    hs, gates, hns = gru.gru_layer_forward(x, p["U"], p["W"], p["b"], p["b_hn"], h0, mask=mask)
    return hs, (x, hs, gates, hns, h0)


def _back_direction(kind, p, cache, dhs, mask, need_dx, want_steps):
    """One direction's BPTT: (dx, {param: grad}, {'h': gh, 'c': gc, 'gates': da} or None unless
    want_steps) in its own time order."""
    if kind == "rnn":
        x, hs, h0 = cache
        h0 = None if h0 is None else h0.astype(hs.dtype, copy=False)
        U, W = (p[k].astype(hs.dtype, copy=False) for k in ("U", "W"))
        dx, dU, dW, db, _, *gh = vanilla.layer_backward(dhs.astype(hs.dtype, copy=False), x, hs, h0, U, W,
                                                        p["nonlinearity"], return_dh=want_steps, need_dx=need_dx,
                                                        need_dh0=False, mask=mask)
        if not want_steps:
            return dx, {"U": dU, "W": dW, "b": db}, None
        gh = gh[0]
        delta = gh * vanilla._act_derivative(hs, p["nonlinearity"])  # dL/d(pre-activation)
        if mask is not None:
            delta *= mask[..., None]  # a padded step has no pre-activation in the graph
        return dx, {"U": dU, "W": dW, "b": db}, {"h": gh, "c": None, "gates": delta}
    if p["gain_x"] is not None:
        return _back_layer_norm(kind, p, cache, dhs, mask, need_dx)
    if kind == "lstm":
        x, hs, cs, gates, h0, c0 = cache
        dx, dU, dW, db, _, _, (gh, gc, da) = lstm.lstm_layer_backward(
            dhs, None, x, hs, cs, gates, h0, c0, p["U"], p["W"], return_hidden=True, mask=mask)
        H = hs.shape[2]
        line = np.zeros_like(gc)  # the part of dL/dc_t that arrives along the cell line: gc_{t+1} f_{t+1}
        line[:-1] = gc[1:] * gates[1:, :, H:2 * H]
        if mask is not None:  # from a padded step c_{t+1} = c_t: all of gc_{t+1} arrives
            line[:-1] = np.where(mask[1:, :, None], line[:-1], gc[1:])
        return dx, {"U": dU, "W": dW, "b": db}, {"h": gh, "c": gc, "c_line": line, "gates": da}
    x, hs, gates, hns, h0 = cache
    dx, dU, dW, db, db_hn, _, (gh, da) = gru.gru_layer_backward(dhs, x, hs, gates, hns, h0, p["U"], p["W"],
                                                                return_hidden=True, mask=mask)
    return dx, {"U": dU, "W": dW, "b": db, "b_hn": db_hn}, {"h": gh, "c": None, "gates": da}


def _back_layer_norm(kind, p, cache, dhs, mask, need_dx):
    """_back_direction for a layer-norm cell (the same step gradients; the gates are the normalized
    pre-activations)."""
    if kind == "lstm":
        grads, (gh, gc, da) = lstm_ln.ln_lstm_layer_backward(dhs, None, cache, p["U"], p["W"], p["gain_x"],
                                                             p["gain_h"], p["gain_c"], mask=mask, need_dx=need_dx)
        gates, H = cache[5], gh.shape[2]
        line = np.zeros_like(gc)  # gc_{t+1} f_{t+1}, as for the plain LSTM
        line[:-1] = gc[1:] * gates[1:, :, H:2 * H]
        if mask is not None:
            line[:-1] = np.where(mask[1:, :, None], line[:-1], gc[1:])
        steps = {"h": gh, "c": gc, "c_line": line, "gates": da}
    else:
        grads, (gh, da) = gru_ln.ln_gru_layer_backward(dhs, cache, p["U"], p["W"], p["gain_x"], p["gain_h"],
                                                       mask=mask, need_dx=need_dx)
        steps = {"h": gh, "c": None, "gates": da}
    names = ("U", "W", "b") + (("b_hn",) if kind == "gru" else ()) + _LAYER_NORM
    return grads["x"], {n: grads[n] for n in names if n in grads}, steps


class _Time:
    """How each direction reads time: d = 1 reverses every sequence (within its length when given)."""

    def __init__(self, T, lengths):
        self.mask = None if lengths is None else length_mask(lengths, T)
        self.index = None if lengths is None else reverse_index(lengths, T)

    def flip(self, arr, d):
        """arr (T, B, ...) in direction d's time order (its own inverse; None stays None)."""
        if arr is None or d == 0:
            return arr
        return arr[::-1] if self.index is None else arr[self.index]

    def zero_padding(self, arr):
        """arr (T, B, ...) with the padded steps set to 0 (a layer's output there)."""
        return arr if self.mask is None else arr * self.mask.reshape(self.mask.shape + (1,) * (arr.ndim - 2))


def _check_params(kind, prefix, p, input_size):
    """Each weight's shape against the layer's input size and its kind's gate blocks."""
    G, rows = len(GATES[kind]), "H" if kind == "rnn" else f"{len(GATES[kind])}H"
    _check_shape(f"{prefix}.U", p["U"], (rows, input_size) if input_size is not None else (rows, "I"))
    if p["U"].shape[0] % G:
        raise ValueError(f"{prefix}.U: expected {G}*hidden_size rows (blocks {', '.join(GATES[kind])}), "
                         f"got {p['U'].shape[0]}")
    GH = p["U"].shape[0]
    _check_shape(f"{prefix}.W", p["W"], (GH, GH // G))
    for name, shape in (("b", (GH,)), ("b_hn", (GH // G,))):
        if p[name] is not None:
            _check_shape(f"{prefix}.{name}", p[name], shape)


def _forward_stack(kind, layers, x, initial, time):
    """Every layer and direction forward: (per-layer caches, top output (T, B, D*H))."""
    caches, D = [], len(layers[0])
    for l, per_direction in enumerate(layers):
        outs, layer_caches = [], []
        for d, (prefix, p) in enumerate(per_direction):
            _check_params(kind, prefix, p, x.shape[2] if x.ndim == 3 else None)
            h0, c0 = initial[l * D + d]
            hs, cache = _run_direction(kind, p, time.flip(x, d), h0, c0, time.mask)
            outs.append(time.flip(hs, d))
            layer_caches.append(cache)
        caches.append(layer_caches)
        x = time.zero_padding(outs[0] if D == 1 else np.concatenate(outs, axis=2))
    return caches, x


def _backward_stack(kind, layers, caches, d_out, grads, time, want_steps):
    """BPTT down the stack from the top, filling grads; return {(layer, direction): step grads}."""
    step_grads = {}
    for l in range(len(layers) - 1, -1, -1):
        d_out, d_below = time.zero_padding(d_out), 0
        H = d_out.shape[2] // len(layers[l])
        for d, (prefix, p) in enumerate(layers[l]):
            dhs = time.flip(d_out[..., d * H:(d + 1) * H], d)
            dx, param_grads, steps = _back_direction(kind, p, caches[l][d], dhs, time.mask, l > 0, want_steps)
            if l > 0:
                d_below = d_below + time.flip(dx, d)  # both directions read the same input
            for name, g in param_grads.items():
                if p[name] is not None:
                    grads[f"{prefix}.{name}"] = g
            if steps is not None:
                step_grads[(l, d)] = {k: time.flip(v, d) for k, v in steps.items()}
        d_out = d_below
    return step_grads


def _check_no_dropout(rnn):
    """Refuse a model whose layers would drop units at random (the analytic route has no dropout)."""
    if getattr(rnn, "dropout", 0) and getattr(rnn, "training", True):
        raise ValueError(f"model.rnn.dropout={rnn.dropout} in training mode is random: the analytic route "
                         "computes the model without dropout; call model.eval() first")


def loss_and_grads(model, x, targets, h0=None, return_hidden_grads=False, lengths=None):
    """Summed cross-entropy and analytic gradients keyed like model.named_parameters(), any cell kind.

    x is ALWAYS time-major: floats (T, B, I) or integer indices (T, B) standing for one-hot rows,
    whatever model.rnn.batch_first says; targets are int (T, B); h0 is None (zeros), an array
    (D*num_layers, B, H), or for the LSTM a tuple (h0, c0); lengths (B,) or None (all T steps).
    return_hidden_grads=True adds a third item: per layer, the total dL/dh_t (T, B, D*H) reaching
    each state from above and from its neighbouring step (the directions side by side).
    Gradients have the dtype of their parameter.
    """
    loss, grads, steps, D = _route(model, x, targets, h0, lengths, return_hidden_grads)
    if not return_hidden_grads:
        return loss, grads
    layers = len(steps) // D
    hidden = [np.concatenate([steps[(l, d)]["h"] for d in range(D)], axis=2) if D > 1 else steps[(l, 0)]["h"]
              for l in range(layers)]
    return loss, grads, hidden


def step_grads(model, x, targets, h0=None, lengths=None):
    """{(layer, direction): {'h', 'c', 'gates'}} per-step totals dL/dh_t, dL/dc_t (LSTM, else None)
    and dL/d(gate pre-activation) (T, B, G*H), in the input's time order, for any SequenceModel.
    For the LSTM also 'c_line': the part of dL/dc_t that comes along the cell line from c_{t+1}."""
    return _route(model, x, targets, h0, lengths, True)[2]


def _route(model, x, targets, h0, lengths, want_steps):
    """The stack route for any cell kind and direction count: (loss, grads, step grads, directions)."""
    _check_no_dropout(model.rnn)
    for name in ("input_dropout", "output_dropout"):  # the model's own dropout, around the stack
        if getattr(model, name, 0) and getattr(model, "training", True):
            raise ValueError(f"model.{name}={getattr(model, name)} in training mode is random: the analytic route "
                             "computes the model without dropout; call model.eval() first")
    kind, layers = read_stack(model)
    x, targets = np.asarray(x), np.asarray(targets)
    first = layers[0][0][1]
    _check_shape("x", x, ("T", "B") if x.dtype.kind in "iu" else ("T", "B", "I"))
    if x.ndim == 3:
        _check_shape("x", x, x.shape[:2] + first["U"].shape[1:])
    T, B = x.shape[:2]
    H = first["W"].shape[1]
    time = _Time(T, None if lengths is None else check_lengths(lengths, T, B))
    V, c = _data(model.head.weight), _data(model.head.bias)
    _check_head(V, c, len(layers[0]) * H)
    _check_targets(targets, T, B, V.shape[0], time.mask)
    initial = _initial_states(kind, h0, len(layers) * len(layers[0]), B, H)

    caches, top = _forward_stack(kind, layers, x, initial, time)
    loss, grads, d_top = head_loss_and_grads(top, V, c, targets, time.mask)
    steps = _backward_stack(kind, layers, caches, d_top, grads, time, want_steps)
    named = [(f"{prefix}.{name}", p[name]) for d in range(len(layers[0])) for prefix, p in (lay[d] for lay in layers)
             for name in _PARAMS] + [("head.weight", V), ("head.bias", c)]  # named_parameters() order
    grads = {name: grads[name].astype(_float_dtype(p), copy=False) for name, p in named if p is not None}
    return loss, grads, steps, len(layers[0])
