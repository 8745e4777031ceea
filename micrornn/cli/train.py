"""`micrornn train`: train a character-level RNN on a text file (default: the bundled Shakespeare)."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from micrornn.train.allocator import tune_allocator
from micrornn.train.checkpoint import CheckpointError
from micrornn.cli import UsageError, non_negative_float, non_negative_int, positive_float, positive_int
from micrornn.train.data import bundled_corpus_path, load_text
from micrornn.train import OPTIMIZERS, TrainConfig, Trainer, bits_per_char, plot_history
from micrornn.train.console import safe_print
from micrornn.train.lock import CheckpointLocked, checkpoint_lock
from micrornn.train.trainer import CheckpointSaveError
from micrornn.train.config import CELLS, PRESETS
from micrornn.cli.cells import CELL_HELP, cell_argument, resolve_cell
from micrornn.train.references import standing
from micrornn.train.threads import DEFAULT_TRAIN_THREADS, blas_threads

DEFAULT_CHECKPOINT = Path("runs") / "char_rnn.npz"
DEFAULTS = TrainConfig()
PLOT_FORMATS = (".png", ".pdf", ".svg")


def add_parser(subparsers):
    """Register the `train` sub-command."""
    d = DEFAULTS
    p = subparsers.add_parser(
        "train", help="train a character-level language model (under 2 minutes by default)",
        description="Train a character-level RNN, LSTM or GRU on a UTF-8 text file with truncated BPTT and Adam, "
                    "print progress, validation loss (nats and bits per character, the whole validation split "
                    "as one stream) and samples, and write a checkpoint and a loss-curve PNG. With no options: "
                    "the bundled tinyshakespeare (nanoGPT's 90/10 split) and a 2-layer RNN that trains in under "
                    "2 minutes on 2 quiet CPU cores; --preset rnn|lstm|gru|best for longer runs. Ctrl-C saves a "
                    "checkpoint and stops; --resume continues it exactly.")
    a = p.add_argument
    a("--data", metavar="PATH", help="UTF-8 text file, or .gz of one, to train on (default: the bundled "
                                     "tinyshakespeare, 1,115,394 characters)")
    a("--preset", choices=sorted(PRESETS), help="a configuration for a longer run, stopped at its time budget: rnn, lstm, gru "
      "(15 minutes on 2 cores) or best (60 minutes); options given explicitly override it")
    a("--cell", type=cell_argument, metavar="CELL", help=f"recurrent cell: {CELL_HELP} (default {d.cell})")
    a("--bidirectional", action="store_true", help="refused: a language model reads left to right")
    a("--dropout", type=_probability, metavar="P", help=f"dropout between stacked layers (default {d.dropout:g})")
    a("--hidden-size", type=positive_int, metavar="N", help=f"hidden units per layer (default {d.hidden_size})")
    a("--layers", type=positive_int, metavar="N", dest="num_layers", help=f"stacked RNN layers (default {d.num_layers})")
    a("--nonlinearity", choices=("tanh", "relu"), help=f"hidden activation (default {d.nonlinearity})")
    a("--seq-len", type=positive_int, metavar="T", help=f"BPTT truncation length (default {d.seq_len})")
    a("--batch-size", type=positive_int, metavar="B", help=f"parallel streams (default {d.batch_size})")
    a("--steps", type=non_negative_int, metavar="N",
      help=f"train until this many steps in total, resumed steps included (default {d.steps})")
    a("--lr", type=positive_float, help="learning rate (default: adam 3e-3, adagrad 0.1, sgd 0.5)")
    a("--lr-schedule", choices=("cosine", "constant"),
      help=f"cosine: decay the lr to 0 at the last step; constant: keep it (default {d.lr_schedule})")
    a("--optimizer", choices=sorted(OPTIMIZERS), help=f"default {d.optimizer}; sgd uses momentum 0.9")
    a("--clip", type=non_negative_float, metavar="NORM",
      help=f"max global gradient norm, 0 = no clipping (default {d.clip:g})")
    a("--warmup", type=non_negative_int, metavar="N", help=f"linear lr warm-up steps (default {d.warmup})")
    a("--state-reset", type=_probability, metavar="P",
      help=f"each step, zero each stream's carried state with probability P (default {d.state_reset:g})")
    a("--time-budget", type=non_negative_float, metavar="SECONDS",
      help="stop training in time for the final validation to end within SECONDS of wall time; the "
           "cosine decay follows the time used when it is ahead of the steps (default 0: no limit)")
    a("--checkpoint", metavar="PATH", default=str(DEFAULT_CHECKPOINT),
      help=f"checkpoint file to write (and read with --resume) (default {DEFAULT_CHECKPOINT})")
    a("--resume", action="store_true", help="continue the run saved in --checkpoint")
    a("--overwrite", action="store_true", help="start a new run even if --checkpoint exists, replacing it")
    a("--seed", type=non_negative_int, help=f"random seed (default {d.seed})")
    a("--fused", action=argparse.BooleanOptionalAction, default=None,
      help="run each layer as one fused primitive whose VJP is the hand-written BPTT (the default), or "
           "with --no-fused as the unrolled graph (same model and loss, slower)")
    a("--dtype", choices=("float32", "float64"), help=f"parameter dtype (default {d.dtype})")
    a("--threads", type=non_negative_int, default=DEFAULT_TRAIN_THREADS, metavar="N",
      help=f"BLAS threads, 0 = NumPy's own default (default {DEFAULT_TRAIN_THREADS}: small products "
           "run slower on more threads)")
    a("--plot", metavar="FILE", help="loss-curve image (default: the checkpoint path with _loss.png)")
    a("--no-plot", action="store_true", help="do not write the loss-curve image")
    a("--val-every", type=non_negative_int, metavar="N",
      help=f"validate every N steps, 0 = only at the end (default {d.val_every})")
    a("--sample-every", type=non_negative_int, metavar="N",
      help=f"print a sample every N steps, 0 = never (default {d.sample_every})")
    a("--sample-length", type=non_negative_int, metavar="N",
      help=f"characters per sample (default {d.sample_length}; the final sample is 2.5x longer)")
    a("--temperature", type=non_negative_float, dest="sample_temperature", metavar="T",
      help=f"sampling temperature, 0 = greedy (default {d.sample_temperature})")
    a("--checkpoint-every", type=non_negative_int, metavar="N",
      help="also save every N steps, 0 = only at the end and on Ctrl-C (default 0)")
    a("--val-chars", type=non_negative_int, metavar="N",
      help=f"periodic validations score the first N characters of the validation split, 0 = all; the "
           f"final one always scores all of it (default {d.val_chars})")
    a("--patience", type=non_negative_int, metavar="N",
      help="early stopping: stop after N validations without a new best, 0 = never (default 0); each "
           "new best is saved to <checkpoint>_best.npz")
    a("--quiet", action="store_true", help="no progress bar, samples or periodic messages")
    return p


def _probability(text):
    """argparse type: a number in [0, 1)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return value


