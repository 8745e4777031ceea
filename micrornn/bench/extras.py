"""Beyond the timing table: peak memory against the floor, long sequences, the scalar engine."""
from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc

import numpy as np

import micrornn
from micrornn.bench.contenders import bptt_step, compiled_step, engine_step, make_case, parameter_arrays
from micrornn.bench.floor import RNNFloor
from micrornn.bench.measure import time_round_robin
from micrornn.bench.options import CLASSES, FLOOR
from micrornn.nn import SequenceModel


def peak_bytes(fn) -> int:
    """Peak traced allocation (Python objects and NumPy buffers) of one call, above what was live before."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()


def floor_bytes(floor: RNNFloor) -> int:
    """The floor's memory: its preallocated buffers plus whatever one step allocates on top."""
    floor.step()
    return floor.workspace_bytes() + peak_bytes(floor.step)


def measure_memory(sizes, dtypes) -> list:
    """Peak memory of one step of the floor, bptt, unrolled, fused and compiled (parameters and inputs
    excluded; the compiled program's own buffers, which live between calls, counted).

    The engine's steps are warmed first and start with their gradients cleared, as in training, so
    their peak includes the gradient arrays the floor keeps in its buffers."""
    rows = []
    for dtype in dtypes:
        for size in sizes:
            case = make_case(size, dtype)
            row = {"size": size, "dtype": dtype,
                   FLOOR: floor_bytes(RNNFloor(*parameter_arrays(case.model), case.indices, case.targets))}
            for name, step in (("bptt", bptt_step(case)),
                               ("unrolled", engine_step(case.model, case.indices, case.targets)),
                               ("fused", engine_step(case.fused, case.indices, case.targets))):
                step()
                row[name] = peak_bytes(step)
            row["compiled"] = compiled_bytes(case)
            rows.append(row)
    return rows


def compiled_bytes(case) -> int:
    """The compiled unrolled step's memory: what its first call (the trace) leaves allocated, the
    program's buffers kept from call to call, plus the peak of one replayed step on top."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        step = compiled_step(case.model, case.indices, case.targets)
        step()  # the trace: the program and its buffers are made here and kept
        for p in case.model.parameters():
            p.grad = None  # the gradients count in the step's peak, as in engine_step's
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
    step()
    return kept + peak_bytes(step)


def long_sequences(lengths=(1_000, 10_000), hidden: int = 100, repeats: int = 3) -> list:
    """Unrolled and floor forward+backward over one long sequence (B=1) per length: seconds and peak bytes.

    The time per step of the unrolled graph should not grow with the length (no superlinear term)."""
    rows = []
    for steps in lengths:
        rng = np.random.default_rng(0)
        model = SequenceModel(CLASSES, hidden, CLASSES, rng=0)
        indices = rng.integers(0, CLASSES, size=(steps, 1))
        targets = rng.integers(0, CLASSES, size=(steps, 1))
        floor = RNNFloor(*parameter_arrays(model), indices, targets)
        runs = {"unrolled": engine_step(model, indices, targets), FLOOR: floor.step}
        times = time_round_robin(runs, repeats, warmup=1)
        rows.append({"steps": steps, "hidden": hidden,
                     "unrolled": {"time": statistics.median(times["unrolled"]),
                                  "peak": peak_bytes(runs["unrolled"])},
                     FLOOR: {"time": statistics.median(times[FLOOR]), "peak": floor_bytes(floor)}})
    return rows


def scalar_graph(width: int, layers: int, seed: int = 0):
    """Leaves and a builder for dense relu layers of Values, relu(sum_i w_i x_i + b), summed to a scalar."""
    rng = random.Random(seed)
    xs = [micrornn.Value(rng.uniform(-1, 1)) for _ in range(width)]
    params = [([[micrornn.Value(rng.gauss(0, width ** -0.5)) for _ in range(width)] for _ in range(width)],
               [micrornn.Value(0.0) for _ in range(width)]) for _ in range(layers)]

    def build():
        h = xs
        for weights, biases in params:
            h = [_dense_unit(w_row, h, b) for w_row, b in zip(weights, biases)]
        loss = h[0]
        for v in h[1:]:
            loss = loss + v
        return loss
    return build


def _dense_unit(w_row, h, b):
    acc = b
    for w, x in zip(w_row, h):
        acc = acc + w * x
    return acc.relu()


def count_value_nodes(root) -> int:
    """Distinct Values reachable from root, leaves included."""
    seen, stack = {id(root)}, [root]
    while stack:
        for p in stack.pop().parents:
            if id(p) not in seen:
                seen.add(id(p))
                stack.append(p)
    return len(seen)


def scalar_throughput(nodes: int = 100_000, repeats: int = 3) -> dict:
    """Build + backward of a ~``nodes``-node Value graph: medians and nodes per second."""
    width = 50
    layers = max(1, round(nodes / (3 * width * width + 2 * width)))
    build = scalar_graph(width, layers)
    builds, backs, count = [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        root = build()
        mid = time.perf_counter()
        root.backward()
        builds.append(mid - start)
        backs.append(time.perf_counter() - mid)
        count = count_value_nodes(root)
        del root
    b, k = statistics.median(builds), statistics.median(backs)
    return {"nodes": count, "build": b, "backward": k, "nodes_per_s": count / (b + k),
            "backward_nodes_per_s": count / k}
