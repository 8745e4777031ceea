"""Any micrornn module as a torch.nn.Module, generated from its traced program (``micrornn.compile``).

``to_torch(module)`` mirrors the module tree (same attribute names, so the same dotted parameter
names) with torch Parameters holding copies of the weights. Its ``forward`` traces the micrornn
module once per input signature (as ``micrornn.compile`` does), writes the program as torch code,
one line per primitive, and runs it; ``torch_code(module, *args)`` shows that code as a Python class
a user can keep and edit. torch is imported only in this module.
"""
from __future__ import annotations

import numpy as np

from micrornn.engine.compile import Compiled, ValueDependentError, _flatten
from micrornn.engine.program import OUTPUT, Derived

__all__ = ["to_torch", "torch_code"]

_BINARY = {"add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}", "pow": "{0} ** {1}",
           "matmul": "{0} @ {1}", "matmul_add": "{0} @ {1} + {2}", "maximum": "torch.maximum({0}, {1})",
           "minimum": "torch.minimum({0}, {1})", "where": "torch.where({0}, {1}, {2})"}
_UNARY = {"neg": "-{0}", "exp": "torch.exp({0})", "log": "torch.log({0})", "tanh": "torch.tanh({0})",
          "sigmoid": "torch.sigmoid({0})", "relu": "torch.relu({0})", "abs": "torch.abs({0})",
          "detach": "{0}.detach()", "invert": "~{0}"}
_DERIVED = {"greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=", "equal": "==",
            "not_equal": "!=", "bitwise_and": "&", "bitwise_or": "|", "bitwise_xor": "^"}


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("micrornn.interop.to_torch needs PyTorch: pip install torch") from None
    return torch


def _dims(axis) -> str:
    return repr(tuple(axis)) if isinstance(axis, (tuple, list)) else repr(axis)


class _Writer:
    """Turns one program into the lines of a torch ``forward``."""

    def __init__(self, program, input_names, buffer_prefix="c"):
        self.program, self.lines, self.consts, self.prefix = program, [], [], buffer_prefix
        self.inputs = {id(v.data): name for v, name in zip(program.inputs, input_names)}

    def array(self, a) -> str:
        """An array met in an attribute: an input (or a view of one), else a constant."""
        if id(a) in self.inputs:
            return self.inputs[id(a)]
        if isinstance(a.base, np.ndarray) and id(a.base) in self.inputs and a.flags.c_contiguous:
            return f"{self.inputs[id(a.base)]}.reshape{tuple(a.shape)}"
        return self.constant(a)

    def constant(self, a) -> str:
        """Code for a constant array: zeros, an arange, a short literal, or a buffer self.c<k>."""
        dtype = f"torch.{np.dtype(a.dtype).name}" if a.dtype != bool else "torch.bool"
        if a.size and not a.any() and a.dtype.kind == "f":
            return f"torch.zeros({tuple(a.shape)}, dtype={dtype})"
        if a.ndim == 1 and a.dtype.kind in "iu" and np.array_equal(a, np.arange(a.size)):
            return f"torch.arange({a.size})"
        if a.size <= 8:
            return f"torch.tensor({a.tolist()!r}, dtype={dtype})"
        if self.prefix is None:  # code to keep: every constant written out
            return f"torch.tensor({a.tolist()!r}, dtype={dtype})"
        self.consts.append(a)
        return f"self.{self.prefix}{len(self.consts) - 1}"

    def index(self, index) -> str:
        items = index if isinstance(index, tuple) else (index,)
        parts = []
        for item in items:
            if isinstance(item, slice):
                parts.append(":".join("" if x is None else str(x) for x in (item.start, item.stop))
                             + ("" if item.step is None else f":{item.step}"))
            elif item is None or item is Ellipsis:
                parts.append("None" if item is None else "...")
            elif isinstance(item, (np.ndarray, list)):
                parts.append(self.array(np.asarray(item)))
            else:
                parts.append(str(int(item)))
        return ", ".join(parts)

    def value(self, v) -> str:
        if v.kind == "const":
            return self.constant(v.data)
        return v.label

    def call(self, call) -> str:
        """One line of torch for one primitive call."""
        prim, a = call.prim, call.attrs
        args = [self.value(v) for v in call.inputs]
        name = prim.name
        if isinstance(prim, Derived) and name in _DERIVED:
            expr = f"{args[0]} {_DERIVED[name]} {args[1]}"
        elif name in _BINARY:
            expr = _BINARY[name].format(*args)
        elif name in _UNARY:
            expr = _UNARY[name].format(*args)
        elif name in ("sum", "max"):
            method = "sum" if name == "sum" else "amax"
            dims = a.get("axis")
            if dims is None:
                dims = tuple(range(len(call.inputs[0].shape)))
            expr = f"{args[0]}.{method}(dim={_dims(dims)}, keepdim={bool(a.get('keepdims'))})"
        elif name == "logsumexp":
            expr = f"torch.logsumexp({args[0]}, dim={a['axis']}, keepdim={bool(a['keepdims'])})"
        elif name == "reshape":
            expr = f"{args[0]}.reshape{tuple(call.output.shape)}"
        elif name == "transpose":
            axes = a["axes"] if a["axes"] is not None else tuple(reversed(range(len(call.inputs[0].shape))))
            expr = f"{args[0]}.permute{tuple(axes)}"
        elif name == "getitem":
            expr = f"{args[0]}[{self.index(a['index'])}]"
        elif name == "stack":
            expr = f"torch.stack([{', '.join(args)}], dim={a['axis']})"
        elif name == "concatenate":
            expr = f"torch.cat([{', '.join(args)}], dim={a['axis']})"
        elif name == "clip":
            expr = f"torch.clamp({args[0]}, {a.get('lo')!r}, {a.get('hi')!r})"
        elif name == "astype":
            expr = f"{args[0]}.to(torch.{np.dtype(a['dtype']).name})"
        else:
            raise NotImplementedError(f"to_torch: no torch translation for the primitive '{name}' (a fused layer "
                                      "is exported unrolled; a user primitive needs its own)")
        return f"{call.output.label} = {expr}  # {call.output.type_text()}"

    def random(self, v) -> str:
        """A dropout mask drawn with torch, in the traced shape."""
        p = v.source[1]
        if p is None:
            raise NotImplementedError("to_torch: a random draw that is not a dropout mask has no torch translation")
        dtype = f"torch.{np.dtype(v.dtype).name}"
        return (f"{v.label} = torch.empty({tuple(v.shape)}, dtype={dtype}).bernoulli_({1 - p!r}) / {1 - p!r}"
                f"  # dropout mask, p={p!r}")

    def forward_lines(self) -> list:
        program = self.program
        lines = ["params = dict(self.named_parameters())"]
        for v in program.params:
            if not v.name:
                raise TypeError("to_torch: the program reads a tensor that is not a parameter of the module "
                                f"({v.type_text()}); keep tensors the forward reads in the module")
            lines.append(f"{v.label} = params[{v.name!r}]  # {v.type_text()}")
        lines += [self.random(v) for v in program.randoms]
        lines += [self.call(c) for c in program.calls]
        lines.append("return " + _result_text(program.result, iter(v.label for v in program.outputs)))
        return lines


