"""Optimizers (SGD, Adagrad, Adam, AdamW) and gradient clipping.

Parameters are anything with a `.data` ndarray and a `.grad` ndarray-or-None. Updates are written
into `.data` in place (so every reference to a parameter's array stays valid) and computed in the
parameter's own dtype. A parameter whose `.grad` is None is skipped.
"""
import math

import numpy as np

from micrornn.engine.guard import writable_data

__all__ = ["Optimizer", "SGD", "Adagrad", "Adam", "AdamW", "clip_grad_norm_", "clip_grad_value_"]


def _param_list(params, who):
    """Materialize `params` (list, tuple or generator) and check each has an ndarray `.data`."""
    params = list(params)
    if not params:
        raise ValueError(f"{who}: optimizer got an empty parameter list")
    first_index = {}
    for i, p in enumerate(params):
        if not isinstance(getattr(p, "data", None), np.ndarray):
            raise TypeError(f"{who}: params[{i}] must have an ndarray .data attribute, "
                            f"got {type(p).__name__}")
        if id(p) in first_index:
            raise ValueError(f"{who}: params[{i}] is the same object as "
                             f"params[{first_index[id(p)]}]; pass each parameter once")
        first_index[id(p)] = i
    return params


def _non_negative(who, name, value):
    """Return `value` as a float, or raise ValueError naming it if negative or not finite."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{who}: {name} must be a finite number >= 0, got {value!r}")
    return value


def _all_finite(array) -> bool:
    """No NaN or Inf in the array: one sum (any NaN/Inf makes it non-finite), checked exactly if it overflowed."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(array, axis=None)
    return bool(np.isfinite(total)) or bool(np.isfinite(array).all())


def _param_label(i, p):
    name = getattr(p, "name", None)
    return f"parameter {i} ({name})" if name else f"parameter {i}"


