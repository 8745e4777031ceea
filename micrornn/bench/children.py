"""Benchmark subprocesses die with their parent: a killed `micrornn bench` leaves nothing running."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # Linux prctl option: the signal a process gets when its parent dies


def die_with_parent():
    """A preexec_fn for subprocess: on Linux the kernel sends the child SIGKILL when this process dies."""
    parent = os.getpid()

    def preexec():
        if sys.platform.startswith("linux"):
            try:
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            except (OSError, AttributeError):
                pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return preexec


def exit_when_orphaned(period=1.0) -> None:
    """In a child: a daemon thread that exits the process once its parent is gone (any platform)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(period)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="exit-when-orphaned").start()
