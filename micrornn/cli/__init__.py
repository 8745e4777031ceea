"""The `micrornn` command: one sub-command per module in this package."""
from __future__ import annotations

import argparse
import importlib
import math
import sys

from micrornn import __version__

# Each name is a module of this package with `add_parser(subparsers)` and `run(args) -> int`.
COMMANDS = ["gradcheck", "viz", "bench", "train", "sample", "eval", "plot", "export"]


class UsageError(Exception):
    """Bad user input: printed as one line, exit status 2, no traceback."""


def _number(kind, strict):
    """argparse type: a finite int/float above 0 (strictly if `strict`), else a clear one-line error."""
    word = {(int, True): "a positive integer", (int, False): "a non-negative integer",
            (float, True): "a positive number", (float, False): "a non-negative number"}[kind, strict]

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (strict and value == 0):
            raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}")
        return value
    return parse


positive_int, non_negative_int = _number(int, True), _number(int, False)


def thread_count(text) -> int:
    """argparse type: a BLAS thread count from 0 (the library's default) to MAX_THREADS."""
    from micrornn.train.threads import MAX_THREADS
    value = non_negative_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_THREADS} threads, got {text!r}")
    return value
positive_float, non_negative_float = _number(float, True), _number(float, False)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every sub-command registered."""
    parser = _Parser(prog="micrornn", description="Recurrent networks on a reverse-mode autodiff engine.")
    parser.add_argument("--version", action="version", version=f"micrornn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"micrornn.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse argv, run the chosen command, map usage errors to exit status 2."""
    try:
        args = build_parser().parse_args(argv)
        return int(args._run(args) or 0)
    except UsageError as err:
        try:
            print(f"error: {err}", file=sys.stderr)
        except (OSError, ValueError):  # stderr closed as well: the status alone tells
            pass
        return 2
    except BrokenPipeError:  # the reader went away (`micrornn gradcheck | head`): stop quietly, as cat does
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    import os
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture): nothing to flush there
        pass
