"""The contenders: one seeded case per size and dtype, and a zero-argument training step for each.

Every step computes the same thing from the same parameters and data: forward, the softmax
cross-entropy summed over time and batch, backward; it returns the loss (a guard that all of them
agree). torch and JAX are imported only inside their own steps (they are never dependencies).
"""
from __future__ import annotations

import importlib.util
from collections import namedtuple

import numpy as np

from micrornn import bptt
from micrornn.engine.compile import compile as compile_fn
from micrornn.bench.floor import RNNFloor
from micrornn.bench.mgu import MGU, MGU_NAMES, MGUFloor
from micrornn.bench.options import CLASSES, CONTENDERS, FLOOR, SIZES
from micrornn.nn import SequenceModel

Case = namedtuple("Case", "model fused indices dense targets cell", defaults=("rnn",))
PARAMETER_NAMES = ("rnn.cells.0.U", "rnn.cells.0.W", "rnn.cells.0.b", "head.weight", "head.bias")


def make_case(size: str, dtype: str, seed: int = 0, cell: str = "rnn") -> Case:
    """Unrolled and fused models with equal parameters, indices (T, B), their one-hot rows, targets.
    ``cell="mgu"``: the MGU user cell of bench/mgu.py, which has no fused layer (``fused`` is None)."""
    T, B, H = SIZES[size]
    rng = np.random.default_rng(seed)
    if cell == "mgu":
        model = SequenceModel(CLASSES, H, CLASSES, dtype=np.dtype(dtype), rng=seed,
                              cell=lambda i, h: MGU(i, h, rng=seed))
        fused = None
    else:
        model = SequenceModel(CLASSES, H, CLASSES, dtype=np.dtype(dtype), rng=seed, cell=cell)
        fused = SequenceModel(CLASSES, H, CLASSES, fused=True, dtype=np.dtype(dtype), rng=seed, cell=cell)
        fused.load_state_dict(model.state_dict())
    indices = rng.integers(0, CLASSES, size=(T, B))
    targets = rng.integers(0, CLASSES, size=(T, B))
    dense = np.zeros((T, B, CLASSES), dtype=dtype)
    np.put_along_axis(dense, indices[..., None], 1, axis=-1)
    return Case(model, fused, indices, dense, targets, cell)


def parameter_arrays(model, names=PARAMETER_NAMES) -> list:
    """U, W, b, V, c of a one-layer SequenceModel as ndarrays (or the parameters ``names`` lists)."""
    named = dict(model.named_parameters())
    return [named[name].data for name in names]


def floor_step(case: Case):
    """The hand-written NumPy floor (buffers allocated here, once). For LSTM and GRU models the floor
    is micrornn.bptt's hand-written NumPy LSTM/GRU routines (not a separately tightened step); for the
    MGU it is the hand-written NumPy MGU step of bench/mgu.py."""
    if case.cell == "mgu":
        return MGUFloor(*parameter_arrays(case.model, MGU_NAMES), case.indices, case.targets).step
    if case.model.rnn.cell_kind != "rnn":
        return lambda: bptt.loss_and_grads(case.model, case.dense, case.targets)[0]
    return RNNFloor(*parameter_arrays(case.model), case.indices, case.targets).step


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


def compiled_step(model, x, targets):
    """engine_step with the loss traced once by micrornn.compile and replayed afterwards."""
    params = model.parameters()
    loss_fn = compile_fn(lambda x, targets: model.loss(x, targets, reduction="sum")[0])

    def step():
        for p in params:
            p.grad = None
        loss = loss_fn(x, targets)
        loss.backward()
        return loss.item()
    return step


def bptt_step(case: Case):
    """micrornn.bptt.loss_and_grads, the analytic route users compare against (index inputs, as the floor)."""
    def step():
        return bptt.loss_and_grads(case.model, case.indices, case.targets)[0]
    return step


def available(module: str) -> bool:
    """True when ``module`` can be imported (torch and JAX are only ever optional comparisons)."""
    return importlib.util.find_spec(module) is not None


