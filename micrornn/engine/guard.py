"""The in-place guard: every array a live graph saved for its backward is read-only.

A VJP reads the arrays its forward saved (an input, the output, a mask). If one of them changed
between forward and backward (an optimizer step, ``W.data *= -1``, ``h.data[...] = 0``), the
gradient would mix old and new values. So ``apply`` marks each saved array not writeable and the
write fails at once, where it is made. The array is writeable again when no live graph holds it:
a backward without retain_graph releases each node it passes, and a graph that is dropped
releases its nodes as Python frees them (``Hold.__del__``).

An array saved by several nodes or graphs is counted, and made writeable by the last one. A saved
view (``W.T``, ``h[t]``, ``out.reshape(...)``) also holds the arrays of the tensors it was made
from in the graph (``W.data``), since writing those would change the view.

A raw NumPy write into a held array (``W.data *= -1``, ``W.numpy()[0] = 1``) fails at the write
with NumPy's "read-only" ValueError. Updates made through micrornn (optimizer steps,
``load_state_dict``, ``p -= x`` under no_grad) go through ``writable_data``: a held parameter
gets a fresh copy of its data first, so the update succeeds and a graph still alive keeps the
values it saved (a later backward through it, after ``retain_graph=True``, is the gradient of the
computation it recorded, at the old values). Arrays the graph did not record (a view made outside
micrornn's ops) are not covered.
"""
from __future__ import annotations

import threading

import numpy as np

_held: dict = {}  # id(array) -> [array, number of holds, arrays held on its behalf (a view's sources)]
_lock = threading.RLock()  # reentrant: a Hold freed by the collector may be released inside hold()


class Hold:
    """The arrays one graph node saved, read-only until it is released (or freed)."""

    __slots__ = ("arrays",)

    def __init__(self, arrays):
        self.arrays = arrays

    def release(self) -> None:
        """Let go of every array; the last holder makes an array writeable again."""
        arrays, self.arrays = self.arrays, ()
        if arrays:
            with _lock:
                for a in arrays:
                    _let_go(a)

    __del__ = release


def hold(inputs, saved) -> Hold | None:
    """Make the ndarrays in ``saved`` (an op's saved value or tuple) read-only; ``inputs``: the op's
    input Tensors (a saved view of one also holds what it was made from)."""
    kind = type(saved)
    if kind is np.ndarray:
        arrays = (saved,)
    elif kind is tuple:
        arrays = [a for a in saved if type(a) is np.ndarray]
        if not arrays:  # shapes, axes, indices: nothing to hold
            return None
    else:
        return None
    with _lock:
        taken = [a for a in arrays if _take(a, inputs)]
    return Hold(taken) if taken else None


def is_held(array) -> bool:
    """Whether a live graph holds this array read-only."""
    return id(array) in _held


def writable_data(tensor) -> np.ndarray:
    """tensor.data, first replaced by a writeable copy if a live graph holds it read-only.

    Updates made through micrornn (an optimizer step, ``load_state_dict``, ``p -= x`` under
    no_grad) write into the returned array: the graph keeps the values it saved, so a later
    backward through it is the gradient of the computation it recorded, never a mix."""
    data = tensor.data
    if id(data) in _held:
        tensor.data = data = data.copy()
    return data


def _take(a, inputs) -> bool:
    """Count one more hold on a; True if a is now held (False: it was read-only already)."""
    entry = _held.get(id(a))
    if entry is not None:
        entry[1] += 1
        return True
    if not a.flags.writeable:  # read-only before any graph saw it: not ours to release
        return False
    sources = _sources(a, inputs) if a.base is not None else ()
    a.flags.writeable = False
    _held[id(a)] = [a, 1, sources]
    return True


def _sources(view, inputs) -> list:
    """Hold the arrays of the graph tensors a saved input view was made from (W.data for W.T):
    the tensors before it in the graph whose data shares the view's memory owner. (An output
    that is a view, h_t written into a row of a buffer, has none: view ops save no arrays.)"""
    owner = _owner(view)
    start = next((t for t in inputs if t.data is view), None)
    found, stack, seen = [], [start] if start is not None else [], set()
    while stack:
        t = stack.pop()
        for p in t._parents or ():
            if id(p) in seen or _owner(p.data) is not owner:
                continue
            seen.add(id(p))
            stack.append(p)
            if p.data is not view and _take_plain(p.data):
                found.append(p.data)
    return found


def _take_plain(a) -> bool:
    """_take without looking for sources (they are being collected by the caller)."""
    entry = _held.get(id(a))
    if entry is not None:
        entry[1] += 1
        return True
    if not a.flags.writeable:
        return False
    a.flags.writeable = False
    _held[id(a)] = [a, 1, ()]
    return True


def _owner(a):
    """The array that owns a's memory (NumPy points a view's base at the owner)."""
    base = a.base
    return base if isinstance(base, np.ndarray) else a


def _let_go(a) -> None:
    """One hold less on a; at none, its sources and then a itself become writeable again."""
    entry = _held.get(id(a))
    if entry is None:
        return
    entry[1] -= 1
    if entry[1]:
        return
    del _held[id(a)]
    for source in entry[2]:
        _let_go(source)
    try:
        a.flags.writeable = True
    except ValueError:  # a view whose owner another graph still holds: it stays read-only
        pass
