"""Benchmark the RNN training step: micrornn unrolled and fused (and torch, when installed) vs NumPy BPTT.

A thin wrapper around ``micrornn.bench``, the same code as ``micrornn bench``:

    python benchmarks/bench_rnn.py [--sizes small,medium,large] [--repeats N] [--dtype float64,float32]
                                   [--threads 1|default|both] [--quick] [--no-torch] [--no-extras]
                                   [--isolate] [--clean-blas-env] [--profile]
"""
from micrornn.bench import main

if __name__ == "__main__":
    raise SystemExit(main(prog="bench_rnn.py"))
