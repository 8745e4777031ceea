"""The report: header lines, the ratio table, peak memory and the extras."""
from __future__ import annotations

import os
import platform

import numpy as np

import micrornn
from micrornn.bench.contenders import available
from micrornn.bench.options import (BLAS_ENV_VARS, CLASSES, CONTENDERS, FLOOR, GATED_TARGETS, MEMORY_TARGET,
                                    MGU_TARGETS, SIZES, TARGETS, Options)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.2f}" if seconds < 1 else f"{seconds * 1e3:.0f}"


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.2f}"


def header_lines(options: Options) -> list:
    """Machine, library versions and method, for the top of the report."""
    env = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in BLAS_ENV_VARS)
    return [
        "micrornn bench: one training step = forward + softmax cross-entropy summed over time and batch "
        f"+ backward; one tanh layer; index inputs of {CLASSES} classes, {CLASSES} outputs",
        f"python {platform.python_version()}, numpy {np.__version__}, micrornn {micrornn.__version__}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}); {env}",
        "floor = a hand-written NumPy step (micrornn/bench/floor.py: preallocated buffers, one gather, three "
        "calls per time step each way); ratio = median / median of the floor timed in the same process, "
        "contenders interleaved round-robin after a warm-up",
        "bptt = micrornn.bptt.loss_and_grads; unrolled, fused = micrornn "
        "SequenceModel(fused=False/True).loss + backward; compiled = the unrolled loss through micrornn.compile "
        "(traced once, replayed); torch nn.RNN on one-hot rows and torch eager "
        "over the unrolled ops run in their own process, JAX jit(value_and_grad(lax.scan)) in another",
        "allocator: " + ("glibc defaults (--default-allocator)" if options.default_allocator else
                         "micrornn.train.allocator.tune_allocator(), as in `micrornn train`"),
    ] + missing_contenders(options) + (
        [f"note: {env} in the environment: pass --clean-blas-env to measure OpenBLAS's native kernel"]
        if any(v in os.environ for v in BLAS_ENV_VARS) and not options.clean_blas_env else [])


def missing_contenders(options: Options) -> list:
    """One line per framework the table leaves out (torch, JAX), naming its columns and why."""
    lines = []
    for group, module, flag in (("torch", "torch", "--no-torch"), ("jax", "jax", "--no-jax")):
        columns = ", ".join(label for label, g in CONTENDERS.values() if g == group)
        if not getattr(options, group):
            lines.append(f"not measured: {columns} (left out by {flag})")
        elif not available(module):
            lines.append(f"not measured: {columns} ({module} is not installed here; it is an optional comparison, "
                         f"never a dependency: pip install {module} to add the column)")
    return lines


def _target(name: str, size: str, cell: str = "rnn"):
    targets = TARGETS if cell == "rnn" else MGU_TARGETS if cell == "mgu" else GATED_TARGETS
    return targets[name][size] if name in targets else None


def format_timings(result: dict, options: Options) -> str:
    """One block per thread mode: per size and dtype the floor's time and every contender's ratio."""
    lines = [f"-- threads: {'one' if result['mode'] == '1' else 'default'} -- {result['blas']}"]
    if result.get("frameworks"):
        lines.append("   " + "; ".join(result["frameworks"]))
    load = [x for x in result.get("load", []) if x is not None]
    if load:
        lines.append(f"   1-min load average {' -> '.join(f'{x:g}' for x in load)} on {os.cpu_count()} CPUs "
                     f"(this run uses up to {'1' if result['mode'] == '1' else 'all'}; more means other work)")
    by_key = {(r.get("cell", "rnn"), r["dtype"], r["size"], r["contender"]): r for r in result["rows"]}
    names = [n for n in CONTENDERS if n != FLOOR and any(k[3] == n for k in by_key)]
    lines.append(f"{'cell':4} {'dtype':8} {'size':6} {'T':>3} {'B':>3} {'H':>4} {'floor ms':>9} "
                 + " ".join(f"{CONTENDERS[n][0]:>14}" for n in names) + "  noise  targets missed")
    for cell, dtype, size in ((c, d, s) for c in options.cells for d in options.dtypes for s in options.sizes):
        floor = by_key.get((cell, dtype, size, FLOOR))
        if floor is None:
            continue
        T, B, H = SIZES[size]
        cells, misses, noise = [], [], floor["iqr"]
        for name in names:
            row = by_key.get((cell, dtype, size, name))
            if row is None:
                cells.append(f"{'-':>14}")
                continue
            noise = max(noise, row["iqr"])
            target = _target(name, size, cell)
            flag = "!" if row["loss_mismatch"] else ""
            cells.append(f"{row['ratio']:.2f}x{flag}".rjust(14))
            if target is not None and row["ratio"] > target:
                misses.append(f"{CONTENDERS[name][0]} {row['ratio']:.2f}x > {target:g}x")
        lines.append(f"{cell:4} {dtype:8} {size:6} {T:>3} {B:>3} {H:>4} {_ms(floor['median']):>9} " + " ".join(cells)
                     + f"  {noise * 100:>4.0f}%  " + ("; ".join(misses) or "none"))
    lines.append("   targets: " + "; ".join(
        f"{CONTENDERS[n][0]} <= " + "/".join(f"{TARGETS[n][s]:g}x" for s in options.sizes) for n in TARGETS)
        + f" ({'/'.join(options.sizes)})"
        + ("; lstm/gru: floor = micrornn.bptt's hand-written NumPy LSTM/GRU, fused <= 1.15x, torch column = "
           "nn.LSTM / nn.GRU" if set(options.cells) & {"lstm", "gru"} else "")
        + ("; mgu: the MGU user cell of docs/cells.md, floor = a hand-written NumPy MGU step "
           "(micrornn/bench/mgu.py), compiled <= " + "/".join(f"{MGU_TARGETS['compiled'][s]:g}x" for s in options.sizes)
           if "mgu" in options.cells else "")
        + "; * torch nn.RNN and nn.LSTM/GRU read one-hot rows; noise = largest interquartile range / median in the row"
        + ("; ! = loss differs from the floor's" if any(r["loss_mismatch"] for r in result["rows"]) else ""))
    return "\n".join(lines)


