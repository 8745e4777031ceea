"""The autodiff engine: the primitive table, Tensor, the backward walker, transforms and Value.

It imports nothing else from micrornn; every other package builds on it.

    ops.py             the primitive table: each op's forward and its gradient rules side by side
    tensor.py          Tensor, ``apply`` (runs a primitive and records it), stack/concatenate/where
    composites.py      Tensor methods built from primitives, with no backward of their own
    backward.py        the walker: topological order, gradient accumulation, engine state
    transforms.py      grad (any order) and hvp          forward.py   jvp (forward mode)
    numpy_protocol.py  NumPy ufuncs and functions on Tensors
    creation.py        tensor(), zeros, ones, randn, arange    random.py   the seeded generator
    anomaly.py         detect_anomaly                    value.py     Value, the scalar engine
"""
from micrornn.engine import ops
from micrornn.engine.tensor import (Tensor, apply, concatenate, is_grad_enabled, matmul_add, maximum, minimum,
                                    no_grad, scope, stack, where)
from micrornn.engine import numpy_protocol  # noqa: F401  (installs Tensor.__array_ufunc__/__array_function__)
from micrornn.engine.creation import arange, ones, ones_like, randn, zeros, zeros_like
from micrornn.engine.transforms import grad, hvp
from micrornn.engine.forward import jvp
from micrornn.engine.random import manual_seed
from micrornn.engine.anomaly import AnomalyError, detect_anomaly
from micrornn.engine.value import Value

__all__ = ["ops", "Tensor", "apply", "stack", "concatenate", "where", "maximum", "minimum", "matmul_add",
           "zeros", "ones", "zeros_like", "ones_like", "randn", "arange", "no_grad", "is_grad_enabled", "scope",
           "grad", "hvp", "jvp", "manual_seed", "detect_anomaly", "AnomalyError", "Value"]