def _result_text(tree, labels) -> str:
    if tree is OUTPUT:
        return next(labels)
    if isinstance(tree, (tuple, list)):
        inner = ", ".join(_result_text(t, labels) for t in tree)
        return f"({inner}{',' if len(tree) == 1 else ''})" if isinstance(tree, tuple) else f"[{inner}]"
    return repr(tree)


def _trace(module, args, training, kwargs=None):
    """The module's program for these (NumPy) arguments, traced unrolled in the given mode."""
    fused = [(m, m.fused) for m in module.modules() if getattr(m, "fused", False) is True]
    modes = [(m, m.training) for m in module.modules()]
    try:
        for m, _ in fused:
            m.fused = False  # the fused layers' analytic primitives have no torch translation: unroll them
        module.train(training)
        return Compiled(module).program(*args, **(kwargs or {}))
    except ValueDependentError as error:
        raise ValueDependentError(f"to_torch({type(module).__name__}): {error}") from None
    finally:
        for m, flag in fused:
            m.fused = flag
        for m, flag in modes:
            m.training = flag


def torch_code(module, *example_args, training: bool = False, class_name: str = "Exported") -> str:
    """The torch code generated for ``module`` on arguments shaped like ``example_args``, as a class."""
    program = _trace(module, [np.asarray(a.detach().numpy() if hasattr(a, "detach") else a) for a in example_args],
                     training)
    names = [f"a{k}" for k in range(len(program.inputs))]
    body = _Writer(program, names, buffer_prefix=None).forward_lines()
    shapes = ", ".join(f"{n}: {v.type_text()}" for n, v in zip(names, program.inputs))
    lines = ["import torch", "", "", f"class {class_name}(torch.nn.Module):",
             f'    """Generated by micrornn.interop.torch_code from {type(module).__name__} for {shapes}; load the '
             'weights with load_state_dict(to_torch(module).state_dict())."""', "",
             "    def __init__(self):", "        super().__init__()"]
    lines += [f"        {line}" for line in _tree_lines(module, "self")]
    lines += ["", f"    def forward(self, {', '.join(names)}):"] + [f"        {line}" for line in body]
    return "\n".join(lines) + "\n"


