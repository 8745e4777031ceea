"""One run per checkpoint: an OS lock on a sidecar file `.<name>.lock` beside the checkpoint.

The kernel releases an flock when its process ends, however it ends (SIGKILL included), so a
crashed run never leaves a lock that blocks the next one. Where fcntl is missing (Windows) runs
are not locked.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["CheckpointLocked", "lock_path", "checkpoint_lock"]


class CheckpointLocked(RuntimeError):
    """Another process holds the run lock of this checkpoint."""


def lock_path(checkpoint) -> Path:
    """The sidecar file whose lock guards `checkpoint`."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f".{checkpoint.name}.lock")


@contextlib.contextmanager
def checkpoint_lock(checkpoint):
    """Hold the run lock of `checkpoint` (its directory must exist); CheckpointLocked if taken."""
    if fcntl is None:
        yield
        return
    path = lock_path(checkpoint)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise CheckpointLocked(f"{checkpoint} is in use by another micrornn train (pid {owner}); wait for it "
                                   f"to finish or choose another --checkpoint") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
