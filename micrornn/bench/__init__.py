"""Benchmarks of the RNN training step against a hand-written NumPy floor, with torch and JAX when installed.

One training step = forward + softmax cross-entropy summed over time and batch + backward, for a
one-layer tanh ``SequenceModel`` with index inputs of 65 classes and 65 outputs. Every contender is
timed interleaved round-robin with the floor (floor.py: the tightest NumPy step we could write) in
one process, and reported as the ratio of the two medians: micrornn's analytic ``bptt``, the
unrolled graph and the fused layer here; torch (nn.RNN, and eager autograd over the unrolled ops)
and JAX (jit(value_and_grad(lax.scan))) each in a process of their own, never dependencies. Also:
peak memory against the floor, sequences of 1,000 and 10,000 steps, the scalar engine's throughput.

Used by ``micrornn bench`` (``add_arguments``, ``options_from_args``, ``run``) and by
``benchmarks/bench_rnn.py`` (``main``). Benchmarks print numbers; they are never timed tests.

Layout: options.py (sizes, targets, Options), floor.py, mgu.py (the MGU user cell and its NumPy
floor, for ``--cells mgu``), contenders.py (the steps timed), measure.py
(timing, here or in a subprocess), extras.py (memory, long sequences, scalar engine), profiling.py,
report.py, runner.py (``run``, ``main``) and __main__.py (``python -m micrornn.bench``, and the
``--child`` side of ``measure_in_subprocess``).
"""
from micrornn.bench.contenders import (available, bptt_step, contenders_for, engine_step, floor_step, jax_step,
                                       make_case, torch_steps)
from micrornn.bench.extras import (count_value_nodes, long_sequences, measure_memory, peak_bytes, scalar_graph,
                                   scalar_throughput)
from micrornn.bench.floor import RNNFloor
from micrornn.bench.mgu import MGU, MGUFloor
from micrornn.bench.measure import (blas_info, loss_mismatches, measure_in_subprocess, measure_mode, measure_timings,
                                    thread_limit, time_round_robin)
from micrornn.bench.options import (CLASSES, CONTENDERS, DTYPES, FLOOR, MEMORY_TARGET, QUICK_PROMISE, QUICK_ROUNDS,
                                    ROUNDS, SIZES, TARGETS, THREAD_MODES, Options, add_arguments, options_from_args)
from micrornn.bench.profiling import profile_unrolled
from micrornn.bench.report import format_extras, format_memory, format_timings, header_lines
from micrornn.bench.runner import main, run

__all__ = [
    "available", "bptt_step", "contenders_for", "engine_step", "floor_step", "jax_step", "make_case", "torch_steps",
    "count_value_nodes", "long_sequences", "measure_memory", "peak_bytes", "scalar_graph", "scalar_throughput",
    "RNNFloor", "MGU", "MGUFloor", "blas_info", "loss_mismatches", "measure_in_subprocess", "measure_mode", "measure_timings",
    "thread_limit", "time_round_robin", "CLASSES", "CONTENDERS", "DTYPES", "FLOOR", "MEMORY_TARGET",
    "QUICK_PROMISE", "QUICK_ROUNDS", "ROUNDS", "SIZES", "TARGETS", "THREAD_MODES", "Options", "add_arguments",
    "options_from_args", "profile_unrolled", "format_extras", "format_memory", "format_timings", "header_lines",
    "main", "run",
]
