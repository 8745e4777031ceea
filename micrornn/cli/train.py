"""`micrornn train`: train a character-level RNN on a text file (default: the bundled Shakespeare)."""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import typing
from dataclasses import fields
from pathlib import Path

from micrornn.train.allocator import tune_allocator
from micrornn.train.checkpoint import CheckpointError
from micrornn.cli import UsageError, non_negative_float, non_negative_int, positive_float, positive_int, thread_count
from micrornn.train.data import bundled_corpus_path, check_text_path, load_text
from micrornn.train import TrainConfig, Trainer, bits_per_char, plot_history
from micrornn.train.console import safe_print
from micrornn.train.lock import CheckpointLocked, checkpoint_lock
from micrornn.train.metrics import MetricsLog
from micrornn.train.trainer import CheckpointSaveError
from micrornn.train.config import CELLS, PRESETS, config_toml, option_name, preset_settings, read_config, write_config
from micrornn.cli.cells import CELL_HELP, cell_argument, resolve_cell
from micrornn.train.references import standing
from micrornn.train.threads import DEFAULT_TRAIN_THREADS, blas_threads

DEFAULT_CHECKPOINT = Path("runs") / "char_rnn.npz"
PLOT_FORMATS = (".png", ".pdf", ".svg")


def add_parser(subparsers):
    """Register the `train` sub-command."""
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
    a("--preset", choices=sorted(PRESETS), help="a configuration for a longer run, stopped at its time budget: rnn, "
      "lstm, gru (15 minutes on 2 cores) or best (60 minutes); a TOML file in micrornn/train/presets; --config "
      "and options given explicitly override it")
    a("--config", metavar="FILE.toml", help="read TrainConfig fields (and data) from a TOML file, such as the one "
      "every run writes beside its checkpoint; options given explicitly override it")
    a("--print-config", action="store_true", help="print the configuration as TOML and exit without training")
    a("--cell", type=cell_argument, metavar="CELL", help=f"recurrent cell: {CELL_HELP} (default {TrainConfig().cell})")
    a("--bidirectional", action="store_true", help="refused: a language model reads left to right")
    a("--checkpoint", metavar="PATH", default=str(DEFAULT_CHECKPOINT),
      help=f"checkpoint file to write (and read with --resume); the run's TOML goes beside it with .toml "
           f"(default {DEFAULT_CHECKPOINT})")
    a("--resume", action="store_true", help="continue the run saved in --checkpoint")
    a("--overwrite", action="store_true", help="start a new run even if --checkpoint exists, replacing it")
    a("--threads", type=thread_count, default=DEFAULT_TRAIN_THREADS, metavar="N",
      help=f"BLAS threads, 0 = NumPy's own default (default {DEFAULT_TRAIN_THREADS}: small products "
           "run slower on more threads)")
    a("--plot", metavar="FILE", help="loss-curve image (default: the checkpoint path with _loss.png)")
    a("--no-plot", action="store_true", help="do not write the loss-curve image")
    a("--log", metavar="FILE.jsonl", help="write one JSON line per logged step (step, loss, lr, grad_norm, "
      "chars_per_sec, seconds) and per validation; redraw it with `micrornn plot FILE.jsonl`")
    a("--tensorboard", metavar="DIR", help="also write TensorBoard scalars to DIR (needs the optional extra: "
      'pip install "micrornn[tensorboard]")')
    a("--quiet", action="store_true", help="no progress bar, samples or periodic messages")
    add_config_options(p)
    return p


def add_config_options(parser, config_class=TrainConfig) -> None:
    """One option per field of the config dataclass, its type, choices and help taken from the field (an
    option the parser already has is left as it is)."""
    hints = typing.get_type_hints(config_class)
    for f in fields(config_class):
        flag = option_name(f.name)
        if flag in parser._option_string_actions:
            continue
        kind = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        meta = f.metadata
        help_text = meta.get("help", f"TrainConfig.{f.name}").replace("%", "%%") + _default_text(f, kind)
        kwargs = {"dest": f.name, "help": help_text, "default": None}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif "choices" in meta:
            kwargs["choices"] = meta["choices"]
        else:
            kwargs["type"] = _parser_for(kind, meta)
            kwargs["metavar"] = meta.get("metavar", "X")
        parser.add_argument(flag, **kwargs)


def _parser_for(kind, meta):
    """argparse type of a field: checked ints and floats, anything else as text."""
    if kind is int:
        return positive_int if meta.get("low", 0) >= 1 else non_negative_int
    if kind is float:
        return {"probability": _probability, "positive": positive_float, "real": _finite_float}.get(
            meta.get("kind"), non_negative_float)
    return str


def _default_text(f, kind) -> str:
    """ (default X) for the help, or nothing when the default is None (the help says what happens)."""
    default = f.default
    if default is None:
        return ""
    if kind is bool:
        return f" (default {option_name(f.name) if default else '--no-' + option_name(f.name)[2:]})"
    return f" (default {default:g})" if isinstance(default, float) else f" (default {default})"


