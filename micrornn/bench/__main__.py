"""``python -m micrornn.bench``: the stand-alone benchmark, or (``--child``) one subprocess measurement."""
from __future__ import annotations

import json
import sys

from micrornn.train.allocator import tune_allocator
from micrornn.train.console import quiet_on_closed_pipe
from micrornn.bench.children import exit_when_orphaned
from micrornn.bench.measure import measure_timings
from micrornn.bench.options import Options
from micrornn.bench.runner import main


def _child(payload: str) -> None:
    """Subprocess side of ``measure_in_subprocess``: print the timings as one JSON line."""
    spec = json.loads(payload)
    options = Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["options"].items()})
    if not options.default_allocator:
        tune_allocator()
    print(json.dumps(measure_timings(options, spec["mode"], spec["group"])), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        exit_when_orphaned()  # where the kernel cannot kill us with the parent (not Linux)
        _child(sys.argv[2])
    else:
        raise SystemExit(quiet_on_closed_pipe(lambda: main(prog="python -m micrornn.bench")))
