"""Benchmarks of the RNN training step: micrornn (unrolled and fused) against the analytic NumPy BPTT.

One training step = forward + softmax cross-entropy summed over time and batch + backward, for a
one-layer ``SequenceModel`` with one-hot inputs of 65 classes and 65 outputs. The NumPy
contenders run in one process, interleaved round-robin (so machine noise hits all of them alike),
after a warm-up; each figure is a median, each ratio is against ``bptt.loss_and_grads`` on the same
model and data. PyTorch eager autograd over the same per-step ops is timed too when torch is
importable (never a dependency), alone in a subprocess on the same seeded data. Also: peak memory (tracemalloc) of the unrolled step against the reference, the
scalar engine's throughput, and a 10,000-step unrolled sequence.

Used by ``micrornn bench`` (``add_arguments``, ``options_from_args``, ``run``) and by
``benchmarks/bench_rnn.py`` (``main``). Benchmarks print numbers; they are never timed tests.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import importlib.util
import io
import json
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field

import numpy as np

try:
    import resource  # page-fault counts (Unix only)
except ImportError:
    resource = None

import micrornn
from micrornn import bptt
from micrornn.allocator import tune_allocator
from micrornn.nn import SequenceModel

CLASSES = 65  # one-hot input classes and output classes
SIZES = {"small": (25, 1, 100), "medium": (32, 32, 128), "large": (64, 64, 512)}  # (T, B, H)
DTYPES = ("float64", "float32")
THREAD_MODES = {"1": ("1",), "default": ("default",), "both": ("1", "default")}
ROUNDS = {"small": 200, "medium": 60, "large": 12}  # timed rounds per size (default run)
QUICK_ROUNDS = {"small": 20, "medium": 5, "large": 2}
TARGETS = {"unrolled": {"small": 4.0, "medium": 1.5, "large": 1.25},
           "fused": {"small": 1.1, "medium": 1.1, "large": 1.1}}
MEMORY_TARGET = 1.5  # peak memory of the unrolled step / the reference's
BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
REFERENCE = "reference"

# contender key -> (label in the table, which target applies)
CONTENDERS = {
    REFERENCE: ("reference: bptt.loss_and_grads", None),
    "unrolled": ("micrornn unrolled (indices)", "unrolled"),
    "unrolled_dense": ("micrornn unrolled (dense 1-hot)", None),
    "fused": ("micrornn fused (indices)", "fused"),
    "torch": ("torch eager, same per-step ops*", None),
}


@dataclass
class Options:
    """What to measure; see ``add_arguments`` for the meaning of each field."""

    sizes: tuple = tuple(SIZES)
    dtypes: tuple = DTYPES
    threads: tuple = ("1", "default")
    rounds: dict = field(default_factory=lambda: dict(ROUNDS))
    quick: bool = False
    torch: bool = True
    extras: bool = True
    clean_blas_env: bool = False
    isolate: bool = False
    profile: bool = False
    default_allocator: bool = False


# ----------------------------------------------------------------------------- options

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options on ``parser`` (shared by the CLI and the script)."""
    parser.add_argument("--sizes", default=",".join(SIZES),
                        help="comma-separated subset of small (T=25 B=1 H=100), medium (T=32 B=32 H=128), "
                             "large (T=64 B=64 H=512); default all")
    parser.add_argument("--repeats", default=None,
                        help="timed rounds per size (default: %s; with --quick: %s)"
                             % (_rounds_text(ROUNDS), _rounds_text(QUICK_ROUNDS)))
    parser.add_argument("--dtype", default=",".join(DTYPES), help="comma-separated float64,float32 (default both)")
    parser.add_argument("--threads", default="both", help="1 | default | both (default both)")
    parser.add_argument("--quick", action="store_true", help="few rounds: a rough table in well under a minute")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is importable")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the scalar-engine throughput and the 10,000-step sequence")
    parser.add_argument("--isolate", action="store_true",
                        help="measure each thread mode in a fresh subprocess")
    parser.add_argument("--clean-blas-env", action="store_true",
                        help="measure in subprocesses with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so "
                             "OpenBLAS picks its native kernel (for benchmark runs, not tests)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the table, print cProfile's top entries for the unrolled step")
    parser.add_argument("--default-allocator", action="store_true",
                        help="keep glibc's malloc defaults (freed memory returned to the OS and re-faulted "
                             "each step) instead of micrornn.allocator.tune_allocator(), as `micrornn train` runs")


def _rounds_text(rounds: dict) -> str:
    return " ".join(f"{k} {v}" for k, v in rounds.items())


def _split(text: str) -> list:
    return [item.strip() for item in str(text).split(",") if item.strip()]


