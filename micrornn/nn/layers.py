"""Linear and Embedding layers."""
from __future__ import annotations

import numpy as np

from micrornn.nn.module import Module, Parameter
from micrornn.nn.sizes import check_array_memory
from micrornn.engine.random import default_rng
from micrornn.engine.tensor import Tensor, as_tensor, matmul_add


def check_size(name: str, value) -> int:
    """A positive integer size, or a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def uniform(rng, bound: float, shape, dtype) -> np.ndarray:
    """Samples uniform in [-bound, bound]."""
    check_array_memory(shape, np.float64)  # drawn in float64: a clear error, not NumPy's MemoryError
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Linear(Module):
    """y = x W^T + b with ``weight`` (out, in) and ``bias`` (out,)."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float64, rng=None):
        self.in_features = check_size("in_features", in_features)
        self.out_features = check_size("out_features", out_features)
        rng, bound = default_rng(rng), 1.0 / np.sqrt(self.in_features)
        self.weight = Parameter(uniform(rng, bound, (self.out_features, self.in_features), dtype))
        self.bias = Parameter(uniform(rng, bound, (self.out_features,), dtype)) if bias else None

    def forward(self, x) -> Tensor:
        """Apply to the last axis of x (any leading axes)."""
        x = as_tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input with last axis {self.in_features}, got shape {x.shape}")
        if self.bias is None:
            return x @ self.weight.T
        return matmul_add(x, self.weight.T, self.bias)  # x W^T + b as one node


class Embedding(Module):
    """Rows of ``weight`` (num_embeddings, embedding_dim) looked up by integer index."""

    def __init__(self, num_embeddings, embedding_dim, dtype=np.float64, rng=None):
        self.num_embeddings = check_size("num_embeddings", num_embeddings)
        self.embedding_dim = check_size("embedding_dim", embedding_dim)
        self.weight = Parameter(default_rng(rng).standard_normal(
            (self.num_embeddings, self.embedding_dim)).astype(dtype))

    def forward(self, indices) -> Tensor:
        """weight[indices]: a gather whose gradient scatter-adds into the rows used."""
        indices = np.asarray(getattr(indices, "data", indices))
        if indices.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be integers, got dtype {indices.dtype}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_embeddings):
            raise ValueError(f"Embedding: indices must lie in 0..{self.num_embeddings - 1}, "
                             f"got min {indices.min()} and max {indices.max()}")
        return self.weight[indices]