def _settings(args) -> dict:
    """TrainConfig fields from the preset (if any) with the options given explicitly on top."""
    if args.bidirectional:
        raise UsageError("--bidirectional: a character language model reads left to right, predicting each "
                         "character from the ones before it; a backward direction would see the character it must "
                         "predict")
    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return {**PRESETS[args.preset], **given} if args.preset else given


def _check_targets(args, checkpoint: Path, plot) -> None:
    """Refuse unusable output paths before anything is created (no directory, no file)."""
    for path, what in ((checkpoint, "checkpoint"), (plot, "plot")):
        if path is None:
            continue
        if path.is_dir():
            raise UsageError(f"cannot write {what} {path}: it is a directory")
        if path.exists() and not path.is_file():
            raise UsageError(f"cannot write {what} {path}: it exists and is not a regular file")
    if plot is not None:
        if plot.suffix.lower() not in PLOT_FORMATS:
            raise UsageError(f"--plot: {plot} must end in one of {', '.join(PLOT_FORMATS)}")
        if plot.resolve() == checkpoint.resolve():
            raise UsageError(f"--plot {plot} is the checkpoint path; choose another file for the plot")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other: continue the run, or replace it")
    if checkpoint.exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{checkpoint} already exists: continue it with --resume (and a larger --steps), "
                         f"replace it with --overwrite, or choose another --checkpoint")