class Optimizer:
    """Base class: holds the parameters, hyperparameters, step count and per-parameter buffers."""

    hyper_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()

    def __init__(self, params, **hyperparameters):
        self.params = _param_list(params, type(self).__name__)
        self._set_hyperparameters(hyperparameters)
        self.step_count = 0
        self.state = [{name: np.zeros_like(p.data) for name in self.buffer_names}
                      for p in self.params]

    @property
    def hyperparameters(self):
        """The hyperparameters as a dict (e.g. {"lr": 0.1, "momentum": 0.9})."""
        return {name: getattr(self, name) for name in self.hyper_names}

    def _set_hyperparameters(self, hyperparameters):
        for name, value in self._validated(**hyperparameters).items():
            setattr(self, name, value)

    def zero_grad(self):
        """Set every parameter's gradient to None."""
        for p in self.params:
            p.grad = None

    def _checked_grads(self):
        """Return each parameter's gradient cast to its dtype (or None); raise before any update."""
        grads = []
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                grads.append(None)
                continue
            g = np.asarray(g)
            if g.shape != p.data.shape:
                raise ValueError(f"{type(self).__name__}.step: gradient of {_param_label(i, p)} "
                                 f"has shape {g.shape}, expected {p.data.shape}")
            if not np.all(np.isfinite(g)):
                raise FloatingPointError(
                    f"{type(self).__name__}.step: gradient of {_param_label(i, p)} contains "
                    f"NaN or Inf; no parameter was updated")
            grads.append(g.astype(p.data.dtype, copy=False))
        return grads

    def step(self):
        """Apply one update to every parameter that has a gradient.

        All updates are computed on copies of the optimizer state first; if any is NaN or Inf (a
        corrupted state, an overflow), FloatingPointError is raised and nothing has changed.
        """
        grads = self._checked_grads()
        planned = []
        for i, (p, g, state) in enumerate(zip(self.params, grads, self.state)):
            if g is None:
                continue
            new_state = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
            delta = self._update_param(p, g, new_state)
            if not _all_finite(delta):
                raise FloatingPointError(
                    f"{type(self).__name__}.step: the update of {_param_label(i, p)} contains NaN or Inf "
                    f"(its gradient is finite: the optimizer state or an overflow); no parameter was updated")
            planned.append((p, delta, state, new_state))
        self.step_count += 1
        for p, delta, state, new_state in planned:
            state.update(new_state)
            np.subtract(p.data, delta, out=writable_data(p))  # a live graph keeps the values it saved

    def _update(self, grad, state):
        """Return the amount to subtract from the parameter; update `state` in place."""
        raise NotImplementedError

    def _update_param(self, param, grad, state):
        """The amount to subtract from `param` (an optimizer whose step reads the parameter overrides this)."""
        return self._update(grad, state)

    def state_dict(self):
        """Return a copy of the optimizer state: type, hyperparameters, step count, buffers."""
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": self.hyperparameters,
            "step_count": self.step_count,
            "state": [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                      for s in self.state],
        }

    def load_state_dict(self, d):
        """Restore state produced by `state_dict()` (of the same optimizer type and parameters)."""
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(d, dict) or "state" not in d or "hyperparameters" not in d:
            raise ValueError(f"{who}: expected a dict from state_dict(), got {type(d).__name__}")
        if d.get("optimizer") != type(self).__name__:
            raise ValueError(f"{who}: state is for optimizer {d.get('optimizer')!r}, "
                             f"expected {type(self).__name__!r}")
        if len(d["state"]) != len(self.params):
            raise ValueError(f"{who}: state has {len(d['state'])} parameters, "
                             f"this optimizer has {len(self.params)}")
        new_state = []
        for i, (p, saved) in enumerate(zip(self.params, d["state"])):
            entry = {}
            for name in self.buffer_names:
                buf = np.asarray(saved.get(name)) if name in saved else None
                if buf is None or buf.shape != p.data.shape:
                    got = "missing" if buf is None else f"shape {buf.shape}"
                    raise ValueError(f"{who}: buffer {name!r} of {_param_label(i, p)} is {got}, "
                                     f"expected shape {p.data.shape}")
                if buf.dtype.kind not in "biuf" or not np.isfinite(buf).all():
                    raise ValueError(f"{who}: buffer {name!r} of {_param_label(i, p)} is not finite numbers "
                                     f"(NaN or Inf, or dtype {buf.dtype}); refusing to load it")
                entry[name] = buf.astype(p.data.dtype, copy=True)
            entry.update({k: v for k, v in saved.items() if k not in self.buffer_names})
            new_state.append(self._checked_entry(who, i, entry))
        count = d.get("step_count", 0)
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
            raise ValueError(f"{who}: step_count must be a non-negative integer, got {count!r}")
        self._set_hyperparameters(d["hyperparameters"])
        self.step_count = int(count)
        self.state = new_state

    def _checked_entry(self, who, i, entry) -> dict:
        """One parameter's loaded state, checked before anything is replaced (subclasses add checks)."""
        return entry

    def _validated(self, **hyperparameters):
        """Check hyperparameters (subclasses override) and return them as a dict."""
        return hyperparameters

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (heavy-ball) momentum."""

    hyper_names = ("lr", "momentum")
    buffer_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr=lr, momentum=momentum)

    def _validated(self, lr, momentum):
        return {"lr": _non_negative("SGD", "lr", lr),
                "momentum": _non_negative("SGD", "momentum", momentum)}

    def _update(self, grad, state):
        # buf = momentum * buf + g;  p -= lr * buf   (plain SGD when momentum == 0)
        if self.momentum == 0:
            return self.lr * grad
        buf = state["momentum_buffer"]
        buf *= self.momentum
        buf += grad
        return self.lr * buf


class Adagrad(Optimizer):
    """Adagrad: per-coordinate step sizes shrinking with the accumulated squared gradient."""

    hyper_names = ("lr", "eps")
    buffer_names = ("sum_sq",)

    def __init__(self, params, lr, eps=1e-8):
        super().__init__(params, lr=lr, eps=eps)

    def _validated(self, lr, eps):
        return {"lr": _non_negative("Adagrad", "lr", lr),
                "eps": _non_negative("Adagrad", "eps", eps)}

    def _update(self, grad, state):
        # G += g^2;  p -= lr * g / (sqrt(G) + eps)
        sum_sq = state["sum_sq"]
        sum_sq += grad * grad
        return self.lr * grad / (np.sqrt(sum_sq) + self.eps)


class Adam(Optimizer):
    """Adam with bias correction; each parameter counts its own steps (skipped ones excluded)."""

    hyper_names: tuple[str, ...] = ("lr", "betas", "eps")
    buffer_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        for s in self.state:
            s["step"] = 0

    def _validated(self, lr, betas, eps):
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"Adam: betas must be a pair of numbers, got {betas!r}") from None
        for name, b in (("betas[0]", b1), ("betas[1]", b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {b!r}")
        return {"lr": _non_negative("Adam", "lr", lr), "betas": (b1, b2),
                "eps": _non_negative("Adam", "eps", eps)}

    def _update(self, grad, state):
        # m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr * m_hat / (sqrt(v_hat) + eps)
        b1, b2 = self.betas
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * grad
        v *= b2
        v += (1.0 - b2) * (grad * grad)
        m_hat = m / (1.0 - b1 ** t)
        v_hat = v / (1.0 - b2 ** t)
        return self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def _checked_entry(self, who, i, entry) -> dict:
        """Adam's per-parameter step count must be a non-negative integer (checked before loading)."""
        step = entry.get("step", 0)
        if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
            raise ValueError(f"{who}: step of parameter {i} must be a non-negative integer, got {step!r}")
        return {**entry, "step": int(step)}


