"""Output that never costs a training run: a closed pipe silences it, an encoding that cannot
show a character replaces it (\\xe9-style escapes), and the caller carries on."""
from __future__ import annotations

import os
import sys

__all__ = ["safe_print", "SafeLog", "quiet_on_closed_pipe"]


def _silence_stdout() -> None:
    """Point stdout at /dev/null so later writes (and the flush at exit) do not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _encodable(text, stream) -> str:
    """`text` with the characters `stream`'s encoding cannot write replaced by escapes."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    return text.encode(encoding, "backslashreplace").decode(encoding, "replace")


def safe_print(text="", file=None) -> bool:
    """print(text) that survives a closed pipe and an unencodable character; False if nothing shows."""
    stream = file if file is not None else sys.stdout
    try:
        try:
            print(text, file=stream, flush=True)
        except UnicodeEncodeError:
            print(_encodable(text, stream), file=stream, flush=True)
        return True
    except (BrokenPipeError, ConnectionResetError):
        if stream is sys.stdout:
            _silence_stdout()
        return False
    except (OSError, ValueError):  # a closed file, a full disk behind a redirect
        return False


class SafeLog:
    """Wraps a log callable: an unencodable character is escaped, a closed pipe silences it."""

    def __init__(self, log):
        self.log, self.closed = log, False

    def __call__(self, text) -> None:
        if self.closed:
            return
        try:
            try:
                self.log(text)
            except UnicodeEncodeError:
                self.log(_encodable(text, sys.stdout))
        except (OSError, ValueError):  # a closed pipe or file: stay quiet from now on
            self.closed = True


def quiet_on_closed_pipe(run) -> int:
    """run() -> exit status; a reader that went away (`... | head`) ends it quietly with status 141,
    what a shell reports for a command stopped by a closed pipe, instead of a traceback."""
    try:
        return run()
    except BrokenPipeError:
        _silence_stdout()
        return 141