def _tree_lines(module, path: str) -> list:
    """Python lines that build the module tree with empty parameters of the right shapes and dtypes."""
    from micrornn.nn.module import Module, Parameter

    lines = []
    for attr, value in vars(module).items():
        if isinstance(value, Parameter):
            lines.append(f"{path}.{attr} = torch.nn.Parameter(torch.empty({tuple(value.shape)}, "
                         f"dtype=torch.{value.dtype}))")
        elif isinstance(value, Module):
            lines.append(f"{path}.{attr} = torch.nn.Module()")
            lines += _tree_lines(value, f"{path}.{attr}")
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
            lines.append(f"{path}.{attr} = torch.nn.ModuleList([torch.nn.Module() for _ in range({len(value)})])")
            for k, v in enumerate(value):
                lines += _tree_lines(v, f"{path}.{attr}[{k}]")
    return lines


def _mirror(module, torch):
    """A torch.nn.Module tree with the module's attribute names and copies of its parameters."""
    from micrornn.nn.module import Module, Parameter

    mirror = torch.nn.Module()
    for attr, value in vars(module).items():
        if isinstance(value, Parameter):
            mirror.register_parameter(attr, torch.nn.Parameter(torch.tensor(value.data)))
        elif isinstance(value, Module):
            mirror.add_module(attr, _mirror(value, torch))
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
            mirror.add_module(attr, torch.nn.ModuleList([_mirror(v, torch) for v in value]))
    return mirror


def to_torch(module):
    """A torch.nn.Module with ``module``'s tree, parameter names and values, computing the same outputs
    and gradients: its forward is the module's program, traced per input signature, written as torch."""
    torch = _torch()

    class Exported(torch.nn.Module):
        """micrornn module exported to torch (code per input signature: see torch_code)."""

        def __init__(self):
            super().__init__()
            tree = _mirror(module, torch)
            for name, child in tree.named_children():
                self.add_module(name, child)
            for name, p in tree.named_parameters(recurse=False):
                self.register_parameter(name, p)
            self._source, self._forwards = module, {}

        def forward(self, *args, **kwargs):
            """The module's own call signature: tensors (nested in tuples too) are inputs, ``lengths`` and the
            other values are static (their values key the generated code)."""
            if kwargs.get("lengths") is not None:
                kwargs["lengths"] = _static_lengths(kwargs["lengths"])
            arrays = _to_numpy((args, kwargs), torch)  # the call's own values (copies)
            leaves, key = [], []
            _flatten(arrays, leaves, key)
            key = (tuple(key), self.training)
            run = self._forwards.get(key)
            if run is None:
                run = self._forwards[key] = self._generate(*arrays)
            tensors = []
            _torch_leaves((args, kwargs), tensors, torch)
            return run(self, *tensors)

        def _generate(self, args, kwargs):
            # traced on the call's own values, and the trace's check on rolled values refuses constants computed
            # from them outside the engine: tracing on zeros would freeze such a constant at its value for zeros
            program = _trace(self._source, args, self.training, kwargs)
            names = [f"a{k}" for k in range(len(program.inputs))]
            writer = _Writer(program, names, buffer_prefix=f"s{len(self._forwards)}_c")
            body = writer.forward_lines()
            for k, c in enumerate(writer.consts):
                self.register_buffer(f"{writer.prefix}{k}", torch.as_tensor(c), persistent=False)
            source = f"def forward(self, {', '.join(names)}):\n" + "".join(f"    {line}\n" for line in body)
            scope = {"torch": torch}
            exec(compile(source, f"<micrornn.to_torch {type(self._source).__name__}>", "exec"), scope)  # noqa: S102
            return scope["forward"]

    Exported.__name__ = Exported.__qualname__ = f"Torch{type(module).__name__}"
    return Exported()


def _static_lengths(lengths) -> tuple:
    """lengths (a torch tensor, array or sequence of ints) as a tuple of ints: a static argument."""
    data = lengths.detach().cpu().numpy() if hasattr(lengths, "detach") else np.asarray(lengths)
    return tuple(int(v) for v in np.asarray(data).reshape(-1))


def _to_numpy(tree, torch):
    """The tree with each torch tensor replaced by a NumPy copy."""
    if isinstance(tree, torch.Tensor):
        return np.array(tree.detach().cpu().numpy(), dtype=_numpy_dtype(tree.dtype))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_to_numpy(item, torch) for item in tree)
    if isinstance(tree, dict):
        return {k: _to_numpy(v, torch) for k, v in tree.items()}
    return tree


def _torch_leaves(tree, leaves: list, torch) -> None:
    """The torch tensors (and arrays, as tensors) of a tree, in the order micrornn.compile numbers its inputs."""
    if isinstance(tree, torch.Tensor):
        leaves.append(tree)
    elif isinstance(tree, np.ndarray):
        leaves.append(torch.as_tensor(tree))
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            _torch_leaves(item, leaves, torch)
    elif isinstance(tree, dict):
        for item in tree.values():
            _torch_leaves(item, leaves, torch)


def _numpy_dtype(torch_dtype) -> np.dtype:
    return np.dtype(str(torch_dtype).replace("torch.", ""))
