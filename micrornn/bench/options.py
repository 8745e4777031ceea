"""The benchmark's sizes, targets and contenders, its Options and their command-line form."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from micrornn.nn.cells import CELLS as CELL_REGISTRY

CLASSES = 65  # one-hot input classes and output classes
SIZES = {"small": (25, 1, 100), "medium": (32, 32, 128), "large": (64, 64, 512)}  # (T, B, H)
DTYPES = ("float64", "float32")
THREAD_MODES = {"1": ("1",), "default": ("default",), "both": ("1", "default")}
ROUNDS = {"small": 200, "medium": 60, "large": 12}  # timed rounds per size (default run)
QUICK_ROUNDS = {"small": 20, "medium": 5, "large": 2}
QUICK_PROMISE = "about two minutes on 2 cores (113 s measured at load 2), longer on a busy machine"
CELLS = tuple(CELL_REGISTRY)  # the built-in cell kinds
BENCH_CELLS = CELLS + ("mgu",)  # what --cells takes: the built-in kinds and the MGU user cell of bench/mgu.py
TARGETS = {"bptt": {"small": 1.05, "medium": 1.05, "large": 1.05},
           "unrolled": {"small": 2.0, "medium": 1.25, "large": 1.15},
           "fused": {"small": 1.1, "medium": 1.1, "large": 1.1},
           "compiled": {"small": 1.3, "medium": 1.1, "large": 1.05}}
GATED_TARGETS = {"fused": {"small": 1.15, "medium": 1.15, "large": 1.15}}  # LSTM, GRU against bptt's NumPy
MGU_TARGETS = {"compiled": {"small": 1.3, "medium": 1.3, "large": 1.3}}  # the compiled MGU against NumPy's MGU
MEMORY_TARGET = 1.3  # peak memory of the unrolled and the compiled step / the floor's
BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
FLOOR = "floor"

# contender key -> (column heading, which process measures it beside the floor)
CONTENDERS = {
    FLOOR: ("floor", "numpy"),
    "bptt": ("bptt", "numpy"),
    "unrolled": ("unrolled", "numpy"),
    "fused": ("fused", "numpy"),
    "compiled": ("compiled", "numpy"),
    "torch_rnn": ("torch nn.RNN*", "torch"),
    "torch_unrolled": ("torch unrolled", "torch"),
    "jax": ("JAX scan", "jax"),
}
GROUPS = ("numpy", "torch", "jax")  # one process each; every process times the floor too


@dataclass
class Options:
    """What to measure; see ``add_arguments`` for the meaning of each field."""

    sizes: tuple = tuple(SIZES)
    cells: tuple = ("rnn",)
    dtypes: tuple = DTYPES
    threads: tuple = ("1",)
    rounds: dict = field(default_factory=lambda: dict(ROUNDS))
    quick: bool = False
    torch: bool = True
    jax: bool = True
    extras: bool = True
    clean_blas_env: bool = False
    isolate: bool = False
    profile: bool = False
    default_allocator: bool = False
    clock: str = "wall"



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options on ``parser`` (shared by the CLI and the script)."""
    parser.add_argument("--sizes", default=",".join(SIZES),
                        help="comma-separated subset of small (T=25 B=1 H=100), medium (T=32 B=32 H=128), "
                             "large (T=64 B=64 H=512); default all")
    parser.add_argument("--repeats", default=None,
                        help=f"timed rounds per size (default: {_rounds_text(ROUNDS)}; "
                             f"with --quick: {_rounds_text(QUICK_ROUNDS)})")
    parser.add_argument("--dtype", default=",".join(DTYPES), help="comma-separated float64,float32 (default both)")
    parser.add_argument("--cells", default="rnn",
                        help="comma-separated rnn,lstm,gru,mgu (default rnn; the LSTM and GRU rows are measured "
                             "against micrornn.bptt's hand-written NumPy routines, the MGU user cell's unrolled and "
                             "compiled steps against a hand-written NumPy MGU step)")
    parser.add_argument("--threads", default="1",
                        help="BLAS threads: 1 | default | both (default 1: per-step costs, as `micrornn train` runs)")
    parser.add_argument("--quick", action="store_true", help=f"few rounds: a rough table in {QUICK_PROMISE}")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is importable")
    parser.add_argument("--no-jax", action="store_true", help="skip JAX even when it is importable")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time (default); cpu: the process's CPU time, which leaves out waiting "
                             "for a core on a busy machine (one-thread runs only)")
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
                             "each step) instead of micrornn.train.allocator.tune_allocator(), as `micrornn train` runs")


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
    cells = _split(args.cells)
    bad = [c for c in cells if c not in BENCH_CELLS]
    if not cells or bad:
        raise ValueError(f"--cells: expected a comma-separated subset of {','.join(BENCH_CELLS)}, got {args.cells!r}")
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
    return Options(sizes=tuple(dict.fromkeys(sizes)), cells=tuple(dict.fromkeys(cells)), dtypes=tuple(dict.fromkeys(dtypes)),
                   threads=THREAD_MODES[args.threads], rounds=rounds, quick=bool(args.quick),
                   torch=not args.no_torch, jax=not args.no_jax, extras=not args.no_extras, clean_blas_env=bool(args.clean_blas_env),
                   isolate=bool(args.isolate), profile=bool(args.profile),
                   default_allocator=bool(args.default_allocator), clock=args.clock)