class AdamW(Adam):
    """Adam with decoupled weight decay (PyTorch's AdamW): p -= lr * weight_decay * p, then the Adam step.

    ``matrices_only=True`` decays only parameters with ndim >= 2 (weight matrices), never biases or gains.
    """

    hyper_names = ("lr", "betas", "eps", "weight_decay", "matrices_only")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, matrices_only=False):
        Optimizer.__init__(self, params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                           matrices_only=matrices_only)
        for s in self.state:
            s["step"] = 0

    def _validated(self, lr, betas, eps, weight_decay, matrices_only):
        if not isinstance(matrices_only, (bool, np.bool_)):
            raise ValueError(f"AdamW: matrices_only must be True or False, got {matrices_only!r}")
        return {**super()._validated(lr, betas, eps),
                "weight_decay": _non_negative("AdamW", "weight_decay", weight_decay),
                "matrices_only": bool(matrices_only)}

    def _update_param(self, param, grad, state):
        # p_new = p - lr * wd * p - lr * m_hat / (sqrt(v_hat) + eps)   (decay decoupled from the gradient)
        delta = self._update(grad, state)
        if self.weight_decay and (param.data.ndim >= 2 or not self.matrices_only):
            delta = delta + (self.lr * self.weight_decay) * param.data
        return delta


def _grads(params):
    """The distinct gradient arrays of `params` (a shared array is listed once)."""
    seen, grads = set(), []
    for p in params:
        g = getattr(p, "grad", None)
        if g is not None and id(g) not in seen:
            seen.add(id(g))
            grads.append(g)
    return grads


def grad_norm(params) -> float:
    """The global L2 norm of all gradients as one vector (None grads skipped), in float64."""
    grads = [np.asarray(p.grad) for p in params if getattr(p, "grad", None) is not None]
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))


def clip_grad_norm_(params, max_norm):
    """Scale all gradients in place so their global L2 norm is at most max_norm; return the norm.

    The norm is taken over every parameter's gradient as one long vector (None grads are skipped).
    A non-finite norm is returned unchanged and nothing is scaled (step() will then refuse).
    """
    max_norm = _non_negative("clip_grad_norm_", "max_norm", max_norm)
    params = list(params)
    total = grad_norm(params)
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / total
        for g in _grads(params):  # scale each distinct array once, even if shared
            np.multiply(g, scale, out=g)
    return total


def clip_grad_value_(params, clip_value):
    """Clamp every gradient entry to [-clip_value, clip_value] in place."""
    clip_value = _non_negative("clip_grad_value_", "clip_value", clip_value)
    for g in _grads(list(params)):
        np.clip(g, -clip_value, clip_value, out=g)
