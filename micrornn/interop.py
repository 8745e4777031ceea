"""Weights in PyTorch's layout: export a model's parameters (or gradients) under the key names of
``torch.nn.RNN`` / ``LSTM`` / ``GRU``, and load such a dict back. NumPy only: torch is never imported.

    sd = torch_state_dict(model)                 # {"rnn.weight_ih_l0": ndarray, ..., "head.bias": ...}
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    load_torch_state_dict(model, torch_model.state_dict())   # and back

Keys: ``weight_ih_l{k}`` (U), ``weight_hh_l{k}`` (W), ``bias_ih_l{k}``, ``bias_hh_l{k}``, with a
``_reverse`` suffix for the second direction; a SequenceModel prefixes them with ``rnn.`` and adds
``head.weight`` and ``head.bias``; a single cell uses ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``.
PyTorch keeps two biases per gate where micrornn keeps their sum: export writes the sum into
bias_ih and zeros into bias_hh (for the GRU, bias_hh = [0, 0, b_hn], since b_hn sits inside r * (...));
import adds them back. Both directions are exact.
"""
from __future__ import annotations

import warnings

import numpy as np

from micrornn.engine.guard import writable_data
from micrornn.engine.tensor import Tensor
from micrornn.nn.cells import CELLS

__all__ = ["torch_state_dict", "load_torch_state_dict", "save_safetensors", "load_safetensors"]


def _has_torch_layout(cell) -> bool:
    """A built-in cell of the registry (PyTorch has a layout for those only)."""
    return CELLS.get(getattr(cell, "kind", None)) is type(cell)


def _cells(module) -> list:
    """[(key prefix, key suffix, cell)] for a SequenceModel, a recurrent layer or a single cell."""
    found = _all_cells(module)
    for _, _, cell in found:
        if getattr(cell, "layer_norm", False):
            raise TypeError(f"interop: PyTorch's nn.{cell.kind.upper()} has no layer norm, so a "
                            f"{type(cell).__name__} with layer_norm=True has no PyTorch layout")
    return found


def _all_cells(module) -> list:
    """_cells before the layer-norm refusal."""
    if hasattr(module, "rnn") and hasattr(module, "head"):
        return [(f"rnn.{p}", s, c) for p, s, c in _all_cells(module.rnn)]
    if hasattr(module, "cells") and hasattr(module, "num_layers") and hasattr(module, "num_directions"):
        found = [("", f"_l{l}" + ("_reverse" if d else ""), module.cell_at(l, d))
                 for l in range(module.num_layers) for d in range(module.num_directions)]
        for _, _, cell in found:
            if not _has_torch_layout(cell):
                raise TypeError(f"interop: PyTorch has no layout for a {type(cell).__name__}; "
                                "only RNN, LSTM and GRU cells have one")
        return found
    if _has_torch_layout(module):
        return [("", "", module)]
    raise TypeError(f"interop: expected a SequenceModel, an RNN/LSTM/GRU layer or an RNN/LSTM/GRU cell, "
                    f"got {type(module).__name__}")


def _value(param, name, grad):
    """A copy of a parameter's data, or of its gradient (a clear error when there is none)."""
    if not grad:
        return param.data.copy()
    if param.grad is None:
        raise ValueError(f"torch_state_dict(grad=True): {name} has no gradient; run backward first")
    return np.array(param.grad, dtype=param.dtype)


def _export_cell(cell, grad) -> dict:
    """{torch key stem: array} of one cell (weights, and biases when the cell has them)."""
    out = {"weight_ih": _value(cell.U, "U", grad), "weight_hh": _value(cell.W, "W", grad)}
    if cell.b is None:
        return out
    b, H = _value(cell.b, "b", grad), cell.hidden_size
    out["bias_ih"] = b
    if cell.kind == "gru":
        b_hn = _value(cell.b_hn, "b_hn", grad)
        # r, z: dL/db_hh = dL/db_ih = dL/db (they enter as a sum); n: b_hh's n block is b_hn
        head = b[:2 * H].copy() if grad else np.zeros(2 * H, dtype=b.dtype)
        out["bias_hh"] = np.concatenate([head, b_hn])
    else:  # b = b_ih + b_hh: both get the gradient of b; the value goes to b_ih
        out["bias_hh"] = b.copy() if grad else np.zeros_like(b)
    return out


def torch_state_dict(module, grad=False) -> dict:
    """The module's parameters (grad=True: their gradients) as {PyTorch key: ndarray}."""
    out = {}
    for prefix, suffix, cell in _cells(module):
        for stem, array in _export_cell(cell, grad).items():
            out[f"{prefix}{stem}{suffix}"] = array
    head = getattr(module, "head", None) if hasattr(module, "rnn") else None
    if head is not None:
        out["head.weight"] = _value(head.weight, "head.weight", grad)
        if head.bias is not None:
            out["head.bias"] = _value(head.bias, "head.bias", grad)
    return out


