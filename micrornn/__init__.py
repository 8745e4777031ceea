"""micrornn: reverse-mode autodiff on scalars and NumPy tensors, and RNNs whose BPTT falls out of the graph.

``import micrornn`` loads the engine, ``nn`` and the analytic ``bptt``; ``viz``, ``train``,
``interop``, ``cli`` and ``bench`` load when first used (``micrornn.viz.draw_graph`` just works).
"""
import importlib
import sys

from micrornn.engine import (AnomalyError, Tensor, Value, apply, arange, concatenate, detect_anomaly, grad, hvp,
                             is_grad_enabled, jvp, manual_seed, maximum, minimum, no_grad, ones, ones_like, ops,
                             randn, scope, stack, where, zeros, zeros_like)
from micrornn.engine.creation import tensor  # the function; the module is micrornn.engine.tensor
from micrornn.engine import cat, hessian, jacobian, value_and_grad, vmap  # PyTorch's cat; function transforms
from micrornn.engine.compile import compile  # noqa: A004, F401  (micrornn.compile, as jax.jit / torch.compile)
from micrornn import nn, bptt
from micrornn.nn import functional, optim
from micrornn.check import gradcheck, gradgradcheck, numerical_grad

# The public module names of the primitive table, the functional API and the optimizers, wherever
# their files live: `from micrornn.ops import defprimitive` and `import micrornn.functional` work.
for _name, _module in {"ops": ops, "functional": functional, "optim": optim}.items():
    sys.modules[f"{__name__}.{_name}"] = _module

_LAZY = ("viz", "train", "interop", "cli", "bench")


def __getattr__(name: str):
    """Load the heavier packages (drawing, training, interop, CLI, benchmarks) on first use."""
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'micrornn' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["Value", "Tensor", "tensor", "apply", "stack", "concatenate", "where", "maximum", "minimum",
           "zeros", "ones", "zeros_like", "ones_like", "randn", "arange",
           "no_grad", "is_grad_enabled", "scope", "functional", "ops", "grad", "hvp", "jvp",
           "gradcheck", "gradgradcheck", "numerical_grad",
           "manual_seed", "nn", "bptt", "optim", "viz", "interop", "train", "detect_anomaly", "AnomalyError",
           "cat", "value_and_grad", "jacobian", "hessian", "vmap"]
