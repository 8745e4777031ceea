"""Scalar-engine throughput: nodes per second to build and back-propagate an MLP-like graph of Values.

Compares micrornn.Value with micrograd.engine.Value when the ``micrograd`` package is installed
(``pip install micrograd``; a benchmark-only comparison, never a dependency of micrornn). Both
engines build the same graph (dense layers of ``relu(sum_i w_i x_i + b)`` with the sums written as
chains of ``+``), in the same process; each figure is the median of several repeats.

    python benchmarks/scalar_throughput.py [--width 64] [--layers 24] [--repeats 5]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from micrornn import Value


def make_params(value_cls, width, layers, seed=0):
    """Inputs and per-layer (weights, biases) as leaf Values of ``value_cls``."""
    rng = random.Random(seed)
    xs = [value_cls(rng.uniform(-1, 1)) for _ in range(width)]
    params = [([[value_cls(rng.gauss(0, 1 / width ** 0.5)) for _ in range(width)] for _ in range(width)],
               [value_cls(rng.uniform(-0.1, 0.1)) for _ in range(width)]) for _ in range(layers)]
    return xs, params


def forward(xs, params):
    """A stack of dense relu layers, reduced to one scalar loss."""
    h = xs
    for weights, biases in params:
        out = []
        for w_row, b in zip(weights, biases):
            acc = b
            for w, x in zip(w_row, h):
                acc = acc + w * x
            out.append(acc.relu())
        h = out
    loss = h[0]
    for v in h[1:]:
        loss = loss + v
    return loss


def count_nodes(root) -> int:
    """Number of distinct Values reachable from root (works for both engines)."""
    seen, stack = {id(root)}, [root]
    while stack:
        node = stack.pop()
        parents = getattr(node, "_parents", None)
        if parents is None:  # micrograd keeps a set named _prev
            parents = node._prev
        for p in parents:
            if id(p) not in seen:
                seen.add(id(p))
                stack.append(p)
    return len(seen)


def measure(value_cls, width, layers, repeats):
    """Median (build seconds, backward seconds) and the node count."""
    builds, backs, nodes = [], [], 0
    for r in range(repeats):
        xs, params = make_params(value_cls, width, layers, seed=r)
        t0 = time.perf_counter()
        loss = forward(xs, params)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        builds.append(t1 - t0)
        backs.append(t2 - t1)
        nodes = count_nodes(loss)
        del loss, xs, params
    return statistics.median(builds), statistics.median(backs), nodes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64, help="neurons per layer (and inputs)")
    parser.add_argument("--layers", type=int, default=24, help="number of dense layers")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    # micrograd sorts the graph recursively: depth here is about layers * (width + 2)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * args.layers * (args.width + 4)))

    engines = [("micrornn.Value", Value)]
    try:
        from micrograd.engine import Value as MicrogradValue
        engines.append(("micrograd.engine.Value", MicrogradValue))
    except ImportError:
        print("(micrograd not installed: pip install micrograd to compare)")

    rows = []
    for name, cls in engines:
        build, back, nodes = measure(cls, args.width, args.layers, args.repeats)
        rows.append((name, nodes, build, back))
    print(f"graph: {args.layers} layers x {args.width} wide, median of {args.repeats} repeats")
    print(f"{'engine':<24}{'nodes':>9}{'build s':>10}{'backward s':>12}{'build n/s':>12}"
          f"{'backward n/s':>14}{'total n/s':>12}")
    for name, nodes, build, back in rows:
        print(f"{name:<24}{nodes:>9}{build:>10.3f}{back:>12.3f}{nodes / build:>12.3g}"
              f"{nodes / back:>14.3g}{nodes / (build + back):>12.3g}")
    if len(rows) == 2:
        (_, n0, b0, k0), (_, n1, b1, k1) = rows
        print(f"ratio micrornn / micrograd (nodes/s): build {(n0 / b0) / (n1 / b1):.2f}x, "
              f"backward {(n0 / k0) / (n1 / k1):.2f}x, total {(n0 / (b0 + k0)) / (n1 / (b1 + k1)):.2f}x")


if __name__ == "__main__":
    main()
