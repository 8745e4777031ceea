"""Keep freed NumPy buffers in the process (glibc) instead of re-faulting fresh pages every step.

A training step allocates and frees the same few hundred arrays each time. With glibc's defaults,
freed memory at the top of the heap is handed back to the OS (and arrays above 128 KB are
mmap'ed and unmapped), so every step pays a page fault per 4 KB of fresh memory: measured here at
about 3 us a page, which doubled the unrolled step at T=32 B=32 H=128. ``tune_allocator()`` raises
both thresholds so freed memory is reused. It changes a process-wide setting, so the library never
calls it on import: the command line and the benchmarks do, and you may.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from glibc's malloc.h
_MMAP_MAX = 32 * 1024 * 1024  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit systems


def tune_allocator(keep_mb: int = 1024) -> bool:
    """Let glibc keep up to ``keep_mb`` MB of freed heap and serve arrays up to 32 MB from it.

    Returns True when applied, False where the C library is not glibc (nothing is changed).
    """
    if keep_mb <= 0:
        raise ValueError(f"tune_allocator: keep_mb must be positive, got {keep_mb!r}")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (present only in glibc: the lookup is the test)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trimmed = mallopt(_M_TRIM_THRESHOLD, int(keep_mb) * 1024 * 1024)
    mapped = mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX)
    return bool(trimmed and mapped)