def _finite_float(text):
    """argparse type: any finite number (negative allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _probability(text):
    """argparse type: a number in [0, 1)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return value


def _settings(args) -> dict:
    """TrainConfig fields from the preset, then the --config file, then the options given explicitly."""
    if args.bidirectional:
        raise UsageError("--bidirectional: a character language model reads left to right, predicting each "
                         "character from the ones before it; a backward direction would see the character it must "
                         "predict")
    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    from_file = {}
    if args.config:
        try:
            from_file = read_config(args.config)
        except FileNotFoundError:
            raise UsageError(f"--config: file not found: {args.config}") from None
        except (OSError, ValueError, ImportError) as e:
            raise UsageError(f"--config: {e}") from None
        data = from_file.pop("data", None)
        if args.data is None and data is not None:
            args.data = data
    return {**(preset_settings(args.preset) if args.preset else {}), **from_file, **given}


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


def _read_text(data, option="--data"):
    """(text, source) for --data (None: the bundled corpus); UsageError if unusable."""
    path = bundled_corpus_path() if data is None else Path(data)
    try:
        return load_text(path), None if data is None else str(Path(data).resolve())
    except (OSError, ValueError) as e:
        hint = "" if option == "--data" else " (pass --data PATH)"
        raise UsageError(f"{option}: {e}{hint}") from None


def _make_trainer(args, settings):
    """A new Trainer, or the one saved in --checkpoint when --resume."""
    try:
        cell = resolve_cell(args.cell)  # a user cell is imported because --cell names it, never from a checkpoint
        if cell is not None and settings.get("fused"):
            raise UsageError(f"--fused: only the built-in cells ({', '.join(CELLS)}) have a fused path; "
                             f"{args.cell} runs unrolled (drop --fused)")
        if not args.resume:
            text, source = _read_text(args.data)
            return Trainer(text, TrainConfig(**settings), source, cell)
        try:
            _, meta, _ = Trainer.read_checkpoint(args.checkpoint, cell)
        except FileNotFoundError:
            raise UsageError(f"--resume: checkpoint not found: {args.checkpoint} "
                             f"(drop --resume to start a new run)") from None
        saved = meta.get("data", {}).get("source")
        text, source = _read_text(args.data if args.data is not None else saved,
                                  "--data" if args.data is not None else "the checkpoint's training text")
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
    if config.cell == "rnn":
        return f"{config.nonlinearity} RNN"
    return config.cell.upper() + (" with layer norm" if config.layer_norm else "")


def _describe(trainer) -> str:
    c, m = trainer.config, trainer.model
    path = "fused BPTT" if c.fused else "compiled unrolled graph" if c.compile else "unrolled graph"
    kind = _cell_name(c)
    budget = f", time budget {c.time_budget:g} s" if c.time_budget else ""
    extras = "".join(f", {name} {value:g}" for name, value in (
        ("dropout", c.dropout), ("input dropout", c.input_dropout), ("output dropout", c.output_dropout),
        ("state reset", c.state_reset), ("weight decay", c.weight_decay), ("gate bias", c.gate_bias),
        ("ema", c.ema)) if value)
    locked = " (locked over time)" if c.locked_dropout and (c.dropout or c.input_dropout or c.output_dropout) else ""
    return (f"data: {len(trainer.train_ids):,} training / {len(trainer.val_ids):,} validation characters, "
            f"vocabulary of {len(trainer.vocab)}\n"
            f"model: {c.num_layers}-layer {kind}, hidden {c.hidden_size}, "
            f"{m.num_parameters():,} parameters, {c.dtype}, {path}\n"
            f"training: {c.optimizer} lr {c.lr:g} ({c.lr_schedule}, warm-up {c.warmup}), clip {c.clip:g}, "
            f"seq_len {c.seq_len} x batch {c.batch_size}, {c.steps} steps{budget}{extras}{locked}")


def run(args) -> int:
    """Train with BLAS limited to --threads threads (restored afterwards)."""
    with blas_threads(args.threads):
        return _train(args)


def _train(args) -> int:
    """Train, then print losses and a sample and write the checkpoint and the plot."""
    tune_allocator()  # reuse freed buffers instead of re-faulting fresh pages every step
    settings = _settings(args)
    if args.print_config:
        return _print_config(args, settings)
    checkpoint = Path(args.checkpoint)
    plot = None if args.no_plot else Path(args.plot) if args.plot else \
        checkpoint.with_name(checkpoint.stem + "_loss.png")
    if args.data is not None:  # a missing --data is named before anything about the checkpoint
        try:
            check_text_path(args.data)
        except (OSError, ValueError) as e:
            raise UsageError(f"--data: {e}") from None
    _check_targets(args, checkpoint, plot)
    with contextlib.ExitStack() as stack:
        locked = checkpoint.parent.is_dir()
        if locked:  # lock before reading a checkpoint another run may be writing
            _lock(stack, checkpoint)
        trainer = _make_trainer(args, settings)  # data and settings first: a refused run creates nothing
        _check_writable(checkpoint, "checkpoint")
        if plot is not None:
            _check_writable(plot, "plot")
        if args.log:
            _check_writable(Path(args.log), "log")
        if not locked:
            _lock(stack, checkpoint)
        return _run(args, trainer, checkpoint, plot)


