"""Measurements: interleaved timings (here or in a subprocess), peak memory, and the extras."""
from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict

import numpy as np

try:
    import resource  # page-fault counts (Unix only)
except ImportError:
    resource = None

import micrornn
from micrornn.bench.contenders import contenders_for, engine_step, make_case, reference_step, torch_available
from micrornn.bench.options import BLAS_ENV_VARS, CLASSES, REFERENCE, THREAD_ENV_VARS, Options
from micrornn.nn import SequenceModel


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where the resource module is missing)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def time_round_robin(steps: dict, rounds: int, warmup: int = 2):
    """Per contender, lists of seconds and of minor page faults for ``rounds`` interleaved calls
    (the start rotating each round); returns (times, faults)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times, faults = {name: [] for name in names}, {name: [] for name in names}
    clock = time.perf_counter
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            step = steps[name]
            f0 = _minor_faults()
            start = clock()
            step()
            times[name].append(clock() - start)
            faults[name].append(_minor_faults() - f0)
    return times, faults


def loss_mismatches(steps: dict, dtype: str) -> list:
    """Names of contenders whose loss disagrees with the reference's (a guard that all time the same thing)."""
    ref = steps[REFERENCE]()
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
        from threadpoolctl import threadpool_limits
    except ImportError:  # the caller runs us in a subprocess with *_NUM_THREADS=1 instead
        threadpool_limits = None
    try:
        if torch is not None:
            torch.set_num_threads(1)
        with threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext():
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(previous)


def blas_info() -> str:
    """Which BLAS library and kernel run here, with their thread counts (threadpoolctl, when installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS kernel unknown (threadpoolctl not installed)"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return "BLAS: none found by threadpoolctl"
    return "; ".join(f"{p.get('internal_api')} {p.get('version')} kernel {p.get('architecture', '?')} "
                     f"threads {p.get('num_threads')}" for p in pools)


def measure_timings(options: Options, mode: str, which: str = "numpy") -> dict:
    """Time the contenders for every size and dtype in this process under thread ``mode``.

    ``which`` is "numpy" (reference, unrolled, fused: interleaved) or "torch" (torch alone; the
    caller runs this in its own process, see ``run``)."""
    result = {"mode": mode, "which": which, "rows": [], "blas": None, "torch": None, "load": [_load()]}
    if which == "torch":
        import torch  # before thread_limit, so that it limits torch's pool too
    with thread_limit(mode):
        result["blas"] = blas_info()
        if which == "torch":
            result["torch"] = f"torch {torch.__version__} threads {torch.get_num_threads()}"
        for dtype in options.dtypes:
            for size in options.sizes:
                steps = contenders_for(size, dtype, which)
                bad = loss_mismatches(steps, dtype)
                if which == "torch":
                    del steps[REFERENCE]
                gc.collect()
                rounds = options.rounds[size]
                times, faults = time_round_robin(steps, rounds, warmup=1 if size == "large" else 2)
                for name, seconds in times.items():
                    q1, med, q3 = np.percentile(seconds, [25, 50, 75])
                    result["rows"].append({"size": size, "dtype": dtype, "contender": name, "median": float(med),
                                           "iqr": float((q3 - q1) / med), "rounds": rounds,
                                           "faults": float(np.median(faults[name])),
                                           "loss_mismatch": name in bad})
                _progress(f"  threads={mode} {which} {dtype} {size}: {rounds} rounds")
    result["load"].append(_load())
    return result


def _load() -> float | None:
    """The 1-minute load average (other processes on the machine skew the timings), None if unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _needs_subprocess(options: Options, mode: str) -> bool:
    """Whether the NumPy contenders must run in a fresh interpreter for this thread mode."""
    if options.isolate:
        return True
    if options.clean_blas_env and any(v in os.environ for v in BLAS_ENV_VARS):
        return True
    return mode == "1" and importlib.util.find_spec("threadpoolctl") is None


