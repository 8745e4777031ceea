"""The primitive table: each op's forward and its gradient rules side by side, split by op family.

A forward takes NumPy arrays (and keyword attributes) and returns ``(out, saved)``; ``saved`` is
what the VJP needs. A VJP takes the output gradient ``g``, ``saved`` and ``needs`` (one bool per
input: does that input want a gradient?) and returns one gradient per input (None where not
needed). A gradient may have the output's broadcast shape: the engine sums it back to the input's
shape in one place (``unbroadcast``). Two lazy gradient kinds let the engine accumulate cheaply:
``IndexGrad`` (a slice or gather's gradient, added in place into one buffer) and ``ProductGrad``
(a weight gradient ``a^T g``, batched with the other uses of the same weight before it is formed).

Higher order (``grad(..., create_graph=True)``) runs each op's ``dvjp(g, out, xs, saved, needs)``,
the VJP written with Tensor ops on the Tensors ``g``, ``out`` and inputs ``xs``, so the gradient is
itself a graph. Where the VJP's own code serves Tensors too, the op says ``shared=``: what the VJP
reads in place of ``saved`` on Tensors ("saved" constants, the "input", the "inputs", the
"output"). Forward mode (``jvp``) needs the output's tangent from the inputs' tangents: a ``linear``
op applies itself to them; an ``elementwise`` op (diagonal Jacobian, its own transpose) applies its
VJP to them; any other op gives ``jvp(ts, saved, out)`` (ts: ndarrays, None where no tangent).

    core.py         Primitive, defprimitive, PRIMITIVES, IndexGrad, ProductGrad, unbroadcast
    elementwise.py  add sub neg mul div pow exp log tanh sigmoid relu abs maximum minimum where clip astype
    reductions.py   sum max logsumexp, broadcast_to (sum's gradient as a Tensor op)
    shape.py        reshape transpose getitem stack concatenate, scatter_add (getitem's gradient)
    products.py     matmul matmul_add
"""
from micrornn.engine.ops.core import (PRIMITIVES, IndexGrad, Primitive, ProductGrad, defprimitive,  # noqa: F401
                                      record, total, unbroadcast)
from micrornn.engine.ops.elementwise import *  # noqa: F403  (each op's rules and its constant, e.g. EXP)
from micrornn.engine.ops.products import *  # noqa: F403
from micrornn.engine.ops.reductions import *  # noqa: F403
from micrornn.engine.ops.shape import *  # noqa: F403
from micrornn.engine.ops.shape import add_gradient, formed  # noqa: F401  (create_graph's gradient sums)
