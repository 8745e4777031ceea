"""How many threads NumPy's BLAS may use while a command runs (threadpoolctl does the work).

An RNN training step is a few hundred small products; handing each one to a pool of threads costs
more than it saves, and on a busy machine the pool's threads wait for cores. `micrornn train`
therefore runs BLAS on one thread unless told otherwise (the measurements behind that choice are
in the README's performance section). The library never changes thread pools on import: the
command line does, and you may with ``blas_threads``.
"""
from __future__ import annotations

import contextlib

DEFAULT_TRAIN_THREADS = 1  # measured: never slower than more threads for `micrornn train`, quiet or busy
MAX_THREADS = 4096  # more than any machine's cores; a larger count overflows the BLAS library's C int


@contextlib.contextmanager
def blas_threads(n):
    """Within the block, BLAS (and OpenMP) pools use at most ``n`` threads; None or 0 leaves them alone.

    Restores the previous limits on exit. Without threadpoolctl installed nothing is changed
    (set OPENBLAS_NUM_THREADS before starting Python instead).
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_THREADS):
        raise ValueError(f"blas_threads: expected an integer from 0 to {MAX_THREADS} or None, got {n!r}")
    if not n:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n):
        yield


def blas_thread_counts() -> list:
    """The current thread count of every BLAS pool NumPy loaded ([] without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
