"""Ctrl-C and SIGTERM during a training run: stop cleanly, and never half-apply an update.

While a run is active (main thread only):
- a first Ctrl-C (or SIGTERM) asks the loop to stop after the current step; if it arrives during
  a validation or a sample, those stop at once (they change nothing that is saved);
- a second Ctrl-C stops at once, except inside a shielded section (the optimizer update and its
  bookkeeping, a checkpoint save), which always completes first.
Either way the run then saves a checkpoint of the last completed step.
"""
from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["RunSignals"]


class RunSignals:
    """The run's SIGINT/SIGTERM handler: `requested` after the first, `forced` after the second."""

    def __init__(self):
        self.requested = self.forced = self.installed = False
        self.shielded = self.interruptible = False
        self.previous = {}

    def _handle(self, signum, frame):
        first = not self.requested
        self.requested = True
        if self.shielded:
            self.forced = self.forced or not first
            return  # the update or save in progress completes; the loop then stops
        if not first:
            self.forced = True
            raise KeyboardInterrupt
        if self.interruptible:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc):
        if self.installed:
            for sig, previous in self.previous.items():
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)

    @contextlib.contextmanager
    def shield(self):
        """Signals arriving inside are recorded, not raised: the section runs to its end."""
        outer, self.shielded = self.shielded, True
        try:
            yield
        finally:
            self.shielded = outer

    @contextlib.contextmanager
    def stoppable(self):
        """Inside (validation, sampling), even a first Ctrl-C raises KeyboardInterrupt at once."""
        outer, self.interruptible = self.interruptible, True
        try:
            if self.requested:
                raise KeyboardInterrupt
            yield
        finally:
            self.interruptible = outer
