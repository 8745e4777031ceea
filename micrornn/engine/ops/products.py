"""Matrix products: matmul and matmul_add (``A @ B + C`` in one buffer, the RNN step's product)."""
from __future__ import annotations

import numpy as np

from micrornn.engine.ops.core import ProductGrad, defprimitive, total

def matmul_fwd(a, b):
    try:
        return a @ b, (a, b)
    except ValueError:
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("operands must have at least one axis") from None
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            inner = b.shape[-2 if b.ndim > 1 else 0]
            raise ValueError(f"inner dimensions differ ({a.shape[-1]} vs {inner})") from None
        raise ValueError("batch dimensions do not broadcast") from None

def matmul_vjp(g, saved, needs):
    # d(A@B)/dA = G B^T, d(A@B)/dB = A^T G (summed over batch axes by unbroadcast)
    a, b = saved
    if b.ndim == 1:  # b's axis first: for vector @ vector, g is 0-d and becomes (1, 1)
        b, g = b[:, None], np.expand_dims(g, -1)
    if a.ndim == 1:
        a, g = a[None, :], np.expand_dims(g, -2)
    ga = g @ (b.T if b.ndim == 2 else np.swapaxes(b, -1, -2)) if needs[0] else None  # .T: no Python-level call
    gb = None
    if needs[1]:
        if b.ndim == 2:  # a shared weight: all rows of all batches form one product, lazily
            rows = a.size // a.shape[-1] if a.shape[-1] else int(np.prod(a.shape[:-1]))  # -1 fails on 0-size
            gb = ProductGrad(a.reshape(rows, a.shape[-1]), g.reshape(rows, g.shape[-1]))
        else:
            gb = np.swapaxes(a, -1, -2) @ g
    return ga, gb

def _swap_last(t):
    """A Tensor with its last two axes swapped."""
    return t.transpose((*range(t.ndim - 2), t.ndim - 1, t.ndim - 2))

def matmul_dvjp(g, out, xs, saved, needs):
    # d(A@B)/dA = G B^T, d(A@B)/dB = A^T G; a 1-d operand gets a unit axis, dropped again after
    a, b = xs
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    if vector_b:
        b, g = b.reshape(-1, 1), g.reshape(g.shape + (1,))
    if vector_a:
        a, g = a.reshape(1, -1), g.reshape(g.shape[:-1] + (1,) + g.shape[-1:])
    ga = g @ _swap_last(b) if needs[0] else None
    gb = _swap_last(a) @ g if needs[1] else None
    if ga is not None and vector_a:
        ga = ga.reshape(ga.shape[:-2] + ga.shape[-1:])
    if gb is not None and vector_b:
        gb = gb.reshape(gb.shape[:-1])
    return ga, gb

def matmul_jvp(ts, saved, out):
    # d(A@B) = dA B + A dB
    (ta, tb), (a, b) = ts, saved
    return total(None if ta is None else ta @ b, None if tb is None else a @ tb)

def matmul_add_fwd(a, b, c):
    out, saved = matmul_fwd(a, b)
    try:
        out += c  # one buffer for the product and the sum; refuses an addend that would grow it
    except ValueError:
        raise ValueError(f"the addend {c.shape} does not broadcast to the product's shape {out.shape}") from None
    return out, saved

def matmul_add_vjp(g, saved, needs):
    # d(A@B + C) = the matmul rule for A and B, and dC = G
    ga, gb = matmul_vjp(g, saved, needs)
    return ga, gb, g

def matmul_add_dvjp(g, out, xs, saved, needs):
    # d(A@B + C) = the matmul rule for A and B, and dC = G
    ga, gb = matmul_dvjp(g, out, xs[:2], saved, needs[:2])
    return ga, gb, g

def matmul_add_jvp(ts, saved, out):
    # d(A@B + C) = dA B + A dB + dC
    return total(matmul_jvp(ts[:2], saved, out), ts[2])

MATMUL = defprimitive("matmul", matmul_fwd, matmul_vjp, fresh=True, dvjp=matmul_dvjp, jvp=matmul_jvp)
MATMUL_ADD = defprimitive("matmul_add", matmul_add_fwd, matmul_add_vjp, fresh=(True, True, False),
                          dvjp=matmul_add_dvjp, jvp=matmul_add_jvp)
