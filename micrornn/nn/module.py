"""Module and Parameter: parameters found by walking attributes (no metaclass, no __setattr__ magic)."""
from __future__ import annotations

import numpy as np

from micrornn.engine.guard import writable_data
from micrornn.engine.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad and that modules discover as a parameter."""

    __slots__ = ()

    def __init__(self, data, dtype=None, name=None):
        super().__init__(data, requires_grad=True, dtype=dtype, name=name)


def _children(value, prefix):
    """(dotted name, value) for the parameters and modules held directly in an attribute value."""
    if isinstance(value, (Parameter, Module)):
        return [(prefix, value)]
    if isinstance(value, (list, tuple)):
        return [(f"{prefix}.{i}", v) for i, v in enumerate(value) if isinstance(v, (Parameter, Module))]
    if isinstance(value, dict):
        return [(f"{prefix}.{k}", v) for k, v in value.items() if isinstance(v, (Parameter, Module))]
    return []


class Module:
    """Base class: subclasses assign Parameters, Modules, or lists/dicts of them as attributes."""

    training = True  # train() / eval() set it on every module of the tree; dropout acts only when True

    def named_modules(self, prefix: str = "") -> list[tuple[str, "Module"]]:
        """(dotted name, module) for this module ("" or ``prefix``) and every submodule, each once."""
        found, seen, stack = [], set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            found.append((name, module))
            stack.extend(reversed(module._child_modules(name)))
        return found

    def _child_modules(self, prefix: str = "") -> list[tuple[str, "Module"]]:
        """(dotted name, module) for the modules held directly in this module's attributes."""
        children = []
        for attr, value in vars(self).items():
            children += _children(value, f"{prefix}.{attr}" if prefix else attr)
        return [(n, c) for n, c in children if isinstance(c, Module)]

    def modules(self) -> list["Module"]:
        """This module and every submodule, in the order of named_modules()."""
        return [m for _, m in self.named_modules()]

    def train(self, mode: bool = True) -> "Module":
        """Put this module and every submodule in training mode (or evaluation mode if mode is False)."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"train(mode): mode must be True or False, got {mode!r}")
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode for the whole tree: same as train(False)."""
        return self.train(False)

    def __repr__(self):
        return "\n".join(_tree_lines(self, set()))

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs in attribute order, each parameter once."""
        found, seen, stack = [], set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:  # a shared or cyclic reference: walk each module once
                continue
            seen.add(id(module))
            children = []
            for attr, value in vars(module).items():
                children += _children(value, f"{name}.{attr}" if name else attr)
            for child_name, child in children:
                if isinstance(child, Parameter) and id(child) not in seen:
                    seen.add(id(child))
                    found.append((child_name, child))
            stack.extend(reversed([(n, c) for n, c in children if isinstance(c, Module)]))
        return found

    def parameters(self) -> list[Parameter]:
        """Every parameter, in the order of named_parameters()."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        """Forget accumulated gradients (set them to None)."""
        for p in self.parameters():
            p.grad = None

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter's data, by dotted name."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters in place; on any mismatch raise and change nothing."""
        params = dict(self.named_parameters())
        arrays = {k: np.asarray(getattr(v, "data", v)) for k, v in state.items()}
        problems = [f"wrong shape for {k}: expected {params[k].shape}, got {a.shape}"
                    for k, a in arrays.items() if k in params and a.shape != params[k].shape]
        if strict:
            problems += [f"missing {k}" for k in params if k not in arrays]
            problems += [f"unexpected {k}" for k in arrays if k not in params]
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems) + " (nothing was loaded)")
        for k, a in arrays.items():
            if k in params:
                writable_data(params[k])[...] = a  # a live graph keeps the values it saved

    def astype(self, dtype) -> "Module":
        """Convert every parameter to the float ``dtype`` in place (gradients dropped); returns self.

        Make the optimizer after the cast: its buffers keep the dtype of the parameters it was given.
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"astype: parameters must stay floating-point, got {dtype}")
        for p in self.parameters():
            p.data, p.grad = p.data.astype(dtype), None
        return self

    def to(self, dtype) -> "Module":
        """PyTorch's spelling of astype(dtype); there are no devices (everything runs on the CPU)."""
        if isinstance(dtype, str) and dtype.split(":")[0] in ("cpu", "cuda", "mps", "meta"):
            raise TypeError(f"to({dtype!r}): micrornn has no devices, everything is a NumPy array on the CPU; "
                            "to(dtype) converts the parameters, e.g. model.to(np.float32)")
        return self.astype(dtype)

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(p.size for p in self.parameters())

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        """The module's computation; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")


def functional_call(module: Module, params: dict, *args, **kwargs):
    """module(*args, **kwargs) computed with ``params`` (dotted name -> Tensor or array) in place of
    those parameters; the module's own parameters are back afterwards, also on error.

    Gradients flow to the Tensors given in ``params`` (e.g. the leaves value_and_grad makes), so a
    model becomes a pure function of its parameters: ``functional_call(model, {"head.bias": b}, x)``.
    Names not given keep the module's parameters.
    """
    own = dict(module.named_parameters())
    unknown = [k for k in params if k not in own]
    if unknown:
        raise KeyError(f"functional_call: {type(module).__name__} has no parameter {unknown[0]!r} "
                       f"(its names: {', '.join(own)})")
    swaps = []
    for name, value in params.items():
        value = value if isinstance(value, Tensor) else Tensor(value)
        if value.shape != own[name].shape:
            raise ValueError(f"functional_call: {name} has shape {own[name].shape}, got {value.shape}")
        swaps.append((*_holder(module, name), value))
    try:
        for holder, key, value in swaps:
            _put(holder, key, value)
        return module(*args, **kwargs)
    finally:
        for (holder, key, _), name in zip(swaps, params):
            _put(holder, key, own[name])


def _holder(module, dotted):
    """(the object that holds a parameter, its attribute name, list index or dict key)."""
    *path, last = dotted.split(".")
    obj = module
    for part in path:
        obj = obj[int(part)] if isinstance(obj, (list, tuple)) else obj[part] if isinstance(obj, dict) \
            else getattr(obj, part)
    if isinstance(obj, list):
        return obj, int(last)
    if isinstance(obj, tuple):
        raise TypeError(f"functional_call: {dotted} sits in a tuple, which cannot be swapped; hold it in a list")
    return obj, last


def _put(holder, key, value) -> None:
    """holder.key = value (or holder[key] = value for a list or dict)."""
    if isinstance(holder, (list, dict)):
        holder[key] = value
    else:
        setattr(holder, key, value)


def _settings(module) -> str:
    """A module's plain settings (numbers, strings, booleans) and its own parameters' shapes, for repr."""
    parts = [f"{k}={v!r}" for k, v in vars(module).items()
             if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str))]
    for attr, value in vars(module).items():
        for name, p in _children(value, attr):
            if isinstance(p, Parameter):
                dtype = "" if p.dtype == np.float64 else f" {p.dtype}"
                parts.append(f"{name}: {tuple(p.shape)}{dtype}")
    return ", ".join(parts)


def _tree_lines(module, seen) -> list[str]:
    """repr lines of a module: Name(settings, parameter shapes) with one indented line per submodule."""
    head = f"{type(module).__name__}({_settings(module)}"
    if id(module) in seen:
        return [head + ")  (shared, shown above)"]
    seen.add(id(module))
    children = module._child_modules()
    if not children:
        return [head + ")"]
    lines = [head]
    for name, child in children:
        sub = _tree_lines(child, seen)
        lines += [f"  ({name}): {sub[0]}"] + [f"  {line}" for line in sub[1:]]
    return lines + [")"]
