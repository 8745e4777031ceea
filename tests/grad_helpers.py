"""Shared by the gradient tests: fresh leaf tensors, the comment lines that declare a primitive tested
in another file, the check that a recorded (create_graph) gradient equals the plain one, central
differences over a plain NumPy array for the hand-derived BPTT tests, and the two agreement figures of
the whole-model route tests."""
import re
from pathlib import Path

import numpy as np

import micrornn as mr
from micrornn import Tensor


def make_inputs(arrays) -> list:
    """Fresh float64 leaf tensors (copies: gradcheck perturbs them in place)."""
    return [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]


def declared_names(text: str, tag: str) -> set:
    """Names on the comment lines "# TAG: NAME, NAME" of text."""
    marker = re.compile(rf"^\s*#\s*{re.escape(tag)}:\s*(.+)$", re.MULTILINE)
    return {n.strip() for m in marker.finditer(text) for n in m.group(1).split(",") if n.strip()}


def declared_in_tests(tag: str) -> set:
    """Names declared by "# TAG: NAME, ..." lines in any tests/*.py (read as text, whatever pytest collected)."""
    return set().union(*(declared_names(path.read_text(encoding="utf-8"), tag)
                         for path in Path(__file__).parent.glob("*.py")))


def assert_recorded_gradient_is_first_order(fn, inputs) -> None:
    """grad(create_graph=True) runs each op's dvjp, not its vjp: its value must be the plain VJP's, to 1e-12."""
    out = fn(*inputs)
    u = np.random.default_rng(0).standard_normal(out.shape)
    first = mr.grad(out, inputs, grad_outputs=u, retain_graph=True)
    recorded = mr.grad(out, inputs, grad_outputs=u, create_graph=True)
    for a, b in zip(first, recorded):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-12, atol=1e-14)


def central_differences(f, arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(f(arr + eps e_i) - f(arr - eps e_i)) / 2 eps for every entry i of arr, perturbed in place and
    restored; f() takes no argument and returns a float (NumPy only: no engine, no micrornn.check)."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        orig = arr[idx]
        arr[idx] = orig + eps
        f_plus = f()
        arr[idx] = orig - eps
        f_minus = f()
        arr[idx] = orig
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative(a, ref) -> float:
    """max|a - ref| / max|ref| (0 when both are exactly zero)."""
    diff, scale = float(np.max(np.abs(a - ref))), float(np.max(np.abs(ref)))
    return 0.0 if diff == 0 else (diff / scale if scale else np.inf)


def numeric_ratio(g, n, *, atol: float, rtol: float) -> float:
    """Worst |g - n| / (atol + rtol |n|): <= 1 is within the target."""
    return float(np.max(np.abs(g - n) / (atol + rtol * np.abs(n))))
