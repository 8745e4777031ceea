"""The contenders: one seeded case per size and dtype, and a zero-argument training step for each."""
from __future__ import annotations

import importlib.util

import numpy as np

from micrornn import bptt
from micrornn.bench.options import CLASSES, REFERENCE, SIZES
from micrornn.nn import SequenceModel


def make_case(size: str, dtype: str, seed: int = 0):
    """(model, fused_model, indices (T, B), dense one-hot (T, B, 65), targets (T, B)) for one size."""
    T, B, H = SIZES[size]
    rng = np.random.default_rng(seed)
    model = SequenceModel(CLASSES, H, CLASSES, dtype=np.dtype(dtype), rng=seed)
    fused = SequenceModel(CLASSES, H, CLASSES, fused=True, dtype=np.dtype(dtype), rng=seed)
    fused.load_state_dict(model.state_dict())
    indices = rng.integers(0, CLASSES, size=(T, B))
    targets = rng.integers(0, CLASSES, size=(T, B))
    dense = np.zeros((T, B, CLASSES), dtype=dtype)
    np.put_along_axis(dense, indices[..., None], 1, axis=-1)
    return model, fused, indices, dense, targets


def engine_step(model, x, targets):
    """A zero-argument training step on the engine: zero grads, summed loss, backward; returns the loss."""
    params = model.parameters()  # found once, as an optimizer does

    def step():
        for p in params:  # what optimizer.zero_grad() does
            p.grad = None
        loss, _ = model.loss(x, targets, reduction="sum")
        loss.backward()
        return loss.item()
    return step


def reference_step(model, dense, targets):
    """The analytic route on the same model and data; returns the loss."""
    def step():
        return bptt.loss_and_grads(model, dense, targets)[0]
    return step


def torch_available() -> bool:
    """True when PyTorch can be imported (it is only ever an optional comparison)."""
    return importlib.util.find_spec("torch") is not None


def torch_step(model, indices, targets):
    """PyTorch eager autograd over the engine's per-step ops: gather U^T rows, loop tanh(p_t + h W^T), head, CE."""
    import torch

    params = {name: torch.tensor(p.data, requires_grad=True) for name, p in model.named_parameters()}
    U, W, b = params["rnn.cells.0.U"], params["rnn.cells.0.W"], params["rnn.cells.0.b"]
    V, c = params["head.weight"], params["head.bias"]
    idx, tgt = torch.as_tensor(indices, dtype=torch.long), torch.as_tensor(targets.reshape(-1), dtype=torch.long)

    def step():
        for p in params.values():
            p.grad = None
        projected = U.t()[idx] + b
        h, states = None, []
        for t in range(idx.shape[0]):
            h = torch.tanh(projected[t] if h is None else projected[t] + h @ W.t())
            states.append(h)
        logits = torch.stack(states) @ V.t() + c
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, CLASSES), tgt, reduction="sum")
        loss.backward()
        return loss.item()
    return step


def contenders_for(size: str, dtype: str, which: str = "numpy") -> dict:
    """Contender key -> zero-argument step, all on the same parameters and data (seeded, so a
    subprocess rebuilds the very same case). ``which``: "numpy" (reference and micrornn) or "torch"
    (the torch step, plus the reference for the loss check only)."""
    model, fused, indices, dense, targets = make_case(size, dtype)
    steps = {REFERENCE: reference_step(model, dense, targets)}
    if which == "torch":
        steps["torch"] = torch_step(model, indices, targets)
    else:
        steps.update({"unrolled": engine_step(model, indices, targets),
                      "unrolled_dense": engine_step(model, dense, targets),
                      "fused": engine_step(fused, indices, targets)})
    return steps

