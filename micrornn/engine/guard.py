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

What it costs: only arrays a user can reach are held (an op's inputs and output, and views); an
array the forward made for its VJP alone stays as it is. The data of an input node (h_t saved by
its tanh, W^T) is held once, by that node, not again by each op that saves it: a parent outlives
its children, and a backward through a child whose parent a backward already released is refused
before it reads anything (``topological_order``). So an unrolled RNN step holds one new array
(h_t), without the lock.

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


class Hold(list):
    """The arrays one graph node saved (held read-only); freeing it lets go of them.

    The node keeps it in ``_guard``: the walker releases the guards of the nodes it passed in one
    batch at the end of a backward; a node freed by Python lets go in ``__del__`` (at once, by
    reference counting)."""

    __slots__ = ()

    def __del__(self) -> None:
        if self:  # empty once release() let go of it
            release((self,))

    def __deepcopy__(self, memo):
        return None  # a copied node holds nothing: its copied saved arrays are its own

    def __reduce__(self):
        return type(None), ()  # pickled as None, for the same reason


def release(holds) -> None:
    """Let go of the arrays of many nodes under one lock (the walker's batch, or one freed node)."""
    with _lock:
        for h in holds:
            for a in h:
                entry = _held.get(id(a))
                if entry is None or entry[0] is not a:  # a shallow copy's second release: nothing left
                    continue
                entry[1] -= 1
                if not entry[1]:
                    if entry[2]:
                        _let_go(a, entry)
                    else:  # the common case, inline: no sources
                        del _held[id(a)]
                        try:
                            a.setflags(write=True)
                        except ValueError:  # a view whose owner another graph still holds
                            pass
            h.clear()


def hold(inputs, saved, output=None) -> Hold | None:
    """Make the ndarrays in ``saved`` (an op's saved value or tuple) read-only; ``inputs``: the op's
    input Tensors (a saved view of one also holds what it was made from); ``output``: its result.

    Only arrays a user can reach are held: the op's inputs and output, and views. An array the
    forward made for its VJP alone (softmax probabilities, a mask) is reachable only through the
    node and stays as it is. The data of an input node (h_t, W^T) is held once, by that node's own
    Hold: a parent outlives its children (Python frees a child first; a backward that passes a
    child passes its parents too, and one through a child whose parent was released is refused
    before it reads anything), so the next steps that save it again cost one identity check. A
    fresh output is held without the lock (no other thread can see it yet); the lock is taken
    only for the counts of arrays that can be shared."""
    kind = type(saved)
    if kind is np.ndarray:
        if saved is output:  # the op saved its fresh result (tanh, sigmoid, exp): the fast path
            for t in inputs:
                if t.data is saved:
                    break
            else:
                if id(saved) not in _held:  # else an array the forward returned again: counted below
                    if not saved.flags.writeable:  # read-only before any graph saw it: not ours
                        return None
                    _held[id(saved)] = [saved, 1, ()]
                    saved.setflags(write=False)  # setflags: a third of the cost of assigning flags.writeable
                    return Hold((saved,))
        arrays = (saved,)
    elif kind is tuple:
        arrays = saved
    else:  # an index, a shape: nothing to hold
        return None
    taken = shared = None
    for a in arrays:
        if type(a) is not np.ndarray:
            continue
        for t in inputs:
            if t.data is a:
                if t._op is not None:  # an input node's data: its own Hold covers it (or will)
                    own = t._guard
                    if not own or (own[0] is not a and not _contains(own, a)):
                        shared = [(t, a)] if shared is None else shared + [(t, a)]
                else:  # a leaf's data (a parameter): counted, the leaf outlives every graph
                    shared = [(None, a)] if shared is None else shared + [(None, a)]
                break
        else:
            if a is output and id(a) not in _held:  # a fresh result: only the node refers to it
                if a.flags.writeable:
                    _held[id(a)] = [a, 1, ()]
                    a.setflags(write=False)  # setflags: a third of the cost of assigning a.flags.writeable
                    if taken is None:
                        taken = Hold()
                    taken.append(a)
            elif a is output or a.base is not None:  # held elsewhere too, or a view a user may hold
                shared = [(None, a)] if shared is None else shared + [(None, a)]
    if shared is not None:
        with _lock:
            for t, a in shared:
                if _take(a, inputs):
                    if t is None:
                        if taken is None:
                            taken = Hold()
                        taken.append(a)
                    else:
                        if t._guard is None:
                            t._guard = Hold()
                        t._guard.append(a)
    return taken


def _contains(hold, a) -> bool:
    """Whether ``a`` itself (not an equal array) is in ``hold``."""
    for b in hold:
        if b is a:
            return True
    return False


def _take(a, inputs) -> bool:
    """One more hold of ``a`` (made read-only on the first); False for an array read-only before any
    graph saw it (not ours to give back). Called under the lock."""
    entry = _held.get(id(a))
    if entry is not None:
        entry[1] += 1
    elif a.flags.writeable:
        _held[id(a)] = [a, 1, _sources(a, inputs) if a.base is not None else ()]
        a.setflags(write=False)  # setflags: a third of the cost of assigning a.flags.writeable
    else:
        return False
    return True


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


def _sources(view, inputs) -> list:
    """Hold the arrays of the graph tensors a saved input view was made from (W.data for W.T):
    the tensors before it in the graph whose data shares the view's memory owner. (An output
    that is a view, h_t written into a row of a buffer, has none: view ops save no arrays.)"""
    stack = [t for t in inputs if t.data is view]
    if not stack:
        return ()
    owner, found, seen = _owner(view), [], set()
    while stack:
        for p in stack.pop()._parents or ():
            if id(p) in seen or _owner(p.data) is not owner:
                continue
            seen.add(id(p))
            stack.append(p)
            a = p.data
            entry = _held.get(id(a))
            if entry is not None:
                entry[1] += 1
            elif a.flags.writeable and a is not view:
                _held[id(a)] = [a, 1, ()]
                a.setflags(write=False)
            else:
                continue
            found.append(a)
    return found


def _owner(a):
    """The array that owns a's memory (NumPy points a view's base at the owner)."""
    base = a.base
    return base if isinstance(base, np.ndarray) else a


def _let_go(a, entry) -> None:
    """a's last hold is gone: its sources let go too, then a becomes writeable again."""
    del _held[id(a)]
    for source in entry[2]:
        source_entry = _held[id(source)]
        source_entry[1] -= 1
        if not source_entry[1]:
            _let_go(source, source_entry)
    try:
        a.setflags(write=True)
    except ValueError:  # a view whose owner another graph still holds: it stays read-only
        pass