def _print_config(args, settings) -> int:
    """--print-config: the configuration these options describe, as TOML, and no training."""
    try:
        config = TrainConfig(**settings).validated()
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
    data = None if args.data is None else str(Path(args.data).resolve())
    safe_print(config_toml(config, data).rstrip("\n"))
    return 0


def run_config_path(checkpoint) -> Path:
    """Where a run writes the TOML it ran with: the checkpoint's path with .toml."""
    return Path(checkpoint).with_suffix(".toml")


def _write_run_config(trainer, checkpoint) -> None:
    """Write the run's configuration beside its checkpoint (UsageError when it cannot)."""
    try:
        write_config(run_config_path(checkpoint), trainer.config, trainer.source)
    except OSError as e:
        raise UsageError(f"cannot write {run_config_path(checkpoint)}: {e.strerror or e}") from None


def _forget_run_config(checkpoint, config_is_new) -> None:
    """Remove the TOML this run wrote when it saved no checkpoint to go with it."""
    if config_is_new:
        run_config_path(checkpoint).unlink(missing_ok=True)


def _lock(stack, checkpoint) -> None:
    """Hold the checkpoint's run lock until the stack closes; UsageError if another run has it."""
    try:
        stack.enter_context(checkpoint_lock(checkpoint))
    except CheckpointLocked as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot lock {checkpoint}: {e.strerror or e}") from None


@contextlib.contextmanager
def _metrics_log(args, trainer):
    """The MetricsLog of --log / --tensorboard (None without them); a resumed run appends to its log."""
    if not args.log and not args.tensorboard:
        yield None
        return
    try:
        metrics = MetricsLog(args.log, args.tensorboard, append=args.resume, seconds_before=trainer.wall_seconds)
    except ImportError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write the metrics log: {e.strerror or e}") from None
    with metrics:
        yield metrics


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
    config_is_new = not run_config_path(checkpoint).exists()
    _write_run_config(trainer, checkpoint)
    try:
        with _metrics_log(args, trainer) as metrics:
            result = trainer.run(checkpoint=checkpoint, progress=not args.quiet,
                                 log=(lambda s: None) if args.quiet else None, metrics=metrics)
    except CheckpointSaveError as e:
        say(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        say(f"\ninterrupted twice: stopped at once; saved step {trainer.step} to {checkpoint}")
        return 130
    except FloatingPointError as e:
        if trainer.step == 0:  # no step finished: nothing was saved, so no configuration beside it either
            _forget_run_config(checkpoint, config_is_new)
            say(f"error: training diverged at step 1 ({e}); no step finished, so no checkpoint was written; "
                f"start again with a lower rate: --lr {trainer.config.lr / 10:g}", file=sys.stderr)
            return 1
        say(f"error: training diverged at step {trainer.step + 1} ({e}); saved the last finite state (step "
              f"{trainer.step}) to {checkpoint}; continue it with a lower rate: micrornn train --resume "
              f"--checkpoint {checkpoint} --lr {trainer.config.lr / 10:g}", file=sys.stderr)
        return 1
    if result.interrupted:
        say(f"\ninterrupted at step {result.step}: saved {checkpoint}; continue with "
              f"`micrornn train --resume --checkpoint {checkpoint}`")
        return 130
    if result.step == 0:  # the time budget ended the run before its first step: nothing was saved
        _forget_run_config(checkpoint, config_is_new)
        say(f"stopped by the {result.stopped_by} before the first step: nothing trained, no checkpoint written; "
            f"give a larger --time-budget", file=sys.stderr)
        return 1
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
    if not trainer.parameters_finite():  # the final save refused them
        print(f"error: some trained parameters are not finite (inf or NaN), so no checkpoint was written to "
              f"{checkpoint}", file=sys.stderr)
        return 1
    cell_option = f" --cell {trainer.config.cell}" if trainer.config.cell not in CELLS else ""  # never imported by itself
    say(f"checkpoint: {checkpoint} (sample from it: micrornn sample --checkpoint {checkpoint}{cell_option})")
    if plot is not None:
        try:
            plot_history(trainer.history, plot, title=f"micrornn: character-level {_cell_name(trainer.config)}")
            say(f"loss curve: {plot}")
        except ImportError:
            say('loss curve skipped: matplotlib is not installed (pip install "micrornn[plot]")')
    return 0