def torch_steps(case: Case) -> dict:
    """torch nn.RNN + nn.Linear on one-hot rows, and torch eager autograd over the engine's per-step ops."""
    import torch

    dtype = torch.float64 if case.model.head.weight.dtype == np.float64 else torch.float32
    if case.model.rnn.cell_kind != "rnn":
        return {"torch_rnn": _torch_gated_step(case, torch, dtype)}
    U, W, b, V, c = (torch.tensor(a, requires_grad=True) for a in parameter_arrays(case.model))
    idx = torch.as_tensor(case.indices, dtype=torch.long)
    tgt = torch.as_tensor(case.targets.reshape(-1), dtype=torch.long)
    H = W.shape[0]
    rnn = torch.nn.RNN(CLASSES, H, nonlinearity="tanh").to(dtype)
    head = torch.nn.Linear(H, CLASSES).to(dtype)
    with torch.no_grad():
        for mine, theirs in ((U, rnn.weight_ih_l0), (W, rnn.weight_hh_l0), (b, rnn.bias_ih_l0),
                             (V, head.weight), (c, head.bias)):
            theirs.copy_(mine)
        rnn.bias_hh_l0.zero_()
    dense = torch.as_tensor(case.dense)
    module_params = list(rnn.parameters()) + list(head.parameters())

    def module_step():
        for p in module_params:
            p.grad = None
        out, _ = rnn(dense)
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, CLASSES), tgt, reduction="sum")
        loss.backward()
        return loss.item()

    def unrolled_step():
        for p in (U, W, b, V, c):
            p.grad = None
        projected = U.t()[idx] + b  # gather rows of [U^T + b], as the engine does
        h, states = None, []
        for t in range(idx.shape[0]):
            h = torch.tanh(projected[t] if h is None else projected[t] + h @ W.t())
            states.append(h)
        logits = torch.stack(states) @ V.t() + c
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, CLASSES), tgt, reduction="sum")
        loss.backward()
        return loss.item()
    return {"torch_rnn": module_step, "torch_unrolled": unrolled_step}


def _torch_gated_step(case: Case, torch, dtype):
    """torch nn.LSTM / nn.GRU + nn.Linear on one-hot rows, weights loaded through micrornn.interop."""
    from micrornn.interop import torch_state_dict

    kind, H = case.model.rnn.cell_kind, case.model.rnn.hidden_size
    layer = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(CLASSES, H).to(dtype)
    head = torch.nn.Linear(H, CLASSES).to(dtype)
    state = {k: torch.as_tensor(v) for k, v in torch_state_dict(case.model).items()}
    layer.load_state_dict({k[len("rnn."):]: v for k, v in state.items() if k.startswith("rnn.")})
    head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    dense, tgt = torch.as_tensor(case.dense), torch.as_tensor(case.targets.reshape(-1), dtype=torch.long)
    params = list(layer.parameters()) + list(head.parameters())

    def step():
        for p in params:
            p.grad = None
        out, _ = layer(dense)
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, CLASSES), tgt, reduction="sum")
        loss.backward()
        return loss.item()
    return step


def jax_step(case: Case):
    """JAX: jit(value_and_grad) of a lax.scan over the steps (float64 needs JAX_ENABLE_X64=1 set before import)."""
    import jax
    import jax.numpy as jnp

    params = [jnp.asarray(a) for a in parameter_arrays(case.model)]
    if params[0].dtype != case.model.head.weight.dtype:
        raise RuntimeError(f"JAX made {params[0].dtype} arrays: start it with JAX_ENABLE_X64=1 for float64")
    idx, tgt = jnp.asarray(case.indices), jnp.asarray(case.targets)
    B, H = case.indices.shape[1], params[1].shape[0]

    def loss_fn(params, idx, tgt):
        U, W, b, V, c = params
        projected = (U.T + b)[idx]

        def cell(h, a_t):
            h = jnp.tanh(a_t + h @ W.T)
            return h, h
        _, hs = jax.lax.scan(cell, jnp.zeros((B, H), U.dtype), projected)
        logits = hs @ V.T + c
        picked = jnp.take_along_axis(logits, tgt[..., None], axis=-1)[..., 0]
        return jnp.sum(jax.nn.logsumexp(logits, axis=-1) - picked)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))

    def step():
        loss, grads = value_and_grad(params, idx, tgt)
        jax.block_until_ready(grads)
        return float(loss)
    return step


def contenders_for(size: str, dtype: str, group: str = "numpy", cell: str = "rnn") -> dict:
    """Contender key -> zero-argument step for one process ``group`` ("numpy", "torch" or "jax"),
    the floor first, all on the same seeded parameters and data, for one ``cell`` kind."""
    case = make_case(size, dtype, cell=cell)
    steps = {FLOOR: floor_step(case)}
    if group == "numpy":
        if cell == "rnn":
            steps["bptt"] = bptt_step(case)
        steps["unrolled"] = engine_step(case.model, case.indices, case.targets)
        if case.fused is not None:
            steps["fused"] = engine_step(case.fused, case.indices, case.targets)
        steps["compiled"] = compiled_step(case.model, case.indices, case.targets)
    elif group == "torch":
        if cell != "mgu":  # torch has no MGU to compare with
            steps.update(torch_steps(case))
    elif group == "jax":
        if cell == "rnn":
            steps["jax"] = jax_step(case)
    else:
        raise ValueError(f"contenders_for: unknown group {group!r}")
    assert all(name in CONTENDERS for name in steps)
    return steps