def _check_writable(path: Path, what: str) -> None:
    """Create path's directory and prove a file can be written there, before any training."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"cannot write {what} {path}: {e.strerror or e}") from None


def _read_text(data):
    """(text, source) for --data (None: the bundled corpus); UsageError if unusable."""
    path = bundled_corpus_path() if data is None else Path(data)
    try:
        return load_text(path), None if data is None else str(Path(data).resolve())
    except (OSError, ValueError) as e:
        raise UsageError(f"--data: {e}") from None


def _make_trainer(args, settings):
    """A new Trainer, or the one saved in --checkpoint when --resume."""
    try:
        cell = resolve_cell(args.cell)  # a user cell is imported because --cell names it, never from a checkpoint
        if not args.resume:
            text, source = _read_text(args.data)
            return Trainer(text, TrainConfig(**settings), source, cell)
        try:
            _, meta, _ = Trainer.read_checkpoint(args.checkpoint, cell)
        except FileNotFoundError:
            raise UsageError(f"--resume: checkpoint not found: {args.checkpoint} "
                             f"(drop --resume to start a new run)") from None
        saved = meta.get("data", {}).get("source")
        text, source = _read_text(args.data if args.data is not None else saved)
        if cell is not None:  # the class stands for the name: read_checkpoint checked it against the recorded one
            settings = {k: v for k, v in settings.items() if k != "cell"}
        return Trainer.resume(args.checkpoint, text, source, cell, **settings)
    except CheckpointError as e:
        raise UsageError(f"--resume: {e}") from None
    except ValueError as e:
        raise UsageError(str(e)) from None


def _cell_name(config) -> str:
    """The model kind in words: "tanh RNN", "LSTM", "GRU"."""
    if config.cell not in CELLS:
        return config.cell  # a user cell: its import name
    return f"{config.nonlinearity} RNN" if config.cell == "rnn" else config.cell.upper()


def _describe(trainer) -> str:
    c, m = trainer.config, trainer.model
    path = "fused BPTT" if c.fused else "unrolled graph"
    kind = _cell_name(c)
    budget = f", time budget {c.time_budget:g} s" if c.time_budget else ""
    extras = "".join(f", {name} {value:g}" for name, value in (("dropout", c.dropout), ("state reset", c.state_reset))
                     if value)
    return (f"data: {len(trainer.train_ids):,} training / {len(trainer.val_ids):,} validation characters, "
            f"vocabulary of {len(trainer.vocab)}\n"
            f"model: {c.num_layers}-layer {kind}, hidden {c.hidden_size}, "
            f"{m.num_parameters():,} parameters, {c.dtype}, {path}\n"
            f"training: {c.optimizer} lr {c.lr:g} ({c.lr_schedule}, warm-up {c.warmup}), clip {c.clip:g}, "
            f"seq_len {c.seq_len} x batch {c.batch_size}, {c.steps} steps{budget}{extras}")


def run(args) -> int:
    """Train with BLAS limited to --threads threads (restored afterwards)."""
    with blas_threads(args.threads):
        return _train(args)


def _train(args) -> int:
    """Train, then print losses and a sample and write the checkpoint and the plot."""
    tune_allocator()  # reuse freed buffers instead of re-faulting fresh pages every step
    settings = _settings(args)
    checkpoint = Path(args.checkpoint)
    plot = None if args.no_plot else Path(args.plot) if args.plot else \
        checkpoint.with_name(checkpoint.stem + "_loss.png")
    _check_targets(args, checkpoint, plot)
    with contextlib.ExitStack() as stack:
        locked = checkpoint.parent.is_dir()
        if locked:  # lock before reading a checkpoint another run may be writing
            _lock(stack, checkpoint)
        trainer = _make_trainer(args, settings)  # data and settings first: a refused run creates nothing
        _check_writable(checkpoint, "checkpoint")
        if plot is not None:
            _check_writable(plot, "plot")
        if not locked:
            _lock(stack, checkpoint)
        return _run(args, trainer, checkpoint, plot)


def _lock(stack, checkpoint) -> None:
    """Hold the checkpoint's run lock until the stack closes; UsageError if another run has it."""
    try:
        stack.enter_context(checkpoint_lock(checkpoint))
    except CheckpointLocked as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot lock {checkpoint}: {e.strerror or e}") from None


def _run(args, trainer, checkpoint, plot) -> int:
    """The run itself and its report (output that fails never stops it: see micrornn.train.console)."""
    say = safe_print
    out = (lambda s: None) if args.quiet else say
    if args.resume:
        out(f"resuming {checkpoint} at step {trainer.step}")
    out(_describe(trainer))
    if trainer.step >= trainer.config.steps:
        if args.resume:
            say(f"{checkpoint} has already trained {trainer.step} steps; pass a larger --steps to continue")
        else:
            say("--steps 0: nothing to train, no checkpoint written")
        return 0
    try:
        result = trainer.run(checkpoint=checkpoint, progress=not args.quiet,
                             log=(lambda s: None) if args.quiet else None)
    except CheckpointSaveError as e:
        say(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        say(f"\ninterrupted twice: stopped at once; saved step {trainer.step} to {checkpoint}")
        return 130
    except FloatingPointError as e:
        say(f"error: training diverged at step {trainer.step + 1} ({e}); saved the last finite state (step "
              f"{trainer.step}) to {checkpoint}; continue it with a lower rate: micrornn train --resume "
              f"--checkpoint {checkpoint} --lr {trainer.config.lr / 10:g}", file=sys.stderr)
        return 1
    if result.interrupted:
        say(f"\ninterrupted at step {result.step}: saved {checkpoint}; continue with "
              f"`micrornn train --resume --checkpoint {checkpoint}`")
        return 130
    why = "" if result.stopped_by == "steps" else f" (stopped by the {result.stopped_by})"
    say(f"done: {result.step} steps{why}, {result.seconds:.1f} s, {result.chars_per_sec:,.0f} chars/s")
    say(f"loss: train {result.train_loss:.3f}, validation {result.val_loss:.3f} nats/char "
          f"({bits_per_char(result.val_loss):.3f} bits/char, the whole validation split as one stream)")
    say(standing(result.val_loss, trainer))
    if not args.quiet:
        t = trainer.config.sample_temperature
        try:
            text = trainer.sample(round(2.5 * trainer.config.sample_length))
        except KeyboardInterrupt:
            text = "(interrupted)"
        say(f"--- sample (temperature {t:g}) ---\n{text}\n---")
    say(f"checkpoint: {checkpoint} (sample from it: micrornn sample --checkpoint {checkpoint})")
    if plot is not None:
        try:
            plot_history(trainer.history, plot, title=f"micrornn: character-level {_cell_name(trainer.config)}")
            say(f"loss curve: {plot}")
        except ImportError:
            say('loss curve skipped: matplotlib is not installed (pip install "micrornn[plot]")')
    return 0
