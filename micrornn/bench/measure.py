"""Timings: contenders interleaved round-robin in one process, each process with its own floor.

The NumPy contenders run here; torch and JAX each run in a subprocess of their own (their thread
pools and start-up settings must not touch the others), interleaved there with the same floor, so
that every ratio compares two medians taken side by side in one process.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np

from micrornn.bench.children import die_with_parent
from micrornn.bench.contenders import available, contenders_for
from micrornn.bench.options import BLAS_ENV_VARS, FLOOR, THREAD_ENV_VARS, Options
from micrornn.train.threads import blas_threads

# The framework each subprocess group needs (the "numpy" group needs nothing beyond micrornn).
GROUP_MODULES = {"torch": "torch", "jax": "jax"}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_round_robin(steps: dict, rounds: int, warmup: int = 2, clock: str = "wall") -> dict:
    """Per contender, the seconds of ``rounds`` interleaved calls (the start rotating each round).

    clock "wall" is elapsed time; "cpu" is this process's CPU time, which leaves out the time spent
    waiting for a core on a busy machine."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times = {name: [] for name in names}
    clock = CLOCKS[clock]
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            step = steps[name]
            start = clock()
            step()
            times[name].append(clock() - start)
    return times


def loss_mismatches(steps: dict, dtype: str) -> list:
    """Names of contenders whose loss disagrees with the floor's (a guard that all time the same thing)."""
    ref = steps[FLOOR]()
    tol = 1e-8 if dtype == "float64" else 1e-4
    return [name for name, step in steps.items() if abs(step() - ref) > tol * max(1.0, abs(ref))]


@contextlib.contextmanager
def thread_limit(mode: str):
    """Limit BLAS/OpenMP pools (and torch if loaded) to one thread when mode is "1"."""
    torch = sys.modules.get("torch")
    if mode != "1":
        yield
        return
    previous = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(1)
        with blas_threads(1):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(previous)


def blas_info() -> str:
    """Which BLAS library and kernel run here, with their thread counts."""
    from threadpoolctl import threadpool_info

    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return "BLAS: none found by threadpoolctl"
    return "; ".join(f"{p.get('internal_api')} {p.get('version')} kernel {p.get('architecture', '?')} "
                     f"threads {p.get('num_threads')}" for p in pools)


def _framework_version(group: str) -> str | None:
    if group == "torch":
        import torch
        return f"torch {torch.__version__} (threads {torch.get_num_threads()})"
    if group == "jax":
        import jax
        return f"jax {jax.__version__} ({jax.default_backend()})"
    return None


def measure_timings(options: Options, mode: str, group: str = "numpy") -> dict:
    """Time one process group's contenders (with the floor) for every size and dtype, here.

    Each row holds a contender's median, its interquartile range over the median, and its ratio
    to the floor's median in this same process."""
    if group in GROUP_MODULES:
        __import__(GROUP_MODULES[group])  # before thread_limit, so that it limits torch's pool too
    result = {"mode": mode, "group": group, "rows": [], "load": [_load()]}
    with thread_limit(mode):
        result["blas"], result["framework"] = blas_info(), _framework_version(group)
        for cell, dtype, size in ((c, d, s) for c in options.cells for d in options.dtypes for s in options.sizes):
            steps = contenders_for(size, dtype, group, cell)
            if len(steps) == 1:
                continue  # nothing of this group for this cell kind
            bad = loss_mismatches(steps, dtype)
            gc.collect()
            rounds = options.rounds[size]
            times = time_round_robin(steps, rounds, warmup=1 if size == "large" else 2, clock=options.clock)
            floor = float(np.median(times[FLOOR]))
            for name, seconds in times.items():
                q1, med, q3 = np.percentile(seconds, [25, 50, 75])
                result["rows"].append({"cell": cell, "size": size, "dtype": dtype, "contender": name,
                                       "group": group,
                                       "median": float(med), "iqr": float((q3 - q1) / med),
                                       "ratio": float(med) / floor, "rounds": rounds,
                                       "loss_mismatch": name in bad})
            progress(f"  threads={mode} {group} {cell} {dtype} {size}: {rounds} rounds")
    result["load"].append(_load())
    return result


def _load() -> float | None:
    """The 1-minute load average (other processes on the machine skew the timings), None if unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def progress(text: str) -> None:
    """A progress line on stderr (the report goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def _subprocess_env(options: Options, mode: str, group: str) -> dict:
    """The environment of a measuring subprocess: thread limits and framework switches set before import."""
    env = dict(os.environ)
    if mode == "1":
        env.update({var: "1" for var in THREAD_ENV_VARS})
    if options.clean_blas_env:
        for var in BLAS_ENV_VARS:  # both together: OpenBLAS then detects the CPU itself
            env.pop(var, None)
    if group == "jax":
        env.update({"JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1"})
        if mode == "1":
            flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    return env


def measure_in_subprocess(options: Options, mode: str, group: str = "numpy") -> dict:
    """``measure_timings`` in a fresh interpreter (thread settings in its environment before any import)."""
    env = _subprocess_env(options, mode, group)
    payload = json.dumps({"options": asdict(options), "mode": mode, "group": group})
    proc = subprocess.run([sys.executable, "-m", "micrornn.bench", "--child", payload], env=env,
                          stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent())  # killed with us
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess (threads={mode}, {group}) failed with exit status "
                           f"{proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["env"] = {var: env.get(var) for var in BLAS_ENV_VARS}
    return result


def measure_mode(options: Options, mode: str) -> dict:
    """All timings of one thread mode: the NumPy group here (or isolated), torch and JAX in their own processes."""
    groups = ["torch"] * (options.torch and available("torch")) + ["jax"] * (options.jax and available("jax"))
    result = measure_in_subprocess(options, mode) if _needs_subprocess(options) else measure_timings(options, mode)
    result["frameworks"] = []
    for group in groups:
        progress(f"timing {group}, threads={mode} (own subprocess) ...")
        other = measure_in_subprocess(options, mode, group)
        result["rows"] += other["rows"]
        result["frameworks"].append(other["framework"])
        result["load"].append(other["load"][-1])
    return result


def _needs_subprocess(options: Options) -> bool:
    """Whether the NumPy contenders must run in a fresh interpreter."""
    return options.isolate or (options.clean_blas_env and any(v in os.environ for v in BLAS_ENV_VARS))
