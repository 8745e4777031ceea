"""One run per checkpoint: an OS lock on a sidecar file `.<name>.lock` beside the checkpoint.

The kernel releases an flock when its process ends, however it ends (SIGKILL included), so a
crashed run never leaves a lock that blocks the next one. A run that ends (or is refused) removes
the file while it still holds the lock; a run that finds the file it locked removed locks afresh.
Where fcntl is missing (Windows) runs are not locked.
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


def _same_file(fd, path) -> bool:
    """Whether `path` still names the file open as `fd` (its previous holder may have removed it)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _acquire(path, checkpoint) -> int:
    """An open fd of `path` holding its exclusive lock; CheckpointLocked if another process holds it."""
    for _ in range(100):  # retried only when the lock file was removed between our open and our lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise CheckpointLocked(f"{checkpoint} is in use by another micrornn train (pid {owner}); wait for it "
                                   f"to finish or choose another --checkpoint") from None
        if _same_file(fd, path):
            return fd
        os.close(fd)
    raise OSError(f"the lock file {path} keeps being replaced")


@contextlib.contextmanager
def checkpoint_lock(checkpoint):
    """Hold the run lock of `checkpoint` (its directory must exist); CheckpointLocked if taken.

    The lock file is removed when the block ends, however it ends (a refused run leaves nothing
    behind); a process killed inside the block leaves the file, unlocked, for the next run to reuse.
    """
    if fcntl is None:
        yield
        return
    path = lock_path(checkpoint)
    fd = _acquire(path, checkpoint)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        if _same_file(fd, path):
            try:
                os.unlink(path)  # still locked: a process that opened it meanwhile retries on a new file
            except OSError:
                pass
        os.close(fd)  # closing releases the lock
