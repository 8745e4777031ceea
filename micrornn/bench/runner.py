"""Entry points: ``run`` (used by ``micrornn bench``) and ``main`` (the stand-alone script)."""
from __future__ import annotations

import argparse
import sys

from micrornn.train.allocator import tune_allocator
from micrornn.bench.extras import long_sequences, measure_memory, scalar_throughput
from micrornn.bench.measure import measure_mode, progress, thread_limit
from micrornn.bench.options import Options, add_arguments, options_from_args
from micrornn.bench.profiling import profile_unrolled
from micrornn.bench.report import format_extras, format_memory, format_timings, header_lines


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
        progress(f"timing, threads={mode} ...")
        emit(format_timings(measure_mode(options, mode), options))
        emit()
    progress("peak memory ...")
    emit(format_memory(measure_memory(options.sizes, options.dtypes)))
    if options.extras:
        progress("scalar engine and long sequences ...")
        with thread_limit("1"):
            scalar = scalar_throughput(100_000, repeats=1 if options.quick else 3)
            sequences = long_sequences((1_000, 10_000), repeats=1 if options.quick else 3)
        emit()
        emit(format_extras(scalar, sequences))
    return 0


def main(argv=None, prog=None) -> int:
    """Stand-alone entry point (benchmarks/bench_rnn.py, ``python -m micrornn.bench``); bad options exit 2."""

    parser = argparse.ArgumentParser(prog=prog, description="Benchmarks of the RNN training step against a hand-written NumPy floor, with torch and JAX when installed.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    return run(options)
