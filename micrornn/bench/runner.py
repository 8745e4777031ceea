"""Entry points: ``run`` (used by ``micrornn bench``) and ``main`` (the stand-alone script)."""
from __future__ import annotations

import argparse
import sys

from micrornn.allocator import tune_allocator
from micrornn.bench.measure import (_progress, long_sequence, measure_memory, measure_mode, scalar_throughput,
                                    thread_limit)
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
    from micrornn import bench  # the package, whose docstring describes the benchmark

    parser = argparse.ArgumentParser(prog=prog, description=bench.__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    return run(options)

