"""`micrornn eval`: validation loss of a checkpoint, in nats and bits per character (one stream, or nanoGPT's
random windows)."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from micrornn.cli import UsageError, non_negative_int, positive_int
from micrornn.cli.cells import cell_argument, resolve_cell
from micrornn.cli.train import DEFAULT_CHECKPOINT
from micrornn.train.checkpoint import CheckpointError
from micrornn.train.data import BUNDLED_CORPUS_SHA256, bundled_corpus_path, load_text, split_point
from micrornn.train.loop import bits_per_char, evaluate
from micrornn.train.sample import load_model
from micrornn.train.windows import windowed_loss


def add_parser(subparsers):
    """Register the `eval` sub-command."""
    p = subparsers.add_parser(
        "eval", help="validation loss of a checkpoint in nats and bits per character",
        description="Score a checkpoint written by `micrornn train` on the validation split of its text (the "
                    "last 10% by default: nanoGPT's split of tinyshakespeare), read as one stream with the "
                    "hidden state carried (--protocol stream), or as nanoGPT's estimate: random windows each run "
                    "from a zero state (--protocol windows), and print nats and bits per character.")
    p.add_argument("--cell", type=cell_argument, metavar="CELL",
                   help="the user cell (package.module:Class) a checkpoint was trained with: a checkpoint names it "
                        "but is never allowed to import it, so loading one needs the same --cell here")
    p.add_argument("--checkpoint", metavar="PATH", default=str(DEFAULT_CHECKPOINT),
                   help=f"checkpoint to score (default {DEFAULT_CHECKPOINT})")
    p.add_argument("--data", metavar="PATH",
                   help="text to take the split from (default: the text the checkpoint was trained on)")
    p.add_argument("--split", choices=("val", "train", "all"), default="val",
                   help="which part of the text to score (default val)")
    p.add_argument("--max-chars", type=positive_int, metavar="N",
                   help="score only the first N characters of the part (default: all of it)")
    p.add_argument("--protocol", choices=("stream", "windows"), default="stream",
                   help="stream: the part read as one stream with the state carried; windows: the mean loss over "
                        "--windows random windows of --window characters, each from a zero state (nanoGPT's "
                        "estimate) (default stream)")
    p.add_argument("--window", type=positive_int, metavar="N",
                   help="--protocol windows: predictions per window (default 256)")
    p.add_argument("--windows", type=positive_int, metavar="N",
                   help="--protocol windows: how many windows (default 2000)")
    p.add_argument("--seed", type=non_negative_int, metavar="N",
                   help="--protocol windows: the seed that draws the windows (default 0)")
    return p


def _load(path, cell=None):
    if os.path.isdir(path):
        raise UsageError(f"--checkpoint: {path} is a directory, not a checkpoint file")
    try:
        return load_model(path, resolve_cell(cell) or cell)  # a built-in --cell must match too
    except FileNotFoundError:
        raise UsageError(f"--checkpoint: checkpoint not found: {path}") from None
    except CheckpointError as e:
        raise UsageError(f"--checkpoint: {e}") from None


def _text(args, meta):
    """(text, description) of the text to score: --data, else the checkpoint's own source."""
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    source = args.data if args.data is not None else data.get("source")
    if not isinstance(source, (str, type(None))):
        raise UsageError(f"--checkpoint: {args.checkpoint} records data source {source!r:.80}, not a path; "
                         f"pass --data PATH")
    path = bundled_corpus_path() if source is None else Path(source)
    option = "--data" if args.data is not None else "the checkpoint's training text"
    try:
        text = load_text(path)
    except (OSError, ValueError) as e:
        hint = "" if args.data is not None else " (pass --data PATH)"
        raise UsageError(f"{option}: {e}{hint}") from None
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    name = "the bundled tinyshakespeare" if sha == BUNDLED_CORPUS_SHA256 else str(path)
    if data.get("sha256") not in (None, sha):
        name += " (not the text this checkpoint was trained on)"
    return text, name


WINDOW_DEFAULTS = {"window": 256, "windows": 2000, "seed": 0}


def run(args) -> int:
    """Print the checkpoint, the text scored, and its loss in nats and bits per character."""
    given = [f"--{name}" for name in WINDOW_DEFAULTS if getattr(args, name) is not None]
    if args.protocol == "stream" and given:
        raise UsageError(f"{', '.join(given)} apply to --protocol windows only (the stream protocol reads the part once)")
    for name, default in WINDOW_DEFAULTS.items():
        setattr(args, name, default if getattr(args, name) is None else getattr(args, name))
    model, vocab, meta = _load(args.checkpoint, args.cell)
    text, name = _text(args, meta)
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    val_fraction = config.get("val_fraction", 0.1)
    if not isinstance(val_fraction, float) or not 0 < val_fraction < 1:
        raise UsageError(f"--checkpoint: bad val_fraction {val_fraction!r} in {args.checkpoint}")
    cut = split_point(len(text), val_fraction)
    part = {"val": text[cut:], "train": text[:cut], "all": text}[args.split]
    if len(part) < 2:
        raise UsageError(f"--split {args.split}: {name} has only {len(part)} characters there; need at least 2")
    try:
        ids = vocab.encode(part)
    except ValueError as e:
        raise UsageError(f"{name}: {e}; this checkpoint cannot score it") from None
    m = model.config
    cell = m.get("cell", "rnn") + (" with layer norm" if m.get("layer_norm") else "")
    print(f"checkpoint: {args.checkpoint} (step {meta.get('step', '?')}, {m['num_layers']}-layer {cell}, "
          f"hidden {m['hidden_size']}, {model.num_parameters():,} parameters"
          f"{', its averaged weights (ema ' + format(config['ema'], 'g') + ')' if config.get('ema') else ''})")
    scored = len(ids) - 1 if args.max_chars is None else min(args.max_chars, len(ids) - 1)
    which = {"val": f"validation split (last {1 - cut / len(text):.0%})", "train": "training split",
             "all": "whole text"}[args.split]
    start = time.perf_counter()
    if args.protocol == "windows":
        ids = ids[:scored + 1]
        if args.window > scored:
            raise UsageError(f"--window {args.window}: the {which} scored has only {scored:,} predictions; "
                             f"use a smaller --window")
        print(f"text: {name}, {which}: {len(part):,} characters; protocol windows: {args.windows:,} random windows "
              f"of {args.window} predictions from a zero state (seed {args.seed})")
        nats = windowed_loss(model, ids, args.window, args.windows, args.seed)
    else:
        print(f"text: {name}, {which}: {len(part):,} characters; protocol stream: {scored:,} predictions as one "
              f"stream, the state carried")
        nats = evaluate(model, ids, max_chars=args.max_chars)
    print(f"{args.split}: {nats:.4f} nats/char, {bits_per_char(nats):.4f} bits/char "
          f"({time.perf_counter() - start:.1f} s)")
    return 0