def format_memory(rows: list) -> str:
    """Peak-memory table: every contender against the floor (buffers included), unrolled and compiled
    against the target."""
    lines = ["-- peak memory of one training step (tracemalloc: NumPy buffers + Python objects; the floor's "
             "preallocated buffers and the compiled program's buffers counted) --",
             f"{'dtype':8} {'size':6}  {'floor MB':>9} {'bptt':>7} {'unrolled':>9} {'fused':>7} {'compiled':>9}"
             "  target  result"]
    for r in rows:
        names = [n for n in ("bptt", "unrolled", "fused", "compiled") if n in r]
        ratio = {name: r[name] / r[FLOOR] for name in names}
        verdicts = ", ".join(f"{'PASS' if ratio[n] <= MEMORY_TARGET else 'MISS'} ({n})"
                             for n in ("unrolled", "compiled") if n in ratio)
        cells = [f"{ratio[n]:.2f}x".rjust(w) if n in ratio else "-".rjust(w)
                 for n, w in (("bptt", 7), ("unrolled", 9), ("fused", 7), ("compiled", 9))]
        lines.append(f"{r['dtype']:8} {r['size']:6}  {_mb(r[FLOOR]):>9} " + " ".join(cells)
                     + f"  <={MEMORY_TARGET:g}x  {verdicts}")
    return "\n".join(lines)


def format_extras(scalar: dict, sequences: list) -> str:
    """Scalar-engine throughput and the long sequences."""
    lines = ["-- scalar engine (micrornn.Value), dense relu layers of width 50 --",
             f"{scalar['nodes']} nodes: build {_ms(scalar['build'])} ms + backward {_ms(scalar['backward'])} ms "
             f"= {scalar['nodes_per_s'] / 1e6:.2f} M nodes/s build + backward, "
             f"{scalar['backward_nodes_per_s'] / 1e6:.2f} M nodes/s backward alone "
             "(benchmarks/scalar_throughput.py compares with micrograd)",
             f"-- long sequences, B=1 H={sequences[0]['hidden']}, float64, forward + backward, one thread --"]
    for s in sequences:
        u, f = s["unrolled"], s[FLOOR]
        lines.append(f"T={s['steps']:>6,}: unrolled {_ms(u['time']):>7} ms ({u['time'] / s['steps'] * 1e6:.1f} us/step, "
                     f"peak {_mb(u['peak'])} MB), floor {_ms(f['time'])} ms (peak {_mb(f['peak'])} MB): "
                     f"{u['time'] / f['time']:.2f}x time, {u['peak'] / f['peak']:.2f}x memory")
    if len(sequences) > 1:
        first, last = sequences[0], sequences[-1]
        growth = (last["unrolled"]["time"] / last["steps"]) / (first["unrolled"]["time"] / first["steps"])
        lines.append(f"unrolled time per step at T={last['steps']:,} / at T={first['steps']:,}: {growth:.2f}x "
                     "(1.0 = linear in T)")
    return "\n".join(lines)
