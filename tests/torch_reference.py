"""PyTorch's recurrent layers re-derived in NumPy for the tests (torch itself is not a dependency).

Written from the equations in PyTorch's documentation, with PyTorch's own parameters: separate
b_ih and b_hh, gate blocks i, f, g, o (LSTM) and r, z, n (GRU), keys weight_ih_l{k}[_reverse].
"""
import numpy as np


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def torch_rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, act=np.tanh):
    return act(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def torch_lstm_step(x, state, w_ih, w_hh, b_ih, b_hh):
    h, c = state
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = np.split(a, 4, axis=1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def torch_gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    xr, xz, xn = np.split(x @ w_ih.T + b_ih, 3, axis=1)
    hr, hz, hn = np.split(h @ w_hh.T + b_hh, 3, axis=1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1 - z) * n + z * h


STEPS = {"rnn": torch_rnn_step, "lstm": torch_lstm_step, "gru": torch_gru_step}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def torch_params(kind, I, H, L, D, rng):
    """PyTorch-style parameters {name: array} for an L-layer, D-direction layer."""
    G, p = GATES[kind] * H, {}
    for l in range(L):
        for d in range(D):
            sfx = f"_l{l}" + ("_reverse" if d else "")
            p["weight_ih" + sfx] = rng.uniform(-0.6, 0.6, (G, I if l == 0 else D * H))
            p["weight_hh" + sfx] = rng.uniform(-0.6, 0.6, (G, H))
            p["bias_ih" + sfx] = rng.uniform(-0.6, 0.6, G)
            p["bias_hh" + sfx] = rng.uniform(-0.6, 0.6, G)
    return p


def torch_forward(kind, p, x, L, D, h0=None, c0=None):
    """PyTorch's multi-layer (bi)directional recurrence: (output (T, B, D*H), h_n[, c_n])."""
    T, B, _ = x.shape
    H = p["weight_hh_l0"].shape[1]
    layer_in, h_n, c_n = x, [], []
    for l in range(L):
        outs = []
        for d in range(D):
            sfx = f"_l{l}" + ("_reverse" if d else "")
            args = [p[k + sfx] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            k = l * D + d
            h = np.zeros((B, H)) if h0 is None else h0[k]
            state = (h, np.zeros((B, H)) if c0 is None else c0[k]) if kind == "lstm" else h
            out = np.zeros((T, B, H))
            for t in (range(T - 1, -1, -1) if d else range(T)):
                state = STEPS[kind](layer_in[t], state, *args)
                out[t] = state[0] if kind == "lstm" else state
            outs.append(out)
            h_n.append(state[0] if kind == "lstm" else state)
            if kind == "lstm":
                c_n.append(state[1])
        layer_in = np.concatenate(outs, axis=2)
    result = (layer_in, np.stack(h_n))
    return result + ((np.stack(c_n),) if kind == "lstm" else ())
