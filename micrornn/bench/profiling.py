"""``--profile``: cProfile of the unrolled step instead of the table."""
from __future__ import annotations

import cProfile
import io
import pstats
import statistics

from micrornn.bench.contenders import contenders_for
from micrornn.bench.measure import thread_limit, time_round_robin
from micrornn.bench.options import FLOOR, SIZES
from micrornn.bench.report import _ms


def profile_unrolled(size: str, dtype: str = "float64", rounds: int | None = None, top: int = 18) -> str:
    """cProfile of the unrolled step (one thread), sorted by own time, with the floor's time beside it."""
    steps = contenders_for(size, dtype)
    rounds = rounds or {"small": 300, "medium": 60, "large": 8}[size]
    with thread_limit("1"):
        for name in (FLOOR, "unrolled"):
            steps[name]()
        ref = time_round_robin({FLOOR: steps[FLOOR], "unrolled": steps["unrolled"]}, rounds, warmup=1)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(rounds):
            steps["unrolled"]()
        profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    stats.print_stats(top)
    T, B, H = SIZES[size]
    head = (f"== cProfile: unrolled step, {size} (T={T} B={B} H={H}) {dtype}, one thread, {rounds} steps; "
            f"unprofiled medians: unrolled {_ms(statistics.median(ref['unrolled']))}, "
            f"floor {_ms(statistics.median(ref[FLOOR]))} ms per step\n")
    return head + _trim_stats(text.getvalue())


def _trim_stats(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip() and "Ordered by" not in line) + "\n"

