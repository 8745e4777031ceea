"""`micrornn bench`: time the RNN training step against the analytic NumPy BPTT and print the table."""
from __future__ import annotations

from micrornn import bench
from micrornn.cli import UsageError


def add_parser(subparsers):
    """Register `bench` and its options (shared with benchmarks/bench_rnn.py via micrornn.bench)."""
    parser = subparsers.add_parser(
        "bench", help="benchmark the training step (unrolled, fused, torch) against the analytic BPTT",
        description=bench.__doc__.splitlines()[0])
    bench.add_arguments(parser)
    return parser


def run(args) -> int:
    """Validate the options (bad input: exit status 2) and print the benchmark report."""
    try:
        options = bench.options_from_args(args)
    except ValueError as err:
        raise UsageError(f"bench: {err}") from None
    return bench.run(options)