def measure_in_subprocess(options: Options, mode: str, which: str = "numpy") -> dict:
    """``measure_timings`` in a fresh interpreter (thread env vars set before NumPy loads)."""
    env = dict(os.environ)
    if mode == "1":
        env.update({var: "1" for var in THREAD_ENV_VARS})
    if options.clean_blas_env:
        for var in BLAS_ENV_VARS:  # both together: OpenBLAS then detects the CPU itself
            env.pop(var, None)
    payload = json.dumps({"options": asdict(options), "mode": mode, "which": which})
    proc = subprocess.run([sys.executable, "-m", "micrornn.bench", "--child", payload], env=env,
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess (threads={mode}, {which}) failed with exit status "
                           f"{proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["env"] = {var: env.get(var) for var in BLAS_ENV_VARS}
    return result


def measure_mode(options: Options, mode: str) -> dict:
    """All timings of one thread mode: NumPy contenders (here or in a subprocess), torch in its own.

    Torch never shares a process with the others: its OpenMP threads keep spinning after each op,
    and on a 2-core machine that slowed the interleaved NumPy contenders by up to 2x."""
    if _needs_subprocess(options, mode):
        result = measure_in_subprocess(options, mode)
    else:
        result = measure_timings(options, mode)
    if options.torch and torch_available():
        _progress(f"timing torch, threads={mode} (own subprocess) ...")
        torch_result = measure_in_subprocess(options, mode, which="torch")
        result["rows"] += torch_result["rows"]
        result["torch"] = torch_result["torch"]
        result["load"].append(torch_result["load"][-1])
    return result


# ----------------------------------------------------------------------------- memory and extras

def peak_bytes(fn) -> int:
    """Peak traced allocation (Python objects and NumPy buffers) of one call, above what was live before."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()


def measure_memory(sizes, dtypes) -> list:
    """Peak memory of one unrolled (and fused) training step against the reference's."""
    rows = []
    for dtype in dtypes:
        for size in sizes:
            model, fused, indices, dense, targets = make_case(size, dtype)
            steps = {REFERENCE: reference_step(model, dense, targets),
                     "unrolled": engine_step(model, indices, targets),
                     "fused": engine_step(fused, indices, targets)}
            row = {"size": size, "dtype": dtype}
            for name, step in steps.items():
                step()  # warm: leaves grads allocated, as in a training loop
                row[name] = peak_bytes(step)
            rows.append(row)
    return rows


def scalar_graph(width: int, layers: int, seed: int = 0):
    """Leaves and a builder for dense relu layers of Values, relu(sum_i w_i x_i + b), summed to a scalar."""
    rng = random.Random(seed)
    xs = [micrornn.Value(rng.uniform(-1, 1)) for _ in range(width)]
    params = [([[micrornn.Value(rng.gauss(0, width ** -0.5)) for _ in range(width)] for _ in range(width)],
               [micrornn.Value(0.0) for _ in range(width)]) for _ in range(layers)]

    def build():
        h = xs
        for weights, biases in params:
            h = [_dense_unit(w_row, h, b) for w_row, b in zip(weights, biases)]
        loss = h[0]
        for v in h[1:]:
            loss = loss + v
        return loss
    return build


def _dense_unit(w_row, h, b):
    acc = b
    for w, x in zip(w_row, h):
        acc = acc + w * x
    return acc.relu()


def count_value_nodes(root) -> int:
    """Distinct Values reachable from root, leaves included."""
    seen, stack = {id(root)}, [root]
    while stack:
        for p in stack.pop().parents:
            if id(p) not in seen:
                seen.add(id(p))
                stack.append(p)
    return len(seen)


def scalar_throughput(nodes: int = 100_000, repeats: int = 3) -> dict:
    """Build + backward of a ~``nodes``-node Value graph: medians and nodes per second."""
    width = 50
    layers = max(1, round(nodes / (3 * width * width + 2 * width)))
    build = scalar_graph(width, layers)
    builds, backs, count = [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        root = build()
        mid = time.perf_counter()
        root.backward()
        builds.append(mid - start)
        backs.append(time.perf_counter() - mid)
        count = count_value_nodes(root)
        del root
    b, k = statistics.median(builds), statistics.median(backs)
    return {"nodes": count, "build": b, "backward": k, "nodes_per_s": count / (b + k)}


def long_sequence(steps: int = 10_000, hidden: int = 100, repeats: int = 3) -> dict:
    """A ``steps``-long unrolled sequence (B=1): forward+backward time and peak memory, and the reference's."""
    rng = np.random.default_rng(0)
    model = SequenceModel(CLASSES, hidden, CLASSES, rng=0)
    indices = rng.integers(0, CLASSES, size=(steps, 1))
    targets = rng.integers(0, CLASSES, size=(steps, 1))
    dense = np.zeros((steps, 1, CLASSES))
    np.put_along_axis(dense, indices[..., None], 1, axis=-1)
    runs = {"unrolled": engine_step(model, indices, targets), REFERENCE: reference_step(model, dense, targets)}
    out = {"steps": steps, "hidden": hidden}
    times, _ = time_round_robin(runs, repeats, warmup=1)
    for name, step in runs.items():
        out[name] = {"time": statistics.median(times[name]), "peak": peak_bytes(step)}
    return out

