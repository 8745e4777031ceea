"""micrornn: reverse-mode autodiff on scalars and NumPy tensors, and RNNs whose BPTT falls out of the graph."""
from micrornn.scalar import Value
from micrornn.tensor import (Tensor, concatenate, is_grad_enabled, maximum, minimum, no_grad, scope, stack,
                             where)
from micrornn.creation import arange, ones, ones_like, randn, zeros, zeros_like
from micrornn import functional, fused_ops, gradcheck, ops
from micrornn.higher import grad, hvp
from micrornn.forward import jvp
from micrornn.random import manual_seed
from micrornn.anomaly import AnomalyError, detect_anomaly
from micrornn import nn, bptt, optim, viz, interop

__version__ = "0.1.0"
__all__ = ["Value", "Tensor", "tensor", "stack", "concatenate", "where", "maximum", "minimum",
           "zeros", "ones", "zeros_like", "ones_like", "randn", "arange",
           "no_grad", "is_grad_enabled", "scope",
           "functional", "fused_ops", "gradcheck", "ops", "grad", "hvp", "jvp",
           "manual_seed", "nn", "bptt", "optim", "viz", "interop", "detect_anomaly", "AnomalyError"]