def options_from_args(args) -> Options:
    """Validate parsed arguments into Options; ValueError (one line) on bad input."""
    sizes = _split(args.sizes)
    bad = [s for s in sizes if s not in SIZES]
    if not sizes or bad:
        raise ValueError(f"--sizes: expected a comma-separated subset of {','.join(SIZES)}, got {args.sizes!r}")
    dtypes = _split(args.dtype)
    bad = [d for d in dtypes if d not in DTYPES]
    if not dtypes or bad:
        raise ValueError(f"--dtype: expected a comma-separated subset of {','.join(DTYPES)}, got {args.dtype!r}")
    if args.threads not in THREAD_MODES:
        raise ValueError(f"--threads: expected one of {' | '.join(THREAD_MODES)}, got {args.threads!r}")
    rounds = dict(QUICK_ROUNDS if args.quick else ROUNDS)
    if args.repeats is not None:
        try:
            n = int(args.repeats)
        except (TypeError, ValueError):
            n = 0
        if n < 1:
            raise ValueError(f"--repeats: expected a positive integer, got {args.repeats!r}")
        rounds = {name: n for name in SIZES}
    return Options(sizes=tuple(dict.fromkeys(sizes)), dtypes=tuple(dict.fromkeys(dtypes)),
                   threads=THREAD_MODES[args.threads], rounds=rounds, quick=bool(args.quick),
                   torch=not args.no_torch, extras=not args.no_extras, clean_blas_env=bool(args.clean_blas_env),
                   isolate=bool(args.isolate), profile=bool(args.profile),
                   default_allocator=bool(args.default_allocator))


# ----------------------------------------------------------------------------- the contenders

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


# ----------------------------------------------------------------------------- profiling

def profile_unrolled(size: str, dtype: str = "float64", rounds: int | None = None, top: int = 18) -> str:
    """cProfile of the unrolled step (one thread), sorted by own time, with the reference's total beside it."""
    steps = contenders_for(size, dtype)
    rounds = rounds or {"small": 300, "medium": 60, "large": 8}[size]
    with thread_limit("1"):
        for name in (REFERENCE, "unrolled"):
            steps[name]()
        ref, _ = time_round_robin({REFERENCE: steps[REFERENCE], "unrolled": steps["unrolled"]}, rounds, warmup=1)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(rounds):
            steps["unrolled"]()
        profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    stats.print_stats(top)
    T, B, H = SIZES[size]
    head = (f"== cProfile: unrolled step, {size} (T={T} B={B} H={H}) {dtype}, one thread, {rounds} steps; "
            f"unprofiled medians: unrolled {_ms(statistics.median(ref['unrolled']))}, "
            f"reference {_ms(statistics.median(ref[REFERENCE]))} ms per step\n")
    return head + _trim_stats(text.getvalue())


def _trim_stats(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip() and "Ordered by" not in line) + "\n"


# ----------------------------------------------------------------------------- report

def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.2f}" if seconds < 1 else f"{seconds * 1e3:.0f}"


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.2f}"


def header_lines(options: Options) -> list:
    """Machine, library versions and method, for the top of the report."""
    env = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in BLAS_ENV_VARS)
    return [
        "micrornn bench: one training step = forward + softmax cross-entropy summed over time and batch "
        f"+ backward; one layer; one-hot inputs of {CLASSES} classes, {CLASSES} outputs",
        f"python {platform.python_version()}, numpy {np.__version__}, micrornn {micrornn.__version__}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}); {env}",
        "medians after warm-up; contenders interleaved round-robin, start rotating each round; "
        "ratio = median / median of the reference (bptt.loss_and_grads, dense one-hot input); "
        "iqr = interquartile range / median; faults = median minor page faults per step (fresh memory "
        "touched: each costs ~3 us on a VM)",
        "allocator: " + ("glibc defaults (--default-allocator)" if options.default_allocator else
                         "micrornn.allocator.tune_allocator(): freed memory kept for reuse, as in `micrornn train`"),
    ] + ([f"note: {env} in the environment: pass --clean-blas-env to measure OpenBLAS's native kernel"]
         if any(v in os.environ for v in BLAS_ENV_VARS) and not options.clean_blas_env else []) + [
        "* torch (only when importable) runs alone in its own subprocess right after the others, same seeded "
        "model and data: its spinning OpenMP threads would slow interleaved NumPy contenders",
    ]


