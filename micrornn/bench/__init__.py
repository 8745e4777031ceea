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

Layout: options.py (sizes, targets, Options), contenders.py (the steps timed), measure.py (timing,
memory, extras), profiling.py, report.py (the tables), runner.py (``run``, ``main``) and
__main__.py (``python -m micrornn.bench``, and the ``--child`` side of ``measure_in_subprocess``).
"""
from micrornn.bench.contenders import (contenders_for, engine_step, make_case, reference_step, torch_available,
                                       torch_step)
from micrornn.bench.measure import (blas_info, count_value_nodes, long_sequence, loss_mismatches, measure_in_subprocess,
                                    measure_memory, measure_mode, measure_timings, peak_bytes, scalar_graph,
                                    scalar_throughput, thread_limit, time_round_robin)
from micrornn.bench.options import (BLAS_ENV_VARS, CLASSES, CONTENDERS, DTYPES, MEMORY_TARGET, QUICK_ROUNDS, REFERENCE,
                                    ROUNDS, SIZES, TARGETS, THREAD_ENV_VARS, THREAD_MODES, Options, add_arguments,
                                    options_from_args)
from micrornn.bench.profiling import profile_unrolled
from micrornn.bench.report import format_extras, format_memory, format_timings, header_lines
from micrornn.bench.runner import main, run

__all__ = [
    "BLAS_ENV_VARS", "CLASSES", "CONTENDERS", "DTYPES", "MEMORY_TARGET", "QUICK_ROUNDS", "REFERENCE", "ROUNDS",
    "SIZES", "TARGETS", "THREAD_ENV_VARS", "THREAD_MODES", "Options", "add_arguments", "options_from_args",
    "contenders_for", "engine_step", "make_case", "reference_step", "torch_available", "torch_step",
    "blas_info", "count_value_nodes", "long_sequence", "loss_mismatches", "measure_in_subprocess",
    "measure_memory", "measure_mode", "measure_timings", "peak_bytes", "scalar_graph", "scalar_throughput",
    "thread_limit", "time_round_robin", "profile_unrolled", "format_extras", "format_memory",
    "format_timings", "header_lines", "main", "run",
]
