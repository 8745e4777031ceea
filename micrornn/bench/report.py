"""The report: header lines and the timing, memory and extras tables."""
from __future__ import annotations

import os
import platform

import numpy as np

import micrornn
from micrornn.bench.options import (BLAS_ENV_VARS, CLASSES, CONTENDERS, MEMORY_TARGET, REFERENCE, SIZES,
                                    TARGETS, Options)


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

