"""The state a character model carries from chunk to chunk, as plain arrays (what checkpoints hold),
and the occasional reset of some streams to a zero state."""
from __future__ import annotations

import numpy as np

__all__ = ["state_arrays", "reset_some_streams"]


def _map_state(state, fn):
    """fn applied to the state's array, or to each array of an LSTM's (h, c) tuple."""
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def state_arrays(h_n):
    """The final state of a chunk as plain arrays (an ndarray, or a tuple of them for the LSTM)."""
    return _map_state(h_n, lambda t: t.detach().data)


def reset_some_streams(state, probability, seed, step):
    """The carried state with each stream (batch column) zeroed with `probability`.

    The draw depends only on (seed, step), so a resumed run resets the same streams. Training on
    some chunks from a fresh state keeps the model good at starting from zero, as evaluation and
    sampling do; without it a model only ever sees a zero state at the start of an epoch.
    """
    if state is None or not probability:
        return state
    first = state[0] if isinstance(state, tuple) else state
    batch = first.shape[1]
    reset = np.random.default_rng([seed, 2, step]).random(batch) < probability
    if not reset.any():
        return state

    def zeroed(s):
        s = s.copy()
        s[:, reset] = 0
        return s
    return _map_state(state, zeroed)