def format_timings(result: dict, options: Options) -> str:
    """One block per thread mode: a row per size, dtype and contender, with ratio, target and PASS/MISS."""
    lines = [f"-- threads: {'one' if result['mode'] == '1' else 'default'} -- {result['blas']}"
             + (f"; {result['torch']}" if result.get("torch") else "; torch not measured")]
    load = [x for x in result.get("load", []) if x is not None]
    if load:
        lines.append(f"   1-min load average {' -> '.join(f'{x:g}' for x in load)} "
                     f"(this run uses up to {'1' if result['mode'] == '1' else 'all'} CPU; more means other work)")
    if result.get("env"):
        lines.append("   (measured in a subprocess with " +
                     ", ".join(f"{k}={v or 'unset'}" for k, v in result["env"].items()) + ")")
    lines.append(f"{'dtype':8} {'size':6} {'T':>3} {'B':>3} {'H':>4}  {'contender':33} {'median ms':>10} "
                 f"{'iqr':>5} {'faults':>6} {'ratio':>6} {'target':>7}  result")
    by_key = {(r["dtype"], r["size"], r["contender"]): r for r in result["rows"]}
    for dtype in options.dtypes:
        for size in options.sizes:
            T, B, H = SIZES[size]
            ref = by_key.get((dtype, size, REFERENCE))
            if ref is None:
                continue
            first = True
            for name, (label, target_kind) in CONTENDERS.items():
                row = by_key.get((dtype, size, name))
                if row is None:
                    continue
                ratio = row["median"] / ref["median"]
                target = TARGETS[target_kind][size] if target_kind else None
                verdict = "" if target is None else ("PASS" if ratio <= target else "MISS")
                if row["loss_mismatch"]:
                    verdict += " (loss differs from reference!)"
                lead = f"{dtype:8} {size:6} {T:>3} {B:>3} {H:>4}" if first else " " * 28
                lines.append(f"{lead}  {label:33} {_ms(row['median']):>10} {row['iqr'] * 100:>4.0f}% {row['faults']:>6.0f} {ratio:>5.2f}x "
                             f"{'' if target is None else f'<={target:g}x':>7}  {verdict}".rstrip())
                first = False
    return "\n".join(lines)


def format_memory(rows: list) -> str:
    """Peak-memory table: reference, unrolled (with ratio against the target) and fused."""
    lines = ["-- peak memory of one training step (tracemalloc: NumPy buffers + Python objects, above live) --",
             f"{'dtype':8} {'size':6}  {'reference MB':>12} {'unrolled MB':>12} {'ratio':>6} {'target':>7}  "
             f"{'result':6} {'fused MB':>9} {'ratio':>6}"]
    for r in rows:
        ratio, fused_ratio = r["unrolled"] / r[REFERENCE], r["fused"] / r[REFERENCE]
        verdict = "PASS" if ratio <= MEMORY_TARGET else "MISS"
        lines.append(f"{r['dtype']:8} {r['size']:6}  {_mb(r[REFERENCE]):>12} {_mb(r['unrolled']):>12} {ratio:>5.2f}x "
                     f"{f'<={MEMORY_TARGET:g}x':>7}  {verdict:6} {_mb(r['fused']):>9} {fused_ratio:>5.2f}x")
    return "\n".join(lines)


def format_extras(scalar: dict, seq: dict) -> str:
    """Scalar-engine throughput and the long sequence."""
    u, ref = seq["unrolled"], seq[REFERENCE]
    return "\n".join([
        "-- scalar engine (micrornn.Value), dense relu layers of width 50 --",
        f"{scalar['nodes']} nodes: build {_ms(scalar['build'])} ms + backward {_ms(scalar['backward'])} ms "
        f"= {scalar['nodes_per_s'] / 1e6:.2f} M nodes/s (build + backward)",
        f"-- {seq['steps']}-step unrolled sequence, B=1 H={seq['hidden']}, float64, forward + backward --",
        f"unrolled : {_ms(u['time'])} ms, peak {_mb(u['peak'])} MB",
        f"reference: {_ms(ref['time'])} ms, peak {_mb(ref['peak'])} MB  "
        f"(ratios {u['time'] / ref['time']:.2f}x time, {u['peak'] / ref['peak']:.2f}x memory)",
    ])


# ----------------------------------------------------------------------------- entry points

def run(options: Options, out=None) -> int:
    """Measure and print the full report to ``out`` (stdout by default); returns 0."""
    out = out or sys.stdout

    def emit(text=""):
        print(text, file=out, flush=True)

    if not options.default_allocator:
        tune_allocator()
    if options.profile:
        for size in options.sizes:
            for dtype in options.dtypes:
                emit(profile_unrolled(size, dtype))
        return 0
    for line in header_lines(options):
        emit(line)
    emit()
    for mode in options.threads:
        _progress(f"timing, threads={mode} ...")
        result = measure_mode(options, mode)
        emit(format_timings(result, options))
        emit()
    _progress("peak memory ...")
    emit(format_memory(measure_memory(options.sizes, options.dtypes)))
    if options.extras:
        _progress("scalar engine and long sequence ...")
        with thread_limit("1"):
            scalar = scalar_throughput(100_000, repeats=1 if options.quick else 3)
            seq = long_sequence(10_000, repeats=1 if options.quick else 3)
        emit()
        emit(format_extras(scalar, seq))
    return 0


def main(argv=None, prog=None) -> int:
    """Stand-alone entry point (benchmarks/bench_rnn.py, ``python -m micrornn.bench``); bad options exit 2."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    return run(options)


def _child(payload: str) -> None:
    """Subprocess side of ``measure_in_subprocess``: print the timings as one JSON line."""
    spec = json.loads(payload)
    options = Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["options"].items()})
    if not options.default_allocator:
        tune_allocator()
    print(json.dumps(measure_timings(options, spec["mode"], spec["which"])), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        raise SystemExit(main(prog="python -m micrornn.bench"))
