"""The autodiff engine: the primitive table, Tensor, the backward walker, transforms and Value.

It imports nothing else from micrornn; every other package builds on it.

    ops/               the primitive table by op family: each op's forward and gradient rules side by side
    tensor.py          Tensor, ``apply`` (runs a primitive and records it), stack/concatenate/where
    composites.py      Tensor methods built from primitives, with no backward of their own
    backward.py        the walker: topological order, gradient accumulation, engine state
    guard.py           saved arrays are read-only while their graph lives (the in-place guard)
    transforms.py      grad (any order) and hvp          forward.py   jvp (forward mode)
    function_transforms.py  value_and_grad, jacobian, hessian, vmap (built on grad, jvp, hvp)
    numpy_protocol.py  NumPy ufuncs and functions on Tensors
    creation.py        tensor(), zeros, ones, randn, arange    random.py   the seeded generator
    anomaly.py         detect_anomaly                    value.py     Value, the scalar engine
    habits.py          PyTorch spellings: cat, and dim=/keepdim= refused with the NumPy spelling
"""
from micrornn.engine import ops
from micrornn.engine.tensor import (Tensor, apply, is_grad_enabled, matmul_add, maximum, minimum, no_grad, scope,
                                    where)
from micrornn.engine import numpy_protocol  # noqa: F401  (installs Tensor.__array_ufunc__/__array_function__)
from micrornn.engine.habits import cat, concatenate, stack  # installs the dim=/keepdim= hints too
from micrornn.engine.creation import arange, ones, ones_like, randn, zeros, zeros_like
from micrornn.engine.transforms import grad, hvp
from micrornn.engine.forward import jvp
from micrornn.engine.function_transforms import hessian, jacobian, value_and_grad, vmap
from micrornn.engine.random import manual_seed
from micrornn.engine.anomaly import AnomalyError, detect_anomaly
from micrornn.engine.value import Value

__all__ = ["ops", "Tensor", "apply", "stack", "concatenate", "cat", "where", "maximum", "minimum", "matmul_add",
           "zeros", "ones", "zeros_like", "ones_like", "randn", "arange", "no_grad", "is_grad_enabled", "scope",
           "grad", "hvp", "jvp", "manual_seed", "detect_anomaly", "AnomalyError", "Value",
           "value_and_grad", "jacobian", "hessian", "vmap"]
