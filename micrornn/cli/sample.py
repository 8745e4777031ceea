"""`micrornn sample`: generate text from a checkpoint written by `micrornn train`."""
from __future__ import annotations

import itertools
import os
import sys

from micrornn.train.checkpoint import CheckpointError
from micrornn.cli import UsageError, non_negative_float, non_negative_int, positive_int
from micrornn.cli.cells import cell_argument, resolve_cell
from micrornn.cli.train import DEFAULT_CHECKPOINT
from micrornn.train.sample import MAX_SAMPLE_LENGTH, generate, load_model


def add_parser(subparsers):
    """Register the `sample` sub-command."""
    p = subparsers.add_parser(
        "sample", help="generate text from a trained checkpoint",
        description="Read a checkpoint written by `micrornn train`, feed it the priming text and "
                    "print it followed by LENGTH sampled characters.")
    p.add_argument("--cell", type=cell_argument, metavar="CELL",
                   help="the user cell (package.module:Class) a checkpoint was trained with: a checkpoint names it "
                        "but is never allowed to import it, so loading one needs the same --cell here")
    p.add_argument("--checkpoint", metavar="PATH", default=str(DEFAULT_CHECKPOINT),
                   help=f"checkpoint to sample from (default {DEFAULT_CHECKPOINT})")
    p.add_argument("--length", type=non_negative_int, default=500, metavar="N",
                   help=f"characters to generate after the prime, written as they come (default 500, at most "
                        f"{MAX_SAMPLE_LENGTH:,})")
    p.add_argument("--temperature", type=non_negative_float, default=0.8, metavar="T",
                   help="softmax temperature: lower is more conservative, 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=positive_int, metavar="K",
                   help="draw only among the K most likely characters (default: all)")
    p.add_argument("--prime", default="", metavar="TEXT", help="text to start from (default: a newline)")
    p.add_argument("--seed", type=non_negative_int, metavar="S", help="random seed (default: fresh randomness)")
    return p


def run(args) -> int:
    """Print the prime and the sampled continuation."""
    if args.length > MAX_SAMPLE_LENGTH:
        raise UsageError(f"--length: {args.length:,} is more than the {MAX_SAMPLE_LENGTH:,} characters one sample "
                         f"may have")
    if os.path.isdir(args.checkpoint):
        raise UsageError(f"--checkpoint: {args.checkpoint} is a directory, not a checkpoint file")
    try:
        model, vocab, _ = load_model(args.checkpoint, resolve_cell(args.cell) or args.cell)  # a built-in --cell must match too
    except FileNotFoundError:
        raise UsageError(f"--checkpoint: checkpoint not found: {args.checkpoint}") from None
    except CheckpointError as e:
        raise UsageError(f"--checkpoint: {e}") from None
    unknown = [c for c in dict.fromkeys(args.prime) if c not in vocab]
    if unknown:
        listed = ", ".join(repr(c) for c in unknown[:5])
        raise UsageError(f"--prime: character(s) {listed} not in the checkpoint's vocabulary of "
                         f"{len(vocab)} characters")
    pieces = generate(model, vocab, args.length, args.temperature, args.prime, args.seed, top_k=args.top_k)
    _stream(args.prime, pieces)
    return 0


def _stream(prime, pieces) -> None:
    """Write the prime, then each piece as it is generated, then a newline (a closed pipe ends it)."""
    out = sys.stdout
    for text in itertools.chain([prime], pieces):
        try:
            out.write(text)
        except UnicodeEncodeError:
            out.write(text.encode(out.encoding or "ascii", "backslashreplace").decode(out.encoding or "ascii"))
        out.flush()
    out.write("\n")
    out.flush()