def _as_array(value) -> np.ndarray:
    """An ndarray from an ndarray, a micrornn Tensor, a torch tensor (duck-typed) or a nested list."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor, without importing torch
        value = value.detach()
        value = value.cpu() if hasattr(value, "cpu") else value
        return value.numpy()
    return np.asarray(value)


def _import_cell(cell, arrays) -> list:
    """[(parameter, new value)] for one cell from its {torch key stem: array}."""
    H = cell.hidden_size
    pairs = [(cell.U, arrays["weight_ih"]), (cell.W, arrays["weight_hh"])]
    if cell.b is None:
        return pairs
    b_ih, b_hh = arrays["bias_ih"], arrays["bias_hh"]
    if cell.kind == "gru":  # b_r, b_z = b_ih + b_hh; b_n = b_in; b_hn = b_hh's n block
        b = b_ih + np.concatenate([b_hh[:2 * H], np.zeros(H, dtype=b_hh.dtype)])
        return pairs + [(cell.b, b), (cell.b_hn, b_hh[2 * H:])]
    return pairs + [(cell.b, b_ih + b_hh)]


def load_torch_state_dict(module, state_dict) -> None:
    """Copy PyTorch-layout arrays into the module's parameters; on any missing, unexpected or
    misshaped key raise a ValueError listing them all and change nothing."""
    if not hasattr(state_dict, "items"):
        raise TypeError(f"load_torch_state_dict: expected a dict of arrays, got {type(state_dict).__name__}")
    expected = torch_state_dict(module)
    arrays = {k: _as_array(v) for k, v in state_dict.items()}
    problems = [f"missing {k}" for k in expected if k not in arrays]
    problems += [f"unexpected {k}" for k in arrays if k not in expected]
    problems += [f"wrong shape for {k}: expected {expected[k].shape}, got {arrays[k].shape}"
                 for k in expected if k in arrays and arrays[k].shape != expected[k].shape]
    problems += [f"{k} is not numeric (dtype {arrays[k].dtype})"
                 for k in expected if k in arrays and arrays[k].dtype.kind not in "fiu"]
    if problems:
        raise ValueError("load_torch_state_dict: " + "; ".join(problems) + " (nothing was loaded)")
    updates = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an overflow is found below, as a value, not raised halfway
        for prefix, suffix, cell in _cells(module):
            stems = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if cell.b is not None else ())
            cell_arrays = {s: arrays[f"{prefix}{s}{suffix}"].astype(np.float64) for s in stems}
            updates += _import_cell(cell, cell_arrays)
        head = getattr(module, "head", None) if hasattr(module, "rnn") else None
        if head is not None:
            updates.append((head.weight, arrays["head.weight"]))
            if head.bias is not None:
                updates.append((head.bias, arrays["head.bias"]))
        updates = [(param, np.asarray(value).astype(param.data.dtype)) for param, value in updates]
    names = {id(p): n for n, p in module.named_parameters()}
    bad = [names.get(id(param), "a parameter") for param, value in updates if not np.isfinite(value).all()]
    if bad:
        raise ValueError(f"load_torch_state_dict: {', '.join(bad)} would hold NaN or Inf in "
                         f"{updates[0][0].data.dtype} (a NaN/Inf value, or one beyond the dtype's range, "
                         f"bias_ih + bias_hh included) (nothing was loaded)")
    for param, value in updates:
        writable_data(param)[...] = value  # checked in the parameter's dtype first; a live graph keeps its values


def save_safetensors(module, path, metadata=None) -> None:
    """Write the module's parameters to a safetensors file in PyTorch's key layout (torch_state_dict),
    loadable with ``safetensors.torch.load_file`` + ``load_state_dict``; needs the safetensors extra."""
    from micrornn.safetensors_io import write_safetensors
    write_safetensors(path, torch_state_dict(module), metadata)


def load_safetensors(module, path) -> dict:
    """Load a safetensors file in PyTorch's key layout into the module (all or nothing, as
    load_torch_state_dict); returns the file's metadata."""
    from micrornn.safetensors_io import read_safetensors
    arrays, metadata = read_safetensors(path)
    load_torch_state_dict(module, arrays)
    return metadata


def to_torch(module):
    """Any micrornn module as a torch.nn.Module with equal outputs and gradients (see micrornn.interop_torch)."""
    from micrornn.interop_torch import to_torch as _to_torch
    return _to_torch(module)
